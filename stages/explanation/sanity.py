"""Two checks that say what a Grad-CAM map is worth, beside its localisation scores.

- **Weight randomisation** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): the
  same images' Grad-CAM at the same layer of the same architecture with freshly initialised weights
  (the builder's own initialisers, seeded with ``train.seed``). A map that shows what the model
  learned must change when the learning is gone; a map that stays (rank correlation near 1) shows
  the architecture (padding, strides), not the model. Score: Spearman's rank correlation of the two
  maps of each image over the layer's grid; undefined when either map is constant (an empty map).
- **Disease effect** (ours; phantoms only): each image's explained score ``z2 - z1`` minus that of
  the same radiograph redrawn without its opacities
  (:meth:`stages.explanation.truth.PhantomTruth.stored_with_zones`: same anatomy, exposure, noise
  and preprocessing). Above zero, the model's Level 2 evidence comes from the planted disease; so a
  map that misses the zones of a model with a large effect is a miss of the explanation, not of the
  model.

Both are summarised per group as the mean over the images where they are defined, with the
patient-bootstrap percentile interval of :mod:`stages.evaluation.bootstrap`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stages.evaluation.bootstrap import _patient_resampler, _percentile_interval


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float | None:
    """Spearman's rho of two maps of the same shape (ties take their average rank); None when
    either map is constant, where a rank correlation is undefined."""
    from scipy.stats import rankdata

    first, second = np.ravel(first).astype(np.float64), np.ravel(second).astype(np.float64)
    if first.shape != second.shape:
        raise ValueError(f"maps of {first.size} and {second.size} values cannot be correlated")
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return None
    return float(np.corrcoef(rankdata(first), rankdata(second))[0, 1])


def summarise_mean(values: Sequence[float], patients: Sequence[str], resamples: int, level: float,
                   seed: int) -> dict:
    """The mean of the defined (not NaN) values with a patient-bootstrap percentile interval, and
    how many images and patients it rests on."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    if not defined.any():
        return {"mean": None, "low": None, "high": None, "images": 0, "patients": 0}
    kept = values[defined]
    n_patients, collect = _patient_resampler(np.asarray(patients)[defined], resamples, level, seed)
    samples = collect(lambda rows: {"mean": float(kept[rows].mean())})
    low, high = _percentile_interval(samples.get("mean", []), level)
    return {"mean": round(float(kept.mean()), 6), "low": low, "high": high, "images": int(defined.sum()),
            "patients": n_patients}
