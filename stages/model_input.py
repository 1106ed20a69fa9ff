"""From a radiograph file to a model's input: the one code path of ``ingest`` and ``predict``.

``ingest`` decodes every raw file with :func:`prepare` and stores the uint8 result as a PNG;
``predict`` calls the same :func:`prepare` on the user's file, so a radiograph given to ``predict``
gets exactly the pipeline's preprocessing (decoding, Modality/VOI LUT, MONOCHROME1 inversion, crop
box, top crop, square, resize: :mod:`stages.dicomio.read`, :mod:`stages.imaging.preprocess`).

The training input pipeline (:mod:`stages.training.data`) then reads each PNG, area-resizes it to
the model's input size with TensorFlow and repeats the grey channel three times;
:func:`network_input` does the same in numpy (no TensorFlow, so the LiteRT backend of ``predict``
runs without it). ``tests/test_model_input.py`` holds it to ``tf.image.resize(method="area")``.

This module sits outside ``stages/imaging`` on purpose: ``acquire`` depends on that folder too,
and a new file there would make ``dvc status`` report ``acquire`` as changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stages.dicomio.read import read_any
from stages.imaging.preprocess import SQUARE_MODES, preprocess


@dataclass(frozen=True)
class Preprocessing:
    """The ``ingest`` section's preprocessing settings (``preprocess``'s arguments)."""

    image_size: int
    crop_top_fraction: float
    square: str

    @classmethod
    def from_params(cls, ingest: dict) -> "Preprocessing":
        square = str(ingest.get("square", "center_crop"))
        if square not in SQUARE_MODES:
            raise SystemExit(f"ingest.square must be one of {list(SQUARE_MODES)}, got {square!r}")
        return cls(int(ingest["image_size"]), float(ingest["crop_top_fraction"]), square)

    def apply(self, display: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Display image in [0, 1] -> the stored uint8 image_size x image_size."""
        return preprocess(display, self.image_size, self.crop_top_fraction, box, self.square)


def prepare(path: str | Path, settings: Preprocessing, box: tuple[int, int, int, int] | None = None,
            read: Callable[[Path], np.ndarray] = read_any) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` and preprocess it: ``(display image, stored uint8 image)``.

    ``read`` defaults to choosing the reader by suffix (DICOM, or PNG/JPEG); ``ingest`` passes the
    raster reader for COVIDx files. Raises :class:`stages.dicomio.read.UnreadableImage` (the file
    named) or ValueError (a crop box outside the image).
    """
    display = read(Path(path))
    return display, settings.apply(display, box)


def _area_weights(source: int, target: int) -> np.ndarray:
    """(target, source) matrix of TensorFlow's ``ResizeArea`` along one axis (half-open pixel spans).

    Output pixel ``i`` covers input span ``[i * s, (i + 1) * s)`` with ``s = source / target``; each
    input pixel is weighted by its overlap with that span, and the weights are divided by ``s``.
    """
    scale = source / target
    starts = np.arange(target) * scale
    ends = starts + scale
    pixels = np.arange(source)
    overlap = np.minimum(ends[:, None], pixels[None, :] + 1) - np.maximum(starts[:, None], pixels[None, :])
    return np.clip(overlap, 0.0, None) / scale


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image resized to size x size by area averaging, as ``tf.image.resize(method="area")``."""
    rows = _area_weights(image.shape[0], size)
    columns = _area_weights(image.shape[1], size)
    return (rows @ image.astype(np.float64) @ columns.T).astype(np.float32)


def network_input(stored: np.ndarray, input_size: int) -> np.ndarray:
    """Stored uint8 image -> float32 (input_size, input_size, 3) in [0, 255], as training feeds it."""
    image = stored.astype(np.float32)
    if image.shape != (input_size, input_size):
        image = area_resize(image, input_size)
    return np.repeat(image[:, :, None], 3, axis=2)
