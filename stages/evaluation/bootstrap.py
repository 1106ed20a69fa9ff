"""Confidence intervals by resampling patients, not images.

A patient's radiographs are correlated (same anatomy, often the same disease extent), so
resampling images would understate the uncertainty. Each resample draws as many patients as the
test split has, with replacement, and takes all of each drawn patient's images; the interval is
the percentile interval of the metric over the resamples (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np

from stages.evaluation.classification import compute_all, nest

Statistic = Callable[[np.ndarray], dict[Hashable, "float | None"]]


def _patient_resampler(patients: Sequence[str], resamples: int, level: float, seed: int
                       ) -> tuple[int, Callable[[Statistic], dict[Hashable, list[float]]]]:
    """Check a bootstrap's arguments and group the rows by patient.

    Returns the number of patients and ``collect(statistic)``: for each key of ``statistic(rows)``,
    its values over ``resamples`` resamples, leaving out those where it is ``None`` (undefined).
    Each resample draws as many patients as there are, with replacement, from a generator seeded
    with ``seed``, and takes all of each drawn patient's rows: the same draws for every statistic.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"need at least one bootstrap resample, got {resamples}")
    patients = np.asarray(patients).astype(str)
    order = sorted(set(patients))  # sorted: the draw does not depend on row order
    members = [np.flatnonzero(patients == p) for p in order]

    def collect(statistic: Statistic) -> dict[Hashable, list[float]]:
        rng = np.random.default_rng(seed)
        samples: dict[Hashable, list[float]] = {}
        for _ in range(resamples):
            drawn = rng.integers(0, len(order), size=len(order))
            for key, value in statistic(np.concatenate([members[i] for i in drawn])).items():
                if value is not None:
                    samples.setdefault(key, []).append(value)
        return samples

    return len(order), collect


def _percentile_interval(values: list[float], level: float) -> list[float | None]:
    """``[low, high]``: the central ``level`` percentile interval of ``values``, ``[None, None]`` if none."""
    tail = (1 - level) / 2 * 100
    return ([round(float(v), 6) for v in np.percentile(values, [tail, 100 - tail])]
            if values else [None, None])


def patient_bootstrap(y_true: Sequence[int], y_pred: Sequence[int], score: Sequence[float],
                      patients: Sequence[str], names: Sequence[str], resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile intervals of every metric of the table (:data:`~stages.evaluation.classification.METRICS`).

    ``score`` is the probability of class 1. A metric undefined in a resample (no case of a class
    drawn) is left out of that resample; ``defined`` says in how many it was computed.
    """
    n_patients, collect = _patient_resampler(patients, resamples, level, seed)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    score = np.asarray(score, dtype=np.float64)
    samples = collect(lambda rows: compute_all(y_true[rows], y_pred[rows], score[rows], names))
    intervals: dict[str, Any] = {}
    for key in compute_all(y_true, y_pred, score, names):  # every key, in a stable order
        values = samples.get(key, [])
        low, high = _percentile_interval(values, level)
        intervals[key] = {"low": low, "high": high, "defined": len(values)}
    return {"method": "patient bootstrap, percentile interval", "level": level, "resamples": resamples,
            "seed": seed, "patients": n_patients, "intervals": nest(intervals)}


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
    n_patients, collect = _patient_resampler(patients, resamples, level, seed)
    y_true = np.asarray(y_true)
    models = {"": reference, **others}
    arrays = {m: (np.asarray(p), np.asarray(s, dtype=np.float64)) for m, (p, s) in models.items()}
    if any(len(p) != len(y_true) or len(s) != len(y_true) for p, s in arrays.values()):
        raise ValueError("every model needs one prediction and one score per test image")

    def differences(rows) -> dict[str, dict[str, float | None]]:
        ref = compute_all(y_true[rows], arrays[""][0][rows], arrays[""][1][rows], names)
        out = {}
        for model in others:
            other = compute_all(y_true[rows], arrays[model][0][rows], arrays[model][1][rows], names)
            out[model] = {k: None if ref[k] is None or other[k] is None else ref[k] - other[k] for k in ref}
        return out

    observed = differences(np.arange(len(y_true)))
    samples = collect(lambda rows: {(model, key): value for model, values in differences(rows).items()
                                    for key, value in values.items()})
    result: dict[str, Any] = {}
    for model, values in observed.items():
        flat = {}
        for key, value in values.items():
            drawn_values = samples.get((model, key), [])
            low, high = _percentile_interval(drawn_values, level)
            flat[key] = {"difference": None if value is None else round(float(value), 6),
                         "low": low, "high": high, "defined": len(drawn_values)}
        result[model] = nest(flat)
    return {"method": "paired patient bootstrap, percentile interval", "level": level, "resamples": resamples,
            "seed": seed, "patients": n_patients, "images": int(len(y_true)), "differences": result}
