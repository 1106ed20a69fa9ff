"""How well a heatmap points at the planted disease: mass inside the opacified zones, pointing game.

- **Mass inside**: the share of the heatmap's total mass that lies inside the opacified zones
  (the "energy-based pointing game" of Score-CAM, Wang et al. CVPR-W 2020). A map with no mass
  (all zero after Grad-CAM's ReLU) scores 0: it points nowhere.
- **Pointing game** (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016):
  a hit when the heatmap's maximum lies inside the opacified zones; no tolerance margin (ours: the
  zones are drawn, not outlined by hand). Ties take the first maximum in row-major order; an all-zero
  map is a miss.
- **Random baseline** (ours): the same two scores for maps of independent uniform values on the
  explained layer's grid, upsampled in the same way, averaged over ``draws`` maps per image. Its
  mass share is about the zones' share of the image.

Intervals come from the patient bootstrap of :mod:`stages.evaluation.bootstrap` (a patient's images
are correlated): each score's mean over images, and the paired difference Grad-CAM minus random.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stages.evaluation.bootstrap import _patient_resampler, _percentile_interval
from stages.explanation.gradcam import upsample

SCORES = ("mass_inside", "pointing_hit")


def scores(heatmap: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Both scores of one non-negative heatmap against a boolean mask of the same shape."""
    if heatmap.shape != inside.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {inside.shape} differ in shape")
    total = float(heatmap.sum())
    if total <= 0.0:
        return {"mass_inside": 0.0, "pointing_hit": 0.0}
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return {"mass_inside": float(heatmap[inside].sum()) / total, "pointing_hit": float(inside[peak])}


def random_scores(grid: tuple[int, int], inside: np.ndarray, draws: int, rng: np.random.Generator) -> dict[str, float]:
    """The mean scores of ``draws`` uniform random maps on ``grid``, upsampled to the mask's size."""
    results = [scores(upsample(rng.random(grid, dtype=np.float32), inside.shape[0]), inside) for _ in range(draws)]
    return {name: float(np.mean([r[name] for r in results])) for name in SCORES}


def summarise(gradcam: dict[str, Sequence[float]], random: dict[str, Sequence[float]], patients: Sequence[str],
              resamples: int, level: float, seed: int) -> dict:
    """Mean over images of each score, for Grad-CAM, random maps and their paired difference, each
    with a patient-bootstrap percentile interval; ``above_random``: the difference's interval is above 0."""
    n_patients, collect = _patient_resampler(patients, resamples, level, seed)
    arrays = {(source, name): np.asarray(values, dtype=np.float64)
              for source, table in (("gradcam", gradcam), ("random", random)) for name, values in table.items()}
    for name in SCORES:
        arrays[("difference", name)] = arrays[("gradcam", name)] - arrays[("random", name)]
    samples = collect(lambda rows: {key: float(values[rows].mean()) for key, values in arrays.items()})
    result: dict = {"patients": n_patients, "images": int(len(patients))}
    for name in SCORES:
        entry = {}
        for source in ("gradcam", "random", "difference"):
            low, high = _percentile_interval(samples.get((source, name), []), level)
            entry[source] = {"mean": round(float(arrays[(source, name)].mean()), 6), "low": low, "high": high}
        entry["above_random"] = entry["difference"]["low"] is not None and entry["difference"]["low"] > 0
        result[name] = entry
    return result
