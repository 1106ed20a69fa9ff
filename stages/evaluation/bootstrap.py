"""Confidence intervals by resampling patients, not images.

A patient's radiographs are correlated (same anatomy, often the same disease extent), so
resampling images would understate the uncertainty. Each resample draws as many patients as the
test split has, with replacement, and takes all of each drawn patient's images; the interval is
the percentile interval of the metric over the resamples (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from stages.evaluation.classification import roc_auc


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    """Flat ``{"accuracy": .., "sensitivity/Level 1": .., ..., "roc_auc": ..}`` for one resample."""
    out: dict[str, float | None] = {"accuracy": float(np.mean(y_true == y_pred))}
    for value, name in enumerate(names):
        true_here, pred_here = y_true == value, y_pred == value
        hits = float(np.sum(true_here & pred_here))
        out[f"sensitivity/{name}"] = hits / true_here.sum() if true_here.any() else None
        out[f"ppv/{name}"] = hits / pred_here.sum() if pred_here.any() else None
        denominator = true_here.sum() + pred_here.sum()
        out[f"f1/{name}"] = 2 * hits / denominator if denominator else None
    out["roc_auc"] = roc_auc(y_true, score)
    return out


def patient_bootstrap(y_true: Sequence[int], y_pred: Sequence[int], score: Sequence[float],
                      patients: Sequence[str], names: Sequence[str], resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile intervals of accuracy, per-class sensitivity/PPV/F1 and ROC AUC.

    ``score`` is the probability of class 1. A metric undefined in a resample (no case of a class
    drawn) is left out of that resample; ``defined`` says in how many it was computed.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"need at least one bootstrap resample, got {resamples}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    score, patients = np.asarray(score, dtype=np.float64), np.asarray(patients).astype(str)
    order = sorted(set(patients))  # sorted: the draw does not depend on row order
    members = [np.flatnonzero(patients == p) for p in order]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        drawn = rng.integers(0, len(order), size=len(order))
        rows = np.concatenate([members[i] for i in drawn])
        for key, value in _metrics(y_true[rows], y_pred[rows], score[rows], names).items():
            if value is not None:
                samples.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    intervals: dict[str, Any] = {}
    for key in _metrics(y_true, y_pred, score, names):  # every key, in a stable order
        values = samples.get(key, [])
        bounds = ([round(float(v), 6) for v in np.percentile(values, [tail, 100 - tail])]
                  if values else [None, None])
        metric, _, name = key.partition("/")
        entry = {"low": bounds[0], "high": bounds[1], "defined": len(values)}
        if name:
            intervals.setdefault(metric, {})[name] = entry
        else:
            intervals[metric] = entry
    return {"method": "patient bootstrap, percentile interval", "level": level, "resamples": resamples,
            "seed": seed, "patients": len(order), "intervals": intervals}
