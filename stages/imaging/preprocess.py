"""The paper's preprocessing: COVID-Net's crop box where it gives one, crop the top 8% (burned-in
text), make the image square and resize it.

Squaring follows COVID-Net's public loader (``data.py``: ``crop_top``, ``central_crop``, resize):
``center_crop`` keeps the central square. ``stretch`` (ours, the default before issue 16) resizes
the whole image to the square instead, keeping the lung edges of a wide film at the cost of its
aspect ratio.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def crop_box(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """Keep ``xmin <= x < xmax, ymin <= y < ymax`` (clipped to the image); None keeps all."""
    if box is None:
        return image
    xmin, ymin, xmax, ymax = (int(v) for v in box)
    rows, columns = image.shape[:2]
    xmin, ymin, xmax, ymax = max(xmin, 0), max(ymin, 0), min(xmax, columns), min(ymax, rows)
    if xmin >= xmax or ymin >= ymax:
        raise ValueError(f"crop box {tuple(box)} leaves nothing of a {columns}x{rows} image")
    return image[ymin:ymax, xmin:xmax]


def crop_top(image: np.ndarray, fraction: float) -> np.ndarray:
    """Drop the top ``fraction`` of rows, where scanners burn in text and markers."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"crop fraction must be in [0, 1), got {fraction}")
    return image[int(round(image.shape[0] * fraction)):]


SQUARE_MODES = ("center_crop", "stretch")


def center_square(image: np.ndarray) -> np.ndarray:
    """The central square of the image (COVID-Net's ``central_crop``: offsets rounded down)."""
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top:top + side, left:left + side]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float [0, 1] image to size x size (whatever its aspect ratio)."""
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.asarray(resized, dtype=np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def preprocess(image: np.ndarray, size: int, crop_top_fraction: float = 0.08,
               box: tuple[int, int, int, int] | None = None, square: str = "center_crop") -> np.ndarray:
    """Display image in [0, 1] -> model-ready uint8 size x size."""
    if square not in SQUARE_MODES:
        raise ValueError(f"ingest.square must be one of {list(SQUARE_MODES)}, got {square!r}")
    cropped = crop_top(crop_box(image, box), crop_top_fraction)
    return to_uint8(resize_square(center_square(cropped) if square == "center_crop" else cropped, size))
