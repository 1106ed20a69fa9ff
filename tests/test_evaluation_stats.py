"""F1, ROC AUC, patient-bootstrap intervals and curve tables of the evaluate stage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from stages.evaluation.bootstrap import patient_bootstrap
from stages.evaluation.classification import classification_report, roc_auc
from stages.evaluation.curves import calibration_bins, pr_points, roc_points

NAMES = ("Level 1", "Level 2")


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = np.round(rng.random(200) * 0.5 + 0.4 * y, 1)  # coarse: many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-6)
    assert roc_auc([1, 1], [0.2, 0.9]) is None


def test_f1_matches_sklearn() -> None:
    y_true = [0, 0, 0, 1, 1, 1, 1, 0, 1]
    y_pred = [0, 1, 0, 1, 1, 0, 1, 0, 0]
    report = classification_report(y_true, y_pred, NAMES)
    expected = f1_score(y_true, y_pred, average=None)
    assert report["f1"] == {"Level 1": round(expected[0], 6), "Level 2": round(expected[1], 6)}


def test_bootstrap_resamples_patients_not_images() -> None:
    """Patient A: 50 images all right; patient B: 50 all wrong. Resampling images would make the
    accuracy look known to a few percent; resampling the two patients shows it is not."""
    y_true = np.array([1] * 100)
    y_pred = np.array([1] * 50 + [0] * 50)
    patients = ["A"] * 50 + ["B"] * 50
    result = patient_bootstrap(y_true, y_pred, y_pred.astype(float), patients, NAMES, resamples=400, seed=1)
    accuracy = result["intervals"]["accuracy"]
    assert (accuracy["low"], accuracy["high"]) == (0.0, 1.0)
    assert result["patients"] == 2 and result["resamples"] == 400
    # Level 1 never occurs: undefined in every resample, said so rather than invented.
    assert result["intervals"]["sensitivity"]["Level 1"] == {"low": None, "high": None, "defined": 0}
    assert result["intervals"]["roc_auc"]["defined"] == 0


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(3)
    patients = np.repeat([f"P{i:02d}" for i in range(40)], 3)
    y_true = np.repeat(rng.integers(0, 2, 40), 3)
    score = np.clip(y_true * 0.3 + rng.random(120) * 0.7, 0, 1)  # overlapping: imperfect
    y_pred = (score > 0.5).astype(int)
    first = patient_bootstrap(y_true, y_pred, score, patients, NAMES, resamples=300, seed=5)
    shuffled = rng.permutation(120)
    again = patient_bootstrap(y_true[shuffled], y_pred[shuffled], score[shuffled], patients[shuffled], NAMES,
                              resamples=300, seed=5)
    assert first == again  # row order does not matter, the seed does
    assert first != patient_bootstrap(y_true, y_pred, score, patients, NAMES, resamples=300, seed=6)
    accuracy = float(np.mean(y_true == y_pred))
    interval = first["intervals"]["accuracy"]
    assert interval["low"] <= accuracy <= interval["high"] and interval["high"] - interval["low"] > 0.02
    auc = first["intervals"]["roc_auc"]
    assert auc["low"] <= roc_auc(y_true, score) <= auc["high"]
    with pytest.raises(ValueError, match="confidence level"):
        patient_bootstrap(y_true, y_pred, score, patients, NAMES, level=95)


def test_curve_tables() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    score = np.array([0.1, 0.3, 0.35, 0.8, 0.45, 0.9, 0.6, 0.05])
    roc = roc_points(y, score)
    assert (roc.iloc[0].fpr, roc.iloc[0].tpr) == (0.0, 0.0) and (roc.iloc[-1].fpr, roc.iloc[-1].tpr) == (1.0, 1.0)
    assert roc.threshold.max() <= 1.0 and roc.fpr.is_monotonic_increasing
    pr = pr_points(y, score)
    assert pr.recall.is_monotonic_increasing and pr.iloc[-1].recall == 1.0
    calibration = calibration_bins(y, score, bins=4)
    assert calibration.n.sum() == len(y)
    assert list(calibration.columns) == ["bin", "bin_low", "bin_high", "mean_predicted", "fraction_positive", "n"]
    top = calibration[calibration.bin == 3].iloc[0]
    assert (top.n, top.fraction_positive) == (2, 1.0)  # 0.8 and 0.9, both Level 2
