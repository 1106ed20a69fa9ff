"""Paired differences between models (stage compare): oracles that need no run of the code under test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages import compare
from stages.evaluation.bootstrap import paired_patient_bootstrap, patient_bootstrap

NAMES = ("Level 1", "Level 2")


def _cohort(seed: int = 1, patients: int = 12):
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i}" for i in range(patients)], 3)
    y_true = rng.integers(0, 2, size=len(ids))
    return ids, y_true, rng


def test_identical_models_differ_by_exactly_zero():
    ids, y_true, rng = _cohort()
    y_pred = rng.integers(0, 2, size=len(ids))
    score = rng.random(len(ids))
    result = paired_patient_bootstrap(y_true, (y_pred, score), {"same": (y_pred.copy(), score.copy())}, ids, NAMES,
                                      resamples=200)
    accuracy = result["differences"]["same"]["accuracy"]
    assert accuracy == {"difference": 0.0, "low": 0.0, "high": 0.0, "defined": 200}


def test_always_right_minus_always_wrong_is_one_on_every_resample():
    ids, y_true, _ = _cohort()
    right, wrong = y_true.copy(), 1 - y_true
    result = paired_patient_bootstrap(y_true, (right, right.astype(float)), {"wrong": (wrong, wrong.astype(float))},
                                      ids, NAMES, resamples=200)
    values = result["differences"]["wrong"]
    assert values["accuracy"] == {"difference": 1.0, "low": 1.0, "high": 1.0, "defined": 200}
    assert values["roc_auc"]["difference"] == 1.0  # AUC 1 minus AUC 0


def test_swapping_the_models_negates_the_difference_and_its_interval():
    ids, y_true, rng = _cohort(seed=4)
    a = (rng.integers(0, 2, size=len(ids)), rng.random(len(ids)))
    b = (rng.integers(0, 2, size=len(ids)), rng.random(len(ids)))
    ab = paired_patient_bootstrap(y_true, a, {"b": b}, ids, NAMES, resamples=300, seed=7)["differences"]["b"]
    ba = paired_patient_bootstrap(y_true, b, {"a": a}, ids, NAMES, resamples=300, seed=7)["differences"]["a"]
    assert ab["accuracy"]["difference"] == -ba["accuracy"]["difference"]
    assert ab["accuracy"]["low"] == pytest.approx(-ba["accuracy"]["high"], abs=1e-6)


def test_pairing_narrows_the_interval_when_the_models_share_their_errors():
    """Two models wrong on the same hard images, one of them on a few more: the paired interval of the
    difference is far narrower than either model's own interval (hand reasoning: the shared errors cancel)."""
    ids, y_true, rng = _cohort(seed=2, patients=30)
    hard = rng.random(len(ids)) < 0.3
    first = np.where(hard, 1 - y_true, y_true)
    second = first.copy()
    second[np.flatnonzero(~hard)[:3]] ^= 1  # three more errors
    score = first.astype(float)
    paired = paired_patient_bootstrap(y_true, (first, score), {"second": (second, score)}, ids, NAMES,
                                      resamples=500)["differences"]["second"]["accuracy"]
    alone = patient_bootstrap(y_true, first, score, ids, NAMES, resamples=500)["intervals"]["accuracy"]
    assert paired["difference"] == pytest.approx(3 / len(ids), abs=1e-6)
    assert paired["high"] - paired["low"] < (alone["high"] - alone["low"]) / 2


def test_stage_refuses_predictions_on_other_images(tmp_path):
    for model, ids in (("covidnet_cxr_s", ["a", "b"]), ("resnet50", ["a", "c"])):
        folder = tmp_path / "models" / model
        folder.mkdir(parents=True)
        pd.DataFrame({"image_id": ids, "patient_id": ["p1", "p2"], "actual": ["Level 1", "Level 2"],
                      "predicted": ["Level 1", "Level 1"], "probability_level2": [0.2, 0.4]}).to_csv(
            folder / "test_predictions.csv", index=False)
    params = {"models": {"covidnet_cxr_s": {}, "resnet50": {}}, "data": {"source": "synthetic"},
              "train": {"seed": 1}, "evaluate": {"bootstrap_resamples": 10}}
    with pytest.raises(SystemExit, match="resnet50/test_predictions.csv is not on the same test images"):
        compare.run(params, tmp_path, tmp_path / "comparisons.json")
