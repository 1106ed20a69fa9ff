"""Curve data for ``dvc plots``: ROC, precision-recall and calibration, as small CSV tables."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

DECIMALS = 6  # rounded, so the files are byte-stable across platforms' last-bit differences


def roc_points(y_true: Sequence[int], score: Sequence[float]) -> pd.DataFrame:
    """False and true positive rates of class 1 at each distinct threshold (the first, above every
    score, is written as 1.0 rather than infinity)."""
    fpr, tpr, thresholds = roc_curve(y_true, score, drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, 1.0)}).round(DECIMALS)


def pr_points(y_true: Sequence[int], score: Sequence[float]) -> pd.DataFrame:
    """Precision and recall of class 1, ordered by increasing recall."""
    precision, recall, thresholds = precision_recall_curve(y_true, score)
    frame = pd.DataFrame({"recall": recall[:-1], "precision": precision[:-1], "threshold": thresholds})
    # sklearn ends at recall 0 with precision 1 by convention; keep that point, without a threshold.
    end = pd.DataFrame({"recall": [recall[-1]], "precision": [precision[-1]], "threshold": [1.0]})
    return pd.concat([frame, end]).sort_values(["recall", "threshold"]).round(DECIMALS).reset_index(drop=True)


def calibration_bins(y_true: Sequence[int], score: Sequence[float], bins: int = 10) -> pd.DataFrame:
    """Per equal-width probability bin with images: mean predicted probability of class 1, the
    observed fraction of class 1, and the image count (a reliability diagram's points)."""
    y_true, score = np.asarray(y_true), np.asarray(score, dtype=np.float64)
    index = np.minimum((score * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        member = index == b
        if member.any():
            rows.append({"bin": b, "bin_low": b / bins, "bin_high": (b + 1) / bins,
                         "mean_predicted": score[member].mean(), "fraction_positive": y_true[member].mean(),
                         "n": int(member.sum())})
    columns = ["bin", "bin_low", "bin_high", "mean_predicted", "fraction_positive", "n"]
    return pd.DataFrame(rows, columns=columns).round(DECIMALS)


def expected_calibration_error(calibration: pd.DataFrame) -> float:
    """The image-weighted mean gap between observed and predicted P(class 1) over the bins of
    :func:`calibration_bins` (the reliability-diagram ECE of the Level 2 probability, ours)."""
    gaps = (calibration.fraction_positive - calibration.mean_predicted).abs()
    return round(float((calibration.n * gaps).sum() / calibration.n.sum()), 6)
