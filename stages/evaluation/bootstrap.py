"""Confidence intervals by resampling patients, not images.

A patient's radiographs are correlated (same anatomy, often the same disease extent), so
resampling images would understate the uncertainty. Each resample draws as many patients as the
test split has, with replacement, and takes all of each drawn patient's images; the interval is
the percentile interval of the metric over the resamples (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from stages.evaluation.classification import compute_all, nest


def patient_bootstrap(y_true: Sequence[int], y_pred: Sequence[int], score: Sequence[float],
                      patients: Sequence[str], names: Sequence[str], resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile intervals of every metric of the table (:data:`~stages.evaluation.classification.METRICS`).

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
        for key, value in compute_all(y_true[rows], y_pred[rows], score[rows], names).items():
            if value is not None:
                samples.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    intervals: dict[str, Any] = {}
    for key in compute_all(y_true, y_pred, score, names):  # every key, in a stable order
        values = samples.get(key, [])
        bounds = ([round(float(v), 6) for v in np.percentile(values, [tail, 100 - tail])]
                  if values else [None, None])
        intervals[key] = {"low": bounds[0], "high": bounds[1], "defined": len(values)}
    return {"method": "patient bootstrap, percentile interval", "level": level, "resamples": resamples,
            "seed": seed, "patients": len(order), "intervals": nest(intervals)}
