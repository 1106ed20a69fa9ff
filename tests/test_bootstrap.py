"""The two patient bootstraps share their argument checks and their patient draws."""

from __future__ import annotations

import numpy as np
import pytest

from stages.evaluation.bootstrap import paired_patient_bootstrap, patient_bootstrap

NAMES = ("Level 1", "Level 2")


def _cohort(seed: int = 3, patients: int = 15):
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i}" for i in range(patients)], 3)
    y_true = rng.integers(0, 2, size=len(ids))
    return ids, y_true, rng.integers(0, 2, size=len(ids)), rng.random(len(ids))


def test_paired_minus_an_always_wrong_model_is_the_unpaired_interval():
    """Accuracy 0 on every resample, so the paired difference is the reference's own accuracy, resample
    by resample: the two intervals agree exactly only if both functions draw the same patients."""
    ids, y_true, y_pred, score = _cohort()
    wrong = 1 - y_true
    for seed in (0, 11):
        alone = patient_bootstrap(y_true, y_pred, score, ids, NAMES, resamples=150, seed=seed)
        paired = paired_patient_bootstrap(y_true, (y_pred, score), {"wrong": (wrong, wrong.astype(float))}, ids,
                                          NAMES, resamples=150, seed=seed)
        difference = paired["differences"]["wrong"]["accuracy"]
        assert {k: difference[k] for k in ("low", "high", "defined")} == alone["intervals"]["accuracy"]
        assert paired["patients"] == alone["patients"] == 15


def test_pinned_draws():
    """Regression pin: the draws (seeded generator, sorted patients, one draw per resample) must not move."""
    ids = np.repeat([f"p{i}" for i in range(6)], 2)
    y_true = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0])
    a = np.array([0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1])
    b = np.array([0, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0])
    score = np.linspace(0.05, 0.95, 12)
    alone = patient_bootstrap(y_true, a, score, ids, NAMES, resamples=25, seed=3)["intervals"]
    assert alone["accuracy"] == {"low": 0.5, "high": 0.916667, "defined": 25}
    assert alone["roc_auc"] == {"low": 0.0, "high": 0.884656, "defined": 25}
    paired = paired_patient_bootstrap(y_true, (a, score), {"b": (b, score[::-1].copy())}, ids, NAMES,
                                      resamples=25, seed=3)["differences"]["b"]
    assert paired["accuracy"] == {"difference": 0.0, "low": -0.25, "high": 0.366667, "defined": 25}
    assert paired["roc_auc"] == {"difference": 0.0, "low": -1.0, "high": 0.769312, "defined": 25}


@pytest.mark.parametrize(("level", "resamples", "message"), [
    (0.0, 10, r"confidence level must be in \(0, 1\), got 0.0"),
    (1.0, 10, r"confidence level must be in \(0, 1\), got 1.0"),
    (0.9, 0, "need at least one bootstrap resample, got 0"),
])
def test_both_refuse_the_same_arguments(level, resamples, message):
    ids, y_true, y_pred, score = _cohort()
    with pytest.raises(ValueError, match=message):
        patient_bootstrap(y_true, y_pred, score, ids, NAMES, resamples=resamples, level=level)
    with pytest.raises(ValueError, match=message):
        paired_patient_bootstrap(y_true, (y_pred, score), {"b": (y_pred, score)}, ids, NAMES,
                                 resamples=resamples, level=level)


def test_paired_checks_the_arguments_before_the_image_counts():
    ids, y_true, y_pred, score = _cohort()
    short = (y_pred[:-1], score)
    with pytest.raises(ValueError, match="one prediction and one score per test image"):
        paired_patient_bootstrap(y_true, (y_pred, score), {"b": short}, ids, NAMES)
    with pytest.raises(ValueError, match="confidence level"):
        paired_patient_bootstrap(y_true, (y_pred, score), {"b": short}, ids, NAMES, level=2.0)
