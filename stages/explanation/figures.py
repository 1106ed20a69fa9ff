"""The explain stage's figure: Grad-CAM over test images, the planted opacified zones outlined."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stages.explanation.gradcam import overlay, upsample
from stages.reporting.figures import _save_figure, plt


def gradcam_grid(panels: Sequence[dict], title: str, path: Path) -> None:
    """One panel per image: ``stored`` (uint8), ``cam``, optional ``inside`` (bool mask at the stored
    size) outlined in white, and a ``caption``."""
    columns = min(4, max(1, len(panels)))
    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows + 0.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, panel in zip(axes.flat, panels):
        stored = panel["stored"]
        axis.imshow(overlay(stored, upsample(panel["cam"], stored.shape[0])), interpolation="nearest")
        if panel.get("inside") is not None:
            axis.contour(panel["inside"].astype(float), levels=[0.5], colors="white", linewidths=0.8)
        axis.set_title(panel["caption"], fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)
