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


def paired_patient_bootstrap(y_true: Sequence[int], reference: tuple[Sequence[int], Sequence[float]],
                             others: dict[str, tuple[Sequence[int], Sequence[float]]], patients: Sequence[str],
                             names: Sequence[str], resamples: int = 1000, level: float = 0.95,
                             seed: int = 0) -> dict[str, Any]:
    """Reference model minus each other model, for every metric of the table, on the same images.

    ``reference`` and each entry of ``others`` are (predicted class, probability of class 1) per
    image. Each resample draws patients as :func:`patient_bootstrap` does and scores *both* models
    on the same rows, so what the two have in common (the same hard cases) cancels: the interval
    is the one a ranking needs, narrower than two overlapping unpaired intervals suggest. The
    difference is left out of a resample where either model's metric is undefined.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"need at least one bootstrap resample, got {resamples}")
    y_true = np.asarray(y_true)
    models = {"": reference, **others}
    arrays = {m: (np.asarray(p), np.asarray(s, dtype=np.float64)) for m, (p, s) in models.items()}
    if any(len(p) != len(y_true) or len(s) != len(y_true) for p, s in arrays.values()):
        raise ValueError("every model needs one prediction and one score per test image")
    patients = np.asarray(patients).astype(str)
    order = sorted(set(patients))
    members = [np.flatnonzero(patients == p) for p in order]

    def differences(rows) -> dict[str, dict[str, float | None]]:
        ref = compute_all(y_true[rows], arrays[""][0][rows], arrays[""][1][rows], names)
        out = {}
        for model in others:
            other = compute_all(y_true[rows], arrays[model][0][rows], arrays[model][1][rows], names)
            out[model] = {k: None if ref[k] is None or other[k] is None else ref[k] - other[k] for k in ref}
        return out

    observed = differences(np.arange(len(y_true)))
    rng = np.random.default_rng(seed)
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(resamples):
        drawn = rng.integers(0, len(order), size=len(order))
        for model, values in differences(np.concatenate([members[i] for i in drawn])).items():
            for key, value in values.items():
                if value is not None:
                    samples.setdefault((model, key), []).append(value)
    tail = (1 - level) / 2 * 100
    result: dict[str, Any] = {}
    for model, values in observed.items():
        flat = {}
        for key, value in values.items():
            drawn_values = samples.get((model, key), [])
            bounds = ([round(float(v), 6) for v in np.percentile(drawn_values, [tail, 100 - tail])]
                      if drawn_values else [None, None])
            flat[key] = {"difference": None if value is None else round(float(value), 6),
                         "low": bounds[0], "high": bounds[1], "defined": len(drawn_values)}
        result[model] = nest(flat)
    return {"method": "paired patient bootstrap, percentile interval", "level": level, "resamples": resamples,
            "seed": seed, "patients": len(order), "images": int(len(y_true)), "differences": result}
