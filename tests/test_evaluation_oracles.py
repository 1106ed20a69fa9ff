"""Independent oracles for the evaluation core (issue 20): every expected value here comes from a
hand calculation, scikit-learn, or numpy.percentile over a re-implementation of the documented
patient draws; none from an earlier run of the code under test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_curve, precision_score, recall_score, roc_curve

from stages.evaluation.bootstrap import paired_patient_bootstrap, patient_bootstrap
from stages.evaluation.classification import (accuracy, balanced_accuracy, balanced_log_loss, classification_report,
                                              compute_all, confusion, f1, nest, ppv, roc_auc, sensitivity)
from stages.evaluation.curves import calibration_bins, expected_calibration_error, pr_points, roc_points

NAMES = ("Level 1", "Level 2")


# --- the bootstrap's interval: numpy.percentile over a re-implementation ---------------------
def _accuracies_by_hand(y_true, y_pred, patients, resamples, seed):
    """The documented protocol (stages.evaluation.bootstrap): patients sorted, one draw of as many
    patients as there are, with replacement, per resample, from numpy's default_rng(seed)."""
    order = sorted(set(patients))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = [i for k in rng.integers(0, len(order), size=len(order))
                for i in range(len(patients)) if patients[i] == order[k]]
        values.append(np.mean(np.asarray(y_true)[rows] == np.asarray(y_pred)[rows]))
    return values


@pytest.mark.parametrize("level, tails", [(0.95, (2.5, 97.5)), (0.9, (5.0, 95.0)), (0.5, (25.0, 75.0))])
def test_bootstrap_interval_is_the_central_percentile_interval(level, tails):
    rng = np.random.default_rng(4)
    patients = [f"P{i:02d}" for i in range(30) for _ in range(2)]
    y_true = rng.integers(0, 2, 60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, 1 - y_true)
    score = rng.random(60)
    result = patient_bootstrap(y_true, y_pred, score, patients, NAMES, resamples=400, level=level, seed=9)
    values = _accuracies_by_hand(y_true, y_pred, patients, 400, 9)
    low, high = np.percentile(values, tails)
    interval = result["intervals"]["accuracy"]
    assert (interval["low"], interval["high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert interval["defined"] == 400
    assert result["level"] == level and result["patients"] == 30 and result["seed"] == 9
    assert result["method"] == "patient bootstrap, percentile interval"


def test_paired_difference_by_hand():
    """Paired: the same draws score both models; the observed difference is by hand."""
    patients = [f"P{i}" for i in range(12)]
    y_true = np.array([0, 1] * 6)
    a = y_true.copy()
    a[:3] = 1 - a[:3]  # 9 of 12 right
    b = y_true.copy()
    b[:6] = 1 - b[:6]  # 6 of 12 right
    result = paired_patient_bootstrap(y_true, (a, a.astype(float)), {"b": (b, b.astype(float))}, patients,
                                      NAMES, resamples=200, level=0.9, seed=1)
    diff = result["differences"]["b"]["accuracy"]
    assert diff["difference"] == pytest.approx(0.25)
    values = np.array(_accuracies_by_hand(y_true, a, patients, 200, 1)) - np.array(
        _accuracies_by_hand(y_true, b, patients, 200, 1))
    assert (diff["low"], diff["high"]) == tuple(pytest.approx(v, abs=1e-6) for v in np.percentile(values, [5, 95]))
    assert result["images"] == 12 and result["patients"] == 12 and result["level"] == 0.9
    assert result["method"] == "paired patient bootstrap, percentile interval"
    # Level 1 sensitivity on the full set: a misses 2 of the 6 Level 1 images, b misses 3.
    sens = result["differences"]["b"]["sensitivity"]["Level 1"]["difference"]
    a_l1 = np.mean(a[y_true == 0] == 0)
    b_l1 = np.mean(b[y_true == 0] == 0)
    assert (a_l1, b_l1) == (4 / 6, 3 / 6) and sens == pytest.approx(1 / 6, abs=1e-6)


def test_paired_difference_is_undefined_where_either_model_is():
    patients = ["P1", "P2"]
    y_true = np.array([1, 1])  # no Level 1 case: Level 1 sensitivity undefined for both
    result = paired_patient_bootstrap(y_true, (y_true, y_true * 1.0), {"b": (y_true, y_true * 1.0)}, patients,
                                      NAMES, resamples=20, seed=0)
    sens = result["differences"]["b"]["sensitivity"]["Level 1"]
    assert sens == {"difference": None, "low": None, "high": None, "defined": 0}
    assert result["differences"]["b"]["accuracy"] == {"difference": 0.0, "low": 0.0, "high": 0.0, "defined": 20}


# --- the metric table by hand ------------------------------------------------------------
def test_metrics_by_hand_on_a_three_class_matrix():
    # rows true, columns predicted
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    assert accuracy(matrix) == pytest.approx(12 / 16)
    assert [sensitivity(matrix, i) for i in range(3)] == pytest.approx([5 / 6, 3 / 6, 4 / 4])
    assert [ppv(matrix, i) for i in range(3)] == pytest.approx([5 / 7, 3 / 4, 4 / 5])
    assert [f1(matrix, i) for i in range(3)] == pytest.approx([10 / 13, 6 / 10, 8 / 9])
    empty = np.zeros((2, 2), dtype=int)
    assert accuracy(empty) is None and sensitivity(empty, 0) is None and ppv(empty, 1) is None and f1(empty, 0) is None


def test_confusion_rows_are_true_and_columns_predicted():
    np.testing.assert_array_equal(confusion([0, 0, 1, 2], [1, 0, 2, 2], 3), [[1, 1, 0], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(confusion([], [], 2), [[0, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"class indices must be in 0..1"):
        confusion([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match=r"class indices must be in 0..1"):
        confusion([0, 1], [-1, 1], 2)


def test_compute_all_and_the_report_match_scikit_learn():
    rng = np.random.default_rng(8)
    y_true, y_pred, score = rng.integers(0, 2, 50), rng.integers(0, 2, 50), rng.random(50)
    flat = compute_all(y_true, y_pred, score, NAMES)
    assert list(flat) == ["accuracy", "sensitivity/Level 1", "sensitivity/Level 2", "ppv/Level 1", "ppv/Level 2",
                          "f1/Level 1", "f1/Level 2", "roc_auc"]
    assert flat["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert flat["sensitivity/Level 2"] == pytest.approx(recall_score(y_true, y_pred))
    assert flat["ppv/Level 1"] == pytest.approx(precision_score(y_true, y_pred, pos_label=0))
    assert "roc_auc" not in compute_all(y_true, y_pred, None, NAMES)
    report = classification_report(y_true, y_pred, NAMES, score=score)
    assert report["n"] == 50 and report["support"] == {"Level 1": int((y_true == 0).sum()),
                                                       "Level 2": int((y_true == 1).sum())}
    assert report["majority_class_rate"] == pytest.approx(max(np.mean(y_true == 0), np.mean(y_true == 1)), abs=1e-6)
    assert report["roc_auc"] == pytest.approx(roc_auc(y_true, score))
    assert report["confusion_matrix"]["columns"] == "predicted"
    assert report["confusion_matrix"]["matrix"]["Level 2"]["Level 1"] == int(((y_true == 1) & (y_pred == 0)).sum())
    assert report["accuracy"] == round(float(np.mean(y_true == y_pred)), 6)
    with pytest.raises(ValueError, match="no predictions to evaluate"):
        classification_report([], [], NAMES)


def test_nest():
    assert nest({"accuracy": 1, "ppv/a": 2, "ppv/b": 3}) == {"accuracy": 1, "ppv": {"a": 2, "b": 3}}


def test_roc_auc_by_hand():
    # Level 2 scores 0.8, 0.4; Level 1 scores 0.3, 0.4, 0.9: pairs won 1 + 0 + 1 / tie 0.5 ... by hand:
    # (0.8 vs 0.3) 1, (0.8 vs 0.4) 1, (0.8 vs 0.9) 0, (0.4 vs 0.3) 1, (0.4 vs 0.4) 0.5, (0.4 vs 0.9) 0
    assert roc_auc([1, 1, 0, 0, 0], [0.8, 0.4, 0.3, 0.4, 0.9]) == pytest.approx(3.5 / 6, abs=1e-6)
    assert roc_auc([0, 0], [0.1, 0.2]) is None


def test_balanced_scores_by_hand():
    y = np.array([0, 1, 1, 1])
    probabilities = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4], [0.0, 1.0]])
    # Level 1: -ln 0.5; Level 2: mean(-ln 0.8, -ln 0.4, -ln(1 - 1e-7))
    level2 = (-np.log(0.8) - np.log(0.4) - np.log(1 - 1e-7)) / 3
    assert balanced_log_loss(y, probabilities) == pytest.approx((-np.log(0.5) + level2) / 2, rel=1e-9)
    # A probability of 0 is clipped to 1e-7, not infinite.
    assert balanced_log_loss([0], np.array([[0.0, 1.0]])) == pytest.approx(-np.log(1e-7), rel=1e-9)
    assert balanced_accuracy(y, [1, 1, 0, 1]) == pytest.approx((0 + 2 / 3) / 2)


# --- curves and the calibration error by hand -----------------------------------------------
def test_calibration_bins_and_error_by_hand():
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    score = np.array([0.05, 0.15, 0.12, 0.95, 0.85, 0.55, 1.0])
    table = calibration_bins(y, score, bins=10)
    # bin 0: 0.05 (y 0); bin 1: 0.15, 0.12 (y 1, 0); bin 5: 0.55 (y 0); bin 8: 0.85 (y 1);
    # bin 9: 0.95 and 1.0 (y 1, 1): a score of exactly 1 falls in the last bin.
    assert table.to_dict("list") == {
        "bin": [0, 1, 5, 8, 9], "bin_low": [0.0, 0.1, 0.5, 0.8, 0.9], "bin_high": [0.1, 0.2, 0.6, 0.9, 1.0],
        "mean_predicted": [0.05, 0.135, 0.55, 0.85, 0.975], "fraction_positive": [0.0, 0.5, 0.0, 1.0, 1.0],
        "n": [1, 2, 1, 1, 2]}
    # ECE = sum n |fraction - mean| / N = (0.05 + 2 * 0.365 + 0.55 + 0.15 + 2 * 0.025) / 7
    assert expected_calibration_error(table) == pytest.approx((0.05 + 0.73 + 0.55 + 0.15 + 0.05) / 7, abs=1e-6)


def test_calibration_bin_edges_and_bin_count():
    # 0.25 with 4 bins is the first value of bin 1 (equal-width bins, closed on the left).
    table = calibration_bins([1, 0, 1], [0.25, 0.2499, 0.75], bins=4)
    assert table.bin.tolist() == [0, 1, 3] and table.n.tolist() == [1, 1, 1]
    assert table.bin_high.tolist() == [0.25, 0.5, 1.0]
    assert calibration_bins([1], [0.3], bins=10).bin.tolist() == [3]
    empty = calibration_bins([], [], bins=5)
    assert empty.empty and list(empty.columns) == ["bin", "bin_low", "bin_high", "mean_predicted",
                                                   "fraction_positive", "n"]


def test_a_perfectly_calibrated_table_has_no_error():
    table = pd.DataFrame({"mean_predicted": [0.2, 0.8], "fraction_positive": [0.2, 0.8], "n": [5, 5]})
    assert expected_calibration_error(table) == 0.0
    table = pd.DataFrame({"mean_predicted": [0.2, 0.8], "fraction_positive": [0.0, 1.0], "n": [1, 3]})
    assert expected_calibration_error(table) == pytest.approx((0.2 + 3 * 0.2) / 4)


def test_roc_and_pr_points_match_scikit_learn():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    score = np.array([0.1, 0.3, 0.35, 0.8, 0.45, 0.9, 0.6, 0.05])
    fpr, tpr, thresholds = roc_curve(y, score, drop_intermediate=False)
    roc = roc_points(y, score)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.threshold, np.minimum(thresholds, 1.0))
    assert roc.threshold.iloc[0] == 1.0
    precision, recall, cut = precision_recall_curve(y, score)
    pr = pr_points(y, score)
    expected = pd.DataFrame({"recall": recall, "precision": precision, "threshold": [*cut, 1.0]}).sort_values(
        ["recall", "threshold"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(pr, expected.round(6))
    assert pr.iloc[0].to_dict() == {"recall": 0.0, "precision": 1.0, "threshold": 1.0}


# --- the last digits, the defaults and the messages (mutation survivors, issue 20) ------------
def test_values_are_rounded_to_six_decimals():
    assert roc_auc([1, 1, 0, 0, 0], [0.8, 0.4, 0.3, 0.4, 0.9]) == 0.583333  # 3.5 / 6
    report = classification_report([0, 0, 1], [0, 1, 1], NAMES)
    assert report["majority_class_rate"] == 0.666667 and report["accuracy"] == 0.666667
    table = calibration_bins([0, 1, 0, 1, 1, 0, 1], [0.05, 0.15, 0.12, 0.95, 0.85, 0.55, 1.0])
    assert expected_calibration_error(table) == 0.218571  # 1.53 / 7
    patients = [f"P{i}" for i in range(12)]
    y_true = np.array([0, 1] * 6)
    a, b = y_true.copy(), y_true.copy()
    a[:3], b[:6] = 1 - a[:3], 1 - b[:6]
    paired = paired_patient_bootstrap(y_true, (a, a * 1.0), {"b": (b, b * 1.0)}, patients, NAMES, resamples=5)
    assert paired["differences"]["b"]["sensitivity"]["Level 1"]["difference"] == 0.166667


def test_bootstrap_defaults_are_1000_resamples_seed_0_level_95():
    patients = ["P1", "P2", "P3"]
    y = np.array([0, 1, 1])
    alone = patient_bootstrap(y, y, y * 1.0, patients, NAMES)
    assert (alone["resamples"], alone["seed"], alone["level"]) == (1000, 0, 0.95)
    assert alone["intervals"]["accuracy"]["defined"] == 1000
    assert alone == patient_bootstrap(y, y, y * 1.0, patients, NAMES, resamples=1000, level=0.95, seed=0)
    paired = paired_patient_bootstrap(y, (y, y * 1.0), {"b": (y, y * 1.0)}, patients, NAMES)
    assert (paired["resamples"], paired["seed"], paired["level"]) == (1000, 0, 0.95)
    assert calibration_bins([0, 1], [0.15, 0.95]).bin.tolist() == [1, 9]  # 10 bins by default
    one = patient_bootstrap(y, y, y * 1.0, patients, NAMES, resamples=1)  # one resample is allowed
    assert one["intervals"]["accuracy"]["defined"] == 1


def test_messages_are_exact():
    with pytest.raises(ValueError, match="^no predictions to evaluate$"):
        classification_report([], [], NAMES)
    with pytest.raises(ValueError, match="^every model needs one prediction and one score per test image$"):
        paired_patient_bootstrap([0, 1], ([0, 1], [0.1, 0.9]), {"b": ([0], [0.1])}, ["P1", "P2"], NAMES)


def test_a_difference_is_undefined_where_only_one_model_is_undefined():
    """b never predicts Level 1, so its Level 1 PPV is undefined while a's is defined."""
    y_true = np.array([0, 1, 0, 1])
    a, b = np.array([0, 1, 1, 1]), np.array([1, 1, 1, 1])
    paired = paired_patient_bootstrap(y_true, (a, a * 1.0), {"b": (b, b * 1.0)}, ["P1", "P2", "P3", "P4"], NAMES,
                                      resamples=10)
    assert paired["differences"]["b"]["ppv"]["Level 1"] == {"difference": None, "low": None, "high": None, "defined": 0}
    assert paired["differences"]["b"]["ppv"]["Level 2"]["difference"] == pytest.approx(2 / 3 - 1 / 2, abs=1e-6)


def test_balanced_log_loss_computes_in_float64_whatever_the_input():
    """Keras predicts float32; the loss (which picks the epoch) is computed in float64."""
    probabilities = np.array([[0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    expected = (-math.log(float(np.float32(0.3))) - math.log(float(np.float32(0.4)))) / 2
    assert balanced_log_loss([0, 1], probabilities) == pytest.approx(expected, rel=1e-15)


def test_pr_points_end_where_the_top_score_is_a_false_positive():
    y = np.array([1, 0, 1, 0])
    score = np.array([0.2, 0.9, 0.6, 0.1])
    precision, recall, cut = precision_recall_curve(y, score)
    expected = pd.DataFrame({"recall": recall, "precision": precision, "threshold": [*cut, 1.0]}).sort_values(
        ["recall", "threshold"]).reset_index(drop=True).round(6)
    pd.testing.assert_frame_equal(pr_points(y, score), expected)
    assert pr_points(y, score).precision.tolist()[:2] == [0.0, 1.0]  # 0.9's point, then the convention's end


def test_calibration_means_are_float64_means_of_float32_scores():
    """Keras gives float32 probabilities; a float32 mean of these three is 0.163565 to six
    decimals, the float64 mean (the oracle, numpy on float64 copies) 0.163564."""
    score = np.array([0.18947158753871918, 0.14227169752120972, 0.15895020961761475], dtype=np.float32)
    table = calibration_bins([1, 0, 1], score)
    assert table.mean_predicted.tolist() == [round(float(score.astype(np.float64).mean()), 6)] == [0.163564]
