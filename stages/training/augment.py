"""The paper's augmentation as one seeded affine warp per image, plus an intensity change.

Translation +-10% in x and y, rotation +-10 degrees, horizontal flip, zoom +-15%, intensity +-10%
(the paper's list). How the intensity changes and what fills the border follow COVID-Net's public
loader by default (``data.py``: Keras ``brightness_range=(0.9, 1.1)``, ``fill_mode='constant'``,
``cval=0``): ``intensity_mode: brightness`` multiplies each image by a factor in [0.9, 1.1] and
``fill: constant`` fills with black. ``intensity_mode: shift`` (add up to 10% of full scale) and
``fill: nearest`` (repeat the edge pixels) are ours, the settings before issue 16. All random draws
are stateless (seeded by the batch index), so a run is reproducible no matter how tf.data
schedules its threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


INTENSITY_MODES = ("brightness", "shift")
FILL_MODES = {"constant": "CONSTANT", "nearest": "NEAREST"}  # -> ImageProjectiveTransformV3's fill_mode


@dataclass(frozen=True)
class AugmentConfig:
    translation: float = 0.1
    rotation_degrees: float = 10.0
    horizontal_flip: bool = True
    zoom: float = 0.15
    intensity: float = 0.1
    intensity_mode: str = "brightness"  # brightness (COVID-Net) | shift (ours)
    fill: str = "constant"  # constant black (COVID-Net) | nearest edge pixel (ours)

    def __post_init__(self) -> None:
        if self.intensity_mode not in INTENSITY_MODES:
            raise ValueError(f"augment.intensity_mode must be one of {list(INTENSITY_MODES)}, "
                             f"got {self.intensity_mode!r}")
        if self.fill not in FILL_MODES:
            raise ValueError(f"augment.fill must be one of {list(FILL_MODES)}, got {self.fill!r}")

    @classmethod
    def from_params(cls, params: dict) -> "AugmentConfig":
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if k in params})


def affine_transforms(uniform: tf.Tensor, height, width, cfg: AugmentConfig) -> tf.Tensor:
    """Per-image projective transforms [B, 8] mapping output pixels to input pixels.

    ``uniform`` is [B, 5] in [-1, 1): rotation, zoom, shift x, shift y, flip draw.
    """
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    angle = uniform[:, 0] * (cfg.rotation_degrees * math.pi / 180.0)
    scale = 1.0 + uniform[:, 1] * cfg.zoom  # >1 zooms in
    shift_x = uniform[:, 2] * cfg.translation * width
    shift_y = uniform[:, 3] * cfg.translation * height
    flip = tf.where(uniform[:, 4] < 0.0, -1.0, 1.0) if cfg.horizontal_flip else tf.ones_like(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = R(-angle) / scale * (output - centre - shift), x mirrored first when flipped.
    a0, a1 = cos * flip, sin
    b0, b1 = -sin * flip, cos
    ox, oy = -cx - shift_x, -cy - shift_y
    a2 = cos * ox + sin * oy + cx
    b2 = -sin * ox + cos * oy + cy
    # Flip about the centre: x -> (width - 1) - x, folded into the offset.
    a2 = a2 + tf.where(flip < 0, cos * (width - 1), 0.0)
    b2 = b2 + tf.where(flip < 0, -sin * (width - 1), 0.0)
    zeros = tf.zeros_like(angle)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Augment a float batch [B, H, W, C] in [0, 255]; ``seed`` is a stateless seed pair."""
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    uniform = tf.random.stateless_uniform([batch, 6], seed=seed, minval=-1.0, maxval=1.0)
    transforms = affine_transforms(uniform[:, :5], height, width, cfg)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode=FILL_MODES[cfg.fill])
    change = uniform[:, 5][:, None, None, None] * cfg.intensity
    changed = warped * (1.0 + change) if cfg.intensity_mode == "brightness" else warped + change * 255.0
    return tf.clip_by_value(changed, 0.0, 255.0)
