"""The embedded synthetic cohort: a deterministic "digital phantom" of chest radiographs.

The phantom stands in for RSNA RICORD 1c (DICOM radiographs graded by several readers in one
MD.ai export) and for COVIDx (PNG/JPEG pretraining images with ``patient_id filename label
source`` lists), so that the whole pipeline runs offline, on a CPU, in minutes. Everything is
derived from ``cfg["seed"]``: two runs with the same settings write byte-identical trees.

Each radiograph is a frontal chest drawn analytically at a low base resolution (body, two dark
lung fields, mediastinum, spine, heart, diaphragm, clavicles, ribs), then rotated/shifted a
little, upsampled to the target size, given fine noise and burned-in text in the top band.
Airspace disease is drawn as patchy opacity confined to the chosen lung zones:

    zone 0 right upper   zone 3 left upper        (patient's right lung is on the image left)
    zone 1 right middle  zone 4 left middle       (each lung is split into 3 vertical thirds)
    zone 2 right lower   zone 5 left lower

The number of opacified zones is the planted truth behind the readers' airspace grades.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)
from tqdm import tqdm

from stages import schema
from stages.common.progress import progress as progress_bar

N_ZONES = 6
ZONE_NAMES = (
    "right upper",
    "right middle",
    "right lower",
    "left upper",
    "left middle",
    "left lower",
)
# Probability of k = 1..6 opacified zones in a RICORD-like study: Level 2 (k >= 3) is ~70%, as in
# the paper's cohort (682 of 909 images).
ZONE_COUNT_PROBABILITIES = (0.14, 0.16, 0.20, 0.20, 0.15, 0.15)
# COVID-19 pneumonia favours the lower zones; these weights pick which zones are opacified.
ZONE_WEIGHTS = (0.8, 1.0, 1.3, 0.8, 1.0, 1.3)
OPACITY_COVERAGE = (0.50, 0.85)  # fraction of a zone covered by patchy opacity
OPACITY_STRENGTH = (0.24, 0.34)  # added brightness; clear lung is ~0.15-0.25, soft tissue ~0.5

BASE_HEIGHT = 160  # analytic rendering resolution (float32); upsampled to the target size
TEXT_BAND_FRACTION = 0.05  # burned-in text stays inside this top band (the pipeline crops 8%)
CANONICAL_NOISE_SIZE = 128  # opacity fields live on this grid in anatomical coordinates

# DICOM look: the real RICORD 1c cohort is mostly AP, often without ViewPosition, rarely PA.
VIEW_CHOICES = ("AP", "", "PA")
VIEW_PROBABILITIES = (0.55, 0.42, 0.03)
BITS_STORED_CHOICES = (8, 10, 12, 14, 15, 16)
BITS_STORED_PROBABILITIES = (0.10, 0.15, 0.35, 0.15, 0.10, 0.15)
MONOCHROME1_PROBABILITY = 0.35
WINDOW_PROBABILITY = 0.5
# Large enough to exercise real decoding and the crop (real RICORD films are ~2-3k px); the
# pipeline trains on at most 64 px, so larger phantoms only cost time.
DICOM_SIZE_RANGE = (320, 640)
PRETRAIN_SIZE_RANGE = (256, 480)
SOP_CLASS_OF_MODALITY = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}
# A fixed implementation UID keeps files identical across pydicom versions.
IMPLEMENTATION_VERSION = "PHANTOM_1"

READER_POOL_SIZE = 7
READERS_PER_STUDY = (2, 3)
CLASSIFICATION_PROBABILITIES = (0.62, 0.18, 0.10, 0.10)  # order of schema.CLASSIFICATION_LABELS
STUDY_DATE_RANGE = (date(2020, 3, 1), date(2020, 12, 31))
ANNOTATION_START = datetime(2020, 11, 2, 9, 0, 0)
RICORD_SITES = (("419639", 0.8), ("SITE2", 0.2))  # the two sites' PatientID infixes

POSITIVE_SOURCES = (("sirm", 0.30), ("cohen", 0.30), ("actmed", 0.25), ("fig1", 0.15))
NEGATIVE_SOURCES = (("rsna", 0.9), ("cohen", 0.1))
PRETRAIN_IMAGES_PER_PATIENT = (1, 1, 1, 2, 3)  # drawn uniformly: most patients have one image
SINGLE_IMAGE_SOURCES = ("sirm", "actmed", "fig1")  # these sources hold one image per patient

# Columns of the truth tables under synthetic_truth/ (tests and checks read them).
RICORD_TRUTH_COLUMNS = [
    "patient_id", "study_uid", "series_uid", "sop_uid", "raw_path", "n_zones", "opacity_zones",
    "modality", "view", "photometric", "bits_stored", "rows", "columns",
]
COVIDX_TRUTH_COLUMNS = ["patient_id", "filename", "label", "covidx_source", "list", "n_zones"]


# Independent random streams: default_rng([seed, STREAM, ...indices]). Separate streams keep the
# draws of one part from shifting when another part changes (e.g. more corrupt files).
_STREAM_COHORT = 1
_STREAM_PATIENT = 2
_STREAM_STUDY = 3
_STREAM_IMAGE = 4
_STREAM_READERS = 5
_STREAM_CORRUPT = 6
_STREAM_PRETRAIN = 7
_STREAM_PRETRAIN_IMAGE = 8
_STREAM_LEAK = 9

# Planted leaks: a severity image copied into the pretraining cohort under a new name and patient,
# shrunk and re-encoded as JPEG, so that only the leakage audit's image-content hashes can find it.
LEAK_TRUTH_COLUMNS = ["filename", "patient_id", "source_raw_path", "source_patient_id", "scale",
                      "jpeg_quality"]
LEAK_SCALES = (0.5, 0.75)
LEAK_JPEG_QUALITIES = (70, 85)


# =============================================================================================
# Rendering
# =============================================================================================
@dataclass(frozen=True)
class Anatomy:
    """One patient's chest geometry, in normalised image coordinates (u right, v down, 0..1)."""

    lung_center_right: float  # u of the patient's right lung (image left)
    lung_center_left: float
    lung_half_width_right: float
    lung_half_width_left: float
    lung_top: float
    lung_bottom_right: float
    lung_bottom_left: float
    diaphragm_dome: float
    mediastinum_half_width: float
    heart_center: tuple[float, float]
    heart_radii: tuple[float, float]
    body_half_width: float
    soft_tissue: float
    lung_darkness: float
    rib_spacing: float
    rib_curvature: float
    rib_strength: float


@dataclass(frozen=True)
class Acquisition:
    """How one exposure of the patient came out: positioning, exposure and detector noise."""

    rotation_degrees: float
    shift: tuple[float, float]
    zoom: float
    inspiration: float  # moves the diaphragm: deeper breath, longer lungs
    gamma: float
    display_range: tuple[float, float]
    noise_sigma: float


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy: lung size/position, heart, body habitus, tissue contrast."""
    spread = rng.uniform(-0.02, 0.02)
    lung_bottom = rng.uniform(0.72, 0.79)
    return Anatomy(
        lung_center_right=0.30 - spread + rng.uniform(-0.01, 0.01),
        lung_center_left=0.70 + spread + rng.uniform(-0.01, 0.01),
        lung_half_width_right=rng.uniform(0.125, 0.15),
        lung_half_width_left=rng.uniform(0.12, 0.145),
        lung_top=rng.uniform(0.14, 0.18),
        lung_bottom_right=lung_bottom,
        lung_bottom_left=lung_bottom + rng.uniform(0.0, 0.03),
        diaphragm_dome=rng.uniform(0.04, 0.08),
        mediastinum_half_width=rng.uniform(0.055, 0.07),
        heart_center=(rng.uniform(0.54, 0.57), rng.uniform(0.63, 0.67)),
        heart_radii=(rng.uniform(0.13, 0.16), rng.uniform(0.10, 0.12)),
        body_half_width=rng.uniform(0.42, 0.47),
        soft_tissue=rng.uniform(0.46, 0.55),
        lung_darkness=rng.uniform(0.28, 0.35),
        rib_spacing=rng.uniform(0.058, 0.07),
        rib_curvature=rng.uniform(0.8, 1.4),
        rib_strength=rng.uniform(0.04, 0.07),
    )


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw one exposure: small rotation/shift/zoom, breath depth, contrast curve, noise level."""
    low = rng.uniform(0.0, 0.06)
    return Acquisition(
        rotation_degrees=float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0)),
        shift=(rng.uniform(-0.025, 0.025), rng.uniform(-0.02, 0.02)),
        zoom=rng.uniform(0.95, 1.05),
        inspiration=rng.uniform(-0.02, 0.02),
        gamma=rng.uniform(0.8, 1.25),
        display_range=(low, rng.uniform(0.9, 1.0)),
        noise_sigma=rng.uniform(0.008, 0.022),
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """A soft step from 0 to 1: smoothstep over |x| < 3, with the logistic's slope (1/4) at 0.

    Only additions and multiplications: the same bits on every CPU and fast at numpy's baseline
    instruction set (``stages.common.cpu``), where ``np.tanh`` took a third of the rendering time.
    """
    t = np.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-blurred white noise (periodic, via FFT), normalised to zero mean and unit std."""
    white = rng.standard_normal(shape)
    freq_y = np.fft.fftfreq(shape[0])[:, None]
    freq_x = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (freq_x**2 + freq_y**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    field -= field.mean()
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _fast_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-std noise (sum of two uniform bytes: triangular, close enough to normal).

    About 4x faster than ``standard_normal`` on megapixel images, which dominates generate()'s
    run time otherwise.
    """
    count = shape[0] * shape[1]
    pairs = np.frombuffer(rng.bytes(2 * count), dtype=np.uint8).reshape(2, *shape)
    scale = np.float32(1.0 / 104.12)  # std of the sum of two uniform 0..255 bytes
    return (pairs[0].astype(np.float32) + pairs[1]) * scale - np.float32(255.0) * scale


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float image with PIL (mode F keeps full float precision)."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.float32)  # a writable copy (PIL buffers are read-only)


def _lung_field(anatomy: Anatomy, acquisition: Acquisition, side: str, u: np.ndarray,
                v: np.ndarray, edge: float) -> tuple[np.ndarray, float, float]:
    """Soft mask of one lung (apex narrow, diaphragm domed medially) and its top/bottom v."""
    if side == "right":
        center, half_width = anatomy.lung_center_right, anatomy.lung_half_width_right
        bottom, medial_sign = anatomy.lung_bottom_right, 1.0  # medial side is towards larger u
    else:
        center, half_width = anatomy.lung_center_left, anatomy.lung_half_width_left
        bottom, medial_sign = anatomy.lung_bottom_left, -1.0
    top = anatomy.lung_top
    bottom = bottom + acquisition.inspiration
    depth = np.clip((v - top) / (bottom - top), 0.0, 1.0)
    # The apex is rounded (an elliptical cap over the top 45%), the base slightly narrower.
    cap = np.clip(depth / 0.45, 0.0, 1.0)
    local_half_width = half_width * (np.sqrt(1.0 - (1.0 - cap) ** 2) - 0.08 * depth**2)
    offset = (u - center) / half_width
    medialness = np.clip((medial_sign * offset + 1.0) / 2.0, 0.0, 1.0)
    # The hemidiaphragm domes up medially; the costophrenic angle stays low and sharp.
    floor = bottom - anatomy.diaphragm_dome * medialness**0.8
    mask = (
        _sigmoid((local_half_width - np.abs(u - center)) / edge)
        * _sigmoid((floor - v) / edge)
        * _sigmoid((v - top) / edge)
    )
    return mask, top, bottom


def _zone_masks(lungs: dict[str, tuple[np.ndarray, float, float]], heart: np.ndarray,
                v: np.ndarray, edge: float) -> list[np.ndarray]:
    """Six soft zone masks: each lung (minus the heart shadow) cut into thirds of its height."""
    masks = []
    for side in ("right", "left"):
        lung, top, bottom = lungs[side]
        visible = lung * (1.0 - heart)
        thirds = [float(value) for value in np.linspace(top, bottom, 4)]
        for upper, lower in zip(thirds[:-1], thirds[1:]):
            band = np.ones_like(v)
            if upper > top:  # no cut above the apex: the lung mask already ends there
                band = band * _sigmoid((v - upper) / edge)
            if lower < bottom:
                band = band * _sigmoid((lower - v) / edge)
            masks.append(visible * band)
    return masks


def _anatomy_layers(anatomy: Anatomy, acquisition: Acquisition, u: np.ndarray, v: np.ndarray,
                    edge: float, texture: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Compose the clear chest (display convention, bright = dense) and its six zone masks."""
    du = np.abs(u - 0.5)
    # Body: neck, sloping shoulders, torso; arms faintly at the sides. Air outside is dark.
    shoulder_line = 0.05 + 0.30 * (du / 0.5) ** 2
    torso = _sigmoid((anatomy.body_half_width - du) / edge) * _sigmoid((v - shoulder_line) / edge)
    neck = _sigmoid((0.09 - du) / edge)
    arms = _sigmoid((anatomy.body_half_width + 0.07 - du) / edge) * _sigmoid((v - 0.2) / edge)
    body = np.maximum(np.maximum(torso, neck), 0.55 * arms)
    image = 0.04 + (anatomy.soft_tissue - 0.04) * body
    # Lower body below the diaphragm is denser (liver, stomach, abdominal wall).
    image += 0.08 * body * _sigmoid((v - anatomy.lung_bottom_right - 0.02) / 0.03)

    heart_u, heart_v = anatomy.heart_center
    radius_u, radius_v = anatomy.heart_radii
    heart_shape = ((u - heart_u) / radius_u) ** 2 + ((v - heart_v) / radius_v) ** 2
    heart = _sigmoid((1.0 - heart_shape) / 0.1)

    lungs = {side: _lung_field(anatomy, acquisition, side, u, v, edge) for side in ("right", "left")}
    lung_union = np.maximum(lungs["right"][0], lungs["left"][0])
    # Lungs: dark air with faint vascular markings, densest near the hila.
    hilum = np.exp(-(((du - 0.11) / 0.06) ** 2 + ((v - 0.45) / 0.1) ** 2))
    vessels = 0.012 * texture + 0.05 * hilum
    # The heart shadow hides most of the lung behind it.
    image -= lung_union * (1.0 - 0.7 * heart) * (anatomy.lung_darkness - vessels)

    # Ribs: curved bands across the thorax, brighter where they overlie lung.
    thorax = _sigmoid((anatomy.body_half_width - 0.03 - du) / edge) * _sigmoid(
        (anatomy.lung_bottom_left + 0.02 - v) / edge
    )
    phase = (v - anatomy.rib_curvature * (du - 0.18) ** 2) / anatomy.rib_spacing
    ribs = np.clip((np.cos(2 * np.pi * phase) - 0.5) / 0.5, 0.0, 1.0)
    image += anatomy.rib_strength * ribs * thorax * (0.4 + 0.6 * lung_union)

    # Clavicles: bright oblique bands near the top, rising laterally.
    clavicle_line = 0.17 - 0.12 * du
    clavicle = np.exp(-(((v - clavicle_line) / 0.012) ** 2)) * ((du > 0.04) & (du < 0.33))
    image += 0.13 * clavicle

    # Mediastinum widening downwards, spine with vertebral bodies, then the heart on top.
    mediastinum_half = anatomy.mediastinum_half_width * (0.8 + 0.4 * np.clip(v, 0.0, 1.0))
    mediastinum = (
        _sigmoid((mediastinum_half - du) / edge)
        * _sigmoid((v - anatomy.lung_top + 0.04) / 0.02)
        * _sigmoid((anatomy.lung_bottom_right + 0.06 - v) / 0.03)
    )
    image += 0.2 * mediastinum
    # The trachea: an air column down the midline into the upper mediastinum.
    trachea = _sigmoid((0.018 - du) / edge) * _sigmoid((anatomy.lung_top + 0.18 - v) / 0.02)
    image -= 0.12 * trachea * body
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * v / 0.045)
    spine = _sigmoid((0.03 - du) / edge)
    image += (0.03 + 0.03 * vertebrae) * spine * body
    image += 0.14 * heart * (1.0 - 0.6 * mediastinum)

    return image, _zone_masks(lungs, heart, v, edge)


def _opacity_layer(rng: np.random.Generator, opacity_zones: Sequence[int],
                   zone_masks: list[np.ndarray]) -> np.ndarray:
    """Patchy airspace opacity, confined to the given zones, covering 50-85% of each."""
    height, width = zone_masks[0].shape
    if not opacity_zones:
        return np.zeros((height, width), dtype=np.float32)
    # Fields live on a canonical grid so a study's images share the same pattern of disease.
    blobs = _resize(_smooth_noise(rng, (CANONICAL_NOISE_SIZE,) * 2, 5.0), height, width)
    grain = _resize(_smooth_noise(rng, (CANONICAL_NOISE_SIZE,) * 2, 1.2), height, width)
    opacity = np.zeros((height, width), dtype=np.float32)
    for zone in sorted(set(opacity_zones)):
        coverage = rng.uniform(*OPACITY_COVERAGE)
        strength = rng.uniform(*OPACITY_STRENGTH)
        mask = zone_masks[zone]
        inside = mask > 0.5
        if not inside.any():
            continue
        threshold = float(np.quantile(blobs[inside], 1.0 - coverage))
        patches = _sigmoid((blobs - threshold) / 0.2)
        opacity += strength * patches * (0.85 + 0.15 * np.clip(grain, -2, 2)) * mask
    return opacity


def _affine_warp(array: np.ndarray, acquisition: Acquisition, fill: float) -> np.ndarray:
    """Rotate/shift/zoom about the image centre (PIL maps each output pixel to its input)."""
    height, width = array.shape
    angle = np.deg2rad(acquisition.rotation_degrees)
    cos, sin = np.cos(angle) / acquisition.zoom, np.sin(angle) / acquisition.zoom
    center_x, center_y = width / 2.0, height / 2.0
    shift_x, shift_y = acquisition.shift[0] * width, acquisition.shift[1] * height
    # input = R(-angle)/zoom * (output - centre - shift) + centre
    a, b, d, e = cos, sin, -sin, cos
    c = center_x - a * (center_x + shift_x) - b * (center_y + shift_y)
    f = center_y - d * (center_x + shift_x) - e * (center_y + shift_y)
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    warped = image.transform(
        (width, height),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(warped, dtype=np.float32)


def _base_size(height: int, width: int) -> tuple[int, int]:
    """Low rendering resolution with the target's aspect ratio (never above the target)."""
    base_height = min(BASE_HEIGHT, height)
    base_width = max(8, int(round(base_height * width / height)))
    return base_height, min(base_width, width)


def _render_base(anatomy: Anatomy, acquisition: Acquisition, opacity_zones: Sequence[int],
                 opacity_rng: np.random.Generator, texture_rng: np.random.Generator,
                 base_height: int, base_width: int,
                 with_zones: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw the chest at base resolution, warp it, and return it (plus warped zone masks)."""
    # float32 throughout: half the memory traffic of float64, and plenty for 8-16 bit output.
    v, u = np.meshgrid(
        ((np.arange(base_height) + 0.5) / base_height).astype(np.float32),
        ((np.arange(base_width) + 0.5) / base_width).astype(np.float32),
        indexing="ij",
    )
    edge = 1.5 / base_height  # soft edges about 1.5 base pixels wide (no aliasing)
    # Vascular texture: smooth, so a coarse field upsampled is as good as a full-size one.
    texture = _resize(_smooth_noise(texture_rng, (64, 64), 1.0), base_height, base_width)
    chest, zone_masks = _anatomy_layers(anatomy, acquisition, u, v, edge, texture)
    chest = chest + _opacity_layer(opacity_rng, opacity_zones, zone_masks)
    background = float(chest[0, 0])
    warped = _affine_warp(chest, acquisition, background)
    warped_zones = [_affine_warp(mask, acquisition, 0.0) for mask in zone_masks] if with_zones else []
    return warped, warped_zones


def _finish(base: np.ndarray, acquisition: Acquisition, noise_rng: np.random.Generator,
            height: int, width: int) -> np.ndarray:
    """Apply the exposure's contrast curve, upsample, add detector noise, clip to [0, 1]."""
    low, high = acquisition.display_range
    toned = low + (high - low) * np.clip(base, 0.0, 1.0) ** acquisition.gamma
    image = _resize(toned, height, width)
    image += _fast_noise(noise_rng, (height, width)) * np.float32(acquisition.noise_sigma)
    return np.clip(image, 0.0, 1.0, out=image)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font at the given pixel size (bitmap fallback without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def burn_in_text(image: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Burn bright text (a side marker, accession/date strings) into the top band of the image.

    The band is the top ``TEXT_BAND_FRACTION`` of the rows, which the pipeline's top-8% crop
    removes, exactly like the burned-in annotations of real portable radiographs.
    """
    height, width = image.shape
    band_height = max(6, int(height * TEXT_BAND_FRACTION))
    font = _font(max(6, int(band_height * 0.7)))
    band = Image.new("L", (width, band_height), 0)
    draw = ImageDraw.Draw(band)
    x_position = max(2, width // 40)
    for text in texts:
        draw.text((x_position, 0), text, fill=255, font=font)
        x_position += int(draw.textlength(text, font=font)) + max(6, width // 12)
    ink = np.asarray(band, dtype=np.float32) / 255.0
    top = image[:band_height]
    image[:band_height] = np.maximum(top, ink * 0.98 + top * (1.0 - ink))
    return image


def _check_zones(opacity_zones: Sequence[int]) -> list[int]:
    """Validate zone numbers (0..5, no duplicates) and return them sorted."""
    zones = [int(zone) for zone in opacity_zones]
    if any(zone < 0 or zone >= N_ZONES for zone in zones) or len(set(zones)) != len(zones):
        raise ValueError(f"opacity zones must be distinct integers in 0..5, got {list(opacity_zones)}")
    return sorted(zones)


def render_chest_with_zones(rng: np.random.Generator, opacity_zones: Sequence[int], height: int,
                            width: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`render_chest`, but also return the six zone masks (6, height, width) in [0,1].

    The random streams are split off ``rng`` up front, so calls with the same generator state and
    different ``opacity_zones`` give the same patient, exposure and noise: the difference between
    two such renders is exactly the planted opacity (used by the tests).
    """
    zones = _check_zones(opacity_zones)
    anatomy_rng, acquisition_rng, opacity_rng, texture_rng, noise_rng = rng.spawn(5)
    anatomy = sample_anatomy(anatomy_rng)
    acquisition = sample_acquisition(acquisition_rng)
    image, masks = _render_image(anatomy, acquisition, zones, opacity_rng, texture_rng, noise_rng,
                                 height, width, texts=("R",), with_zones=True)
    return image, np.stack(masks)


def render_chest(rng: np.random.Generator, opacity_zones: Sequence[int], height: int,
                 width: int) -> np.ndarray:
    """Render one frontal chest radiograph, float32 (height, width) in [0, 1], bright = dense.

    ``opacity_zones`` lists the opacified lung zones (0..5: right upper/middle/lower, left
    upper/middle/lower; the patient's right is the image left). A side marker "R" is burned into
    the top band. All randomness comes from ``rng``.
    """
    zones = _check_zones(opacity_zones)
    anatomy_rng, acquisition_rng, opacity_rng, texture_rng, noise_rng = rng.spawn(5)
    image, _ = _render_image(sample_anatomy(anatomy_rng), sample_acquisition(acquisition_rng),
                             zones, opacity_rng, texture_rng, noise_rng, height, width,
                             texts=("R",))
    return image


def _render_image(anatomy: Anatomy, acquisition: Acquisition, zones: Sequence[int],
                  opacity_rng: np.random.Generator, texture_rng: np.random.Generator,
                  noise_rng: np.random.Generator, height: int, width: int, texts: Sequence[str],
                  with_zones: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Full render at target size: base drawing, warp, tone curve, noise, burned-in text."""
    if height < 16 or width < 16:
        raise ValueError(f"image size must be at least 16x16, got {height}x{width}")
    base_height, base_width = _base_size(height, width)
    base, base_zones = _render_base(anatomy, acquisition, zones, opacity_rng, texture_rng,
                                    base_height, base_width, with_zones)
    image = _finish(base, acquisition, noise_rng, height, width)
    image = burn_in_text(image, texts)
    zone_masks = [np.clip(_resize(mask, height, width), 0.0, 1.0) for mask in base_zones]
    return image, zone_masks


# =============================================================================================
# Deterministic identifiers
# =============================================================================================
def _digest(*parts: object) -> bytes:
    """SHA-256 of the parts, joined with '/': the root of every identifier in the cohort."""
    return hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()


def _uid(*parts: object) -> str:
    """A DICOM UID under the 2.25 root (a 128-bit integer), derived from the parts."""
    return f"2.25.{int.from_bytes(_digest(*parts)[:16], 'big')}"


def _short_id(prefix: str, length: int, *parts: object) -> str:
    """MD.ai-style identifier such as ``U_x7Kp2a`` (alphanumeric, derived from the parts)."""
    alphabet = "0123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    number = int.from_bytes(_digest(*parts), "big")
    chars = []
    for _ in range(length):
        number, remainder = divmod(number, len(alphabet))
        chars.append(alphabet[remainder])
    return f"{prefix}_{''.join(chars)}"


def _hex_uuid(*parts: object) -> str:
    """A UUID-shaped hex string (like RSNA image ids), derived from the parts, not random."""
    text = _digest(*parts).hex()[:32]
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# =============================================================================================
# Writing
# =============================================================================================
def _write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; cohort files are ordinary data
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically with '\\n' line ends on every platform."""
    _write_bytes(path, text.encode("utf-8"))


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write rows (dicts) as CSV with a fixed column order and '\\n' line ends."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    _write_text(path, buffer.getvalue())


def _choice(rng: np.random.Generator, weighted: Sequence[tuple[Any, float]]) -> Any:
    """Pick one value from (value, weight) pairs."""
    weights = np.array([weight for _, weight in weighted], dtype=float)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))][0]


def _int_range(rng: np.random.Generator, bounds: Sequence[int]) -> int:
    """Uniform integer in the inclusive range [lo, hi] given as a 2-item list."""
    low, high = int(bounds[0]), int(bounds[1])
    if low < 0 or high < low:
        raise ValueError(f"invalid range {list(bounds)}: need 0 <= lo <= hi")
    return int(rng.integers(low, high + 1))


def _non_square_size(rng: np.random.Generator, bounds: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) within bounds, not square, columns even (8-bit pixel data stays even)."""
    rows = int(rng.integers(bounds[0], bounds[1] + 1))
    aspect = rng.uniform(0.8, 1.2)
    columns = int(np.clip(round(rows * aspect), bounds[0], bounds[1])) // 2 * 2
    if columns == rows:
        columns = columns - 2 if columns - 2 >= bounds[0] else columns + 2
    return rows, columns


# =============================================================================================
# RICORD-like severity cohort
# =============================================================================================
@dataclass
class RicordImage:
    """One planted DICOM: its identifiers, acquisition settings and truth."""

    patient_index: int
    study_index: int
    image_index: int
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    raw_path: str
    n_zones: int
    zones: tuple[int, ...]
    series_number: int
    instance_number: int
    modality: str
    view: str
    photometric: str
    bits_stored: int
    rows: int
    columns: int
    window: bool


@dataclass
class RicordStudy:
    """One study: its patient, truth (opacified zones) and planted images."""

    number: int
    patient_index: int
    study_index: int
    patient_id: str
    study_uid: str
    study_date: str
    zones: tuple[int, ...]
    images: list[RicordImage]


@dataclass
class RicordPatient:
    """One patient: identity, demographics and anatomy shared by all their images."""

    index: int
    patient_id: str
    sex: str
    age: int
    anatomy: Anatomy


def _patient_ids(seed: int, n_patients: int) -> list[str]:
    """Distinct RICORD-style PatientIDs, e.g. MIDRC-RICORD-1C-419639-000123 or ...-SITE2-000045."""
    rng = np.random.default_rng([seed, _STREAM_COHORT, 0])
    numbers = rng.choice(np.arange(1, 4000), size=n_patients, replace=False)
    return [
        f"MIDRC-RICORD-1C-{_choice(rng, RICORD_SITES)}-{int(number):06d}" for number in numbers
    ]


def _sample_zones(rng: np.random.Generator) -> tuple[int, ...]:
    """Draw a study's opacified zones: k from ZONE_COUNT_PROBABILITIES, lower zones favoured."""
    count = int(rng.choice(np.arange(1, N_ZONES + 1), p=ZONE_COUNT_PROBABILITIES))
    weights = np.array(ZONE_WEIGHTS) / sum(ZONE_WEIGHTS)
    return tuple(sorted(int(zone) for zone in rng.choice(N_ZONES, size=count, replace=False, p=weights)))


def _plan_ricord(cfg: dict) -> tuple[list[RicordPatient], list[RicordStudy]]:
    """Decide every patient, study and image (identifiers, truth, DICOM settings); no pixels."""
    seed = int(cfg["seed"])
    patients: list[RicordPatient] = []
    studies: list[RicordStudy] = []
    for patient_index, patient_id in enumerate(_patient_ids(seed, int(cfg["n_patients"]))):
        rng = np.random.default_rng([seed, _STREAM_PATIENT, patient_index])
        patient = RicordPatient(
            index=patient_index,
            patient_id=patient_id,
            sex="M" if rng.random() < 0.62 else "F",
            age=int(np.clip(rng.normal(59, 16), 18, 95)),
            anatomy=sample_anatomy(rng),
        )
        patients.append(patient)
        first_day = rng.integers(0, (STUDY_DATE_RANGE[1] - STUDY_DATE_RANGE[0]).days - 30)
        for study_index in range(_int_range(rng, cfg["studies_per_patient"])):
            studies.append(_plan_study(cfg, patient, study_index, int(first_day), len(studies) + 1))
    return patients, studies


def _plan_study(cfg: dict, patient: RicordPatient, study_index: int, first_day: int,
                number: int) -> RicordStudy:
    """Plan one study of a patient: date, opacified zones, series and images."""
    seed = int(cfg["seed"])
    rng = np.random.default_rng([seed, _STREAM_STUDY, patient.index, study_index])
    study_uid = _uid(seed, "study", patient.index, study_index)
    day = STUDY_DATE_RANGE[0] + timedelta(days=first_day + 3 * study_index + int(rng.integers(0, 3)))
    zones = _sample_zones(rng)
    n_images = max(1, _int_range(rng, cfg["images_per_study"]))
    one_series = rng.random() < 0.5  # some studies keep all images in one series
    modality = "CR" if rng.random() < 0.6 else "DX"
    view = _choice(rng, list(zip(VIEW_CHOICES, VIEW_PROBABILITIES)))
    window = rng.random() < WINDOW_PROBABILITY
    images = []
    for image_index in range(n_images):
        series_number = 0 if one_series else image_index
        series_uid = _uid(seed, "series", patient.index, study_index, series_number)
        sop_uid = _uid(seed, "sop", patient.index, study_index, image_index)
        instance = image_index + 1 if one_series else 1
        raw_path = (
            f"{schema.RICORD_IMAGES_DIR}/{patient.patient_id}/{study_uid}/{series_uid}/1-{instance}.dcm"
        )
        rows, columns = _non_square_size(rng, DICOM_SIZE_RANGE)
        images.append(RicordImage(
            patient_index=patient.index,
            study_index=study_index,
            image_index=image_index,
            patient_id=patient.patient_id,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            raw_path=raw_path,
            n_zones=len(zones),
            zones=zones,
            series_number=series_number + 1,
            instance_number=instance,
            modality=modality,
            view=view,
            photometric="MONOCHROME1" if rng.random() < MONOCHROME1_PROBABILITY else "MONOCHROME2",
            bits_stored=int(rng.choice(BITS_STORED_CHOICES, p=BITS_STORED_PROBABILITIES)),
            rows=rows,
            columns=columns,
            window=window,
        ))
    return RicordStudy(number, patient.index, study_index, patient.patient_id, study_uid,
                       day.strftime("%Y%m%d"), zones, images)


def _render_ricord_image(seed: int, patient: RicordPatient, study: RicordStudy,
                         image: RicordImage) -> np.ndarray:
    """Render one planned DICOM's pixels: the patient's anatomy, the study's disease pattern."""
    image_rng = np.random.default_rng([seed, _STREAM_IMAGE, image.patient_index,
                                       image.study_index, image.image_index])
    acquisition_rng, texture_rng, noise_rng = image_rng.spawn(3)
    # Same opacity stream for every image of a study: the disease does not move between images.
    opacity_rng = np.random.default_rng([seed, _STREAM_STUDY, image.patient_index,
                                         image.study_index, 1])
    texts = ("R", f"ACC{int.from_bytes(_digest(study.study_uid)[:4], 'big') % 10**8:08d}",
             f"{study.study_date[:4]}-{study.study_date[4:6]}-{study.study_date[6:]}",
             "PORTABLE" if image.view == "AP" else "CHEST")
    pixels, _ = _render_image(patient.anatomy, sample_acquisition(acquisition_rng), study.zones,
                              opacity_rng, texture_rng, noise_rng, image.rows, image.columns, texts)
    return pixels


def _stored_pixels(display: np.ndarray, image: RicordImage,
                   rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Quantise to BitsStored; MONOCHROME1 stores inverted values. Returns (pixels, low, high).

    Real detectors rarely use their full range, so the used range [low, high] is a random part of
    0..2**BitsStored-1; a window (if any) is derived from it.
    """
    max_value = 2**image.bits_stored - 1
    low = int(rng.uniform(0.0, 0.08) * max_value)
    high = int(rng.uniform(0.85, 1.0) * max_value)
    scaled = np.float32(low) + display.astype(np.float32) * np.float32(high - low)
    if image.photometric == "MONOCHROME1":
        scaled = np.float32(high + low) - scaled  # high stored value = dark (little attenuation)
    stored = np.clip(np.rint(scaled), 0, max_value)
    dtype = np.uint8 if image.bits_stored == 8 else np.uint16
    return stored.astype(dtype), low, high


def _dicom_bytes(seed: int, patient: RicordPatient, study: RicordStudy, image: RicordImage,
                 pixels: np.ndarray, low: int, high: int) -> bytes:
    """Encode one image as a DICOM Part 10 file (explicit VR little endian, uncompressed)."""
    sop_class = SOP_CLASS_OF_MODALITY[image.modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(image.sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_uid("stages.sources.phantom", IMPLEMENTATION_VERSION))
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = image.sop_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.ContentDate = study.study_date
    ds.StudyTime = f"{8 + study.number % 10:02d}{(7 * study.number) % 60:02d}00"
    ds.AccessionNumber = f"{int.from_bytes(_digest(study.study_uid)[:4], 'big') % 10**8:08d}"
    ds.Modality = image.modality
    ds.Manufacturer = "Phantom Imaging"
    ds.PatientName = f"ANON^{patient.patient_id[-6:]}"
    ds.PatientID = patient.patient_id
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    if image.view:
        ds.ViewPosition = image.view
    ds.StudyInstanceUID = image.study_uid
    ds.SeriesInstanceUID = image.series_uid
    ds.StudyID = str(study.number)
    ds.SeriesNumber = str(image.series_number)
    ds.InstanceNumber = str(image.instance_number)
    ds.PatientOrientation = ["L", "F"]  # frontal chest: image right = patient's left, down = feet
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric
    ds.Rows = image.rows
    ds.Columns = image.columns
    ds.ImagerPixelSpacing = [f"{380.0 / max(image.rows, image.columns):.6f}"] * 2
    ds.BitsAllocated = 8 if image.bits_stored == 8 else 16
    ds.BitsStored = image.bits_stored
    ds.HighBit = image.bits_stored - 1
    ds.PixelRepresentation = 0
    if image.window:
        ds.WindowCenter = str((low + high) // 2)
        ds.WindowWidth = str(max(1, high - low))
    vr = "OB" if ds.BitsAllocated == 8 else "OW"
    ds.add_new(0x7FE00010, vr, pixels.astype(f"<u{ds.BitsAllocated // 8}").tobytes())

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encode_ricord_image(seed: int, patient: RicordPatient, study: RicordStudy,
                         image: RicordImage) -> bytes:
    """Render and encode one planned image as DICOM bytes."""
    display = _render_ricord_image(seed, patient, study, image)
    quantise_rng = np.random.default_rng([seed, _STREAM_IMAGE, image.patient_index,
                                          image.study_index, image.image_index, 1])
    pixels, low, high = _stored_pixels(display, image, quantise_rng)
    return _dicom_bytes(seed, patient, study, image, pixels, low, high)


def _pick_studies(seed: int, n_studies: int, fraction: float, salt: int,
                  exclude: set[int]) -> set[int]:
    """Choose round(fraction * n_studies) study positions, outside ``exclude``."""
    count = int(round(float(fraction) * n_studies))
    candidates = [index for index in range(n_studies) if index not in exclude]
    if count > len(candidates):
        raise ValueError(f"cannot mark {count} of {n_studies} studies (fraction {fraction})")
    rng = np.random.default_rng([seed, _STREAM_READERS, salt])
    return {int(index) for index in rng.choice(candidates, size=count, replace=False)} if count else set()


def _airspace_label(zone_count: int) -> str:
    """Reader grade from a zone count: 1-2 Mild, 3-4 Moderate, 5-6 Severe (RICORD's labels)."""
    if zone_count <= 2:
        return schema.MILD
    return schema.MODERATE if zone_count <= 4 else schema.SEVERE


def _reader_labels(cfg: dict, studies: list[RicordStudy]) -> list[tuple[RicordStudy, str, str, str]]:
    """Plant every reader's labels: (study, reader_id, group name, label name) in file order."""
    seed = int(cfg["seed"])
    readers = [_short_id("U", 6, seed, "reader", index) for index in range(READER_POOL_SIZE)]
    invalid = _pick_studies(seed, len(studies), cfg["invalid_study_fraction"], 1, set())
    ungraded = _pick_studies(seed, len(studies), cfg["ungraded_study_fraction"], 2, invalid)
    noise = float(cfg["reader_zone_noise"])
    planted = []
    for position, study in enumerate(studies):
        rng = np.random.default_rng([seed, _STREAM_READERS, 100, position])
        n_readers = int(rng.integers(READERS_PER_STUDY[0], READERS_PER_STUDY[1] + 1))
        chosen = [readers[index] for index in rng.choice(READER_POOL_SIZE, n_readers, replace=False)]
        # Studies marked invalid: at least one reader, sometimes all, says "Invalid Study".
        n_invalid = int(rng.integers(1, n_readers + 1)) if position in invalid else 0
        for reader_number, reader in enumerate(chosen):
            labels = []
            if position not in ungraded:
                if reader_number < n_invalid:
                    labels.append((schema.AIRSPACE_GROUP, schema.INVALID))
                else:
                    count = len(study.zones)
                    if rng.random() < noise:  # a miscount by one zone, either way
                        count = int(np.clip(count + rng.choice((-1, 1)), 1, N_ZONES))
                    labels.append((schema.AIRSPACE_GROUP, _airspace_label(count)))
            classification = schema.CLASSIFICATION_LABELS[
                int(rng.choice(len(schema.CLASSIFICATION_LABELS), p=CLASSIFICATION_PROBABILITIES))
            ]
            labels.append((schema.CLASSIFICATION_GROUP, classification))
            if rng.random() < 0.5:
                labels.reverse()  # readers do not always grade airspace first
            planted.extend((study, reader, group, name) for group, name in labels)
    return planted


def _mdai_export(cfg: dict, studies: list[RicordStudy],
                 planted: list[tuple[RicordStudy, str, str, str]]) -> dict:
    """Build the MD.ai-format export (labelGroups, datasets, study-scoped annotations)."""
    seed = int(cfg["seed"])
    label_ids: dict[tuple[str, str], str] = {}
    groups = []
    for group_name, names in ((schema.AIRSPACE_GROUP, schema.AIRSPACE_LABELS),
                              (schema.CLASSIFICATION_GROUP, schema.CLASSIFICATION_LABELS)):
        labels = []
        for name in names:
            label_id = _short_id("L", 6, seed, "label", group_name, name)
            label_ids[(group_name, name)] = label_id
            labels.append({
                "id": label_id,
                "parentId": None,
                "name": name,
                "shortName": None,
                "description": "",
                "color": f"#{_digest(label_id).hex()[:6]}",
                "type": "GLOBAL",
                "scope": "STUDY",
                "annotationMode": None,
                "radlexTagIds": [],
            })
        groups.append({"id": _short_id("G", 6, seed, "group", group_name), "name": group_name,
                       "description": "", "labels": labels})
    annotations = []
    for number, (study, reader, group_name, name) in enumerate(planted, start=1):
        created = (ANNOTATION_START + timedelta(minutes=7 * number + study.number % 5)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        annotations.append({
            "id": _short_id("A", 6, seed, "annotation", number),
            "parentId": None,
            "isImported": False,
            "isInvalid": False,
            "StudyInstanceUID": study.study_uid,
            "SeriesInstanceUID": None,
            "SOPInstanceUID": None,
            "frameNumber": None,
            "labelId": label_ids[(group_name, name)],
            "annotationNumber": number,
            "createdById": reader,
            "createdAt": created,
            "updatedById": reader,
            "updatedAt": created,
            "data": None,
            "note": None,
            "radlexTagIds": [],
            "reviewsPositiveCount": 0,
            "reviewsNegativeCount": 0,
        })
    dataset = {
        "id": _short_id("D", 6, seed, "dataset"),
        "name": "MIDRC-RICORD-1C (synthetic phantom)",
        "type": "DICOM",
        "studies": [{"StudyInstanceUID": study.study_uid, "number": study.number} for study in studies],
        "annotations": annotations,
    }
    return {
        "id": _short_id("P", 8, seed, "project"),
        "name": "RSNA RICORD 1c airspace grading (synthetic phantom)",
        "description": "Synthetic stand-in for the RICORD 1c MD.ai export; no patient data.",
        "labelGroups": groups,
        "datasets": [dataset],
    }


def _corrupt_files(cfg: dict, patients: list[RicordPatient], studies: list[RicordStudy],
                   out_dir: Path) -> list[dict[str, str]]:
    """Plant unreadable .dcm files among the real ones: alternately not-DICOM and truncated."""
    seed = int(cfg["seed"])
    count = int(cfg.get("n_corrupt_files", 0))
    if count and not studies:
        raise ValueError("n_corrupt_files > 0 needs at least one study to hide the files in")
    taken = {image.raw_path for study in studies for image in study.images}
    planted = []
    for index in range(count):
        study = studies[(index * 7919) % len(studies)]  # spread over the cohort, deterministically
        host = study.images[0]
        folder = host.raw_path.rsplit("/", 1)[0]
        instance = 1
        while f"{folder}/1-{instance}.dcm" in taken:
            instance += 1
        raw_path = f"{folder}/1-{instance}.dcm"
        taken.add(raw_path)
        if index % 2 == 0:
            kind = "not_dicom"
            data = b"<html><body><h1>504 Gateway Time-out</h1></body></html>\n"
        else:
            kind = "truncated"
            rng = np.random.default_rng([seed, _STREAM_CORRUPT, index])
            ghost = RicordImage(**{**host.__dict__, "sop_uid": _uid(seed, "corrupt", index),
                                   "raw_path": raw_path, "rows": 512, "columns": 600,
                                   "image_index": 1000 + index})
            pixels, low, high = _stored_pixels(
                render_chest(rng, study.zones, ghost.rows, ghost.columns), ghost, rng
            )
            full = _dicom_bytes(seed, patients[study.patient_index], study, ghost, pixels, low, high)
            data = full[: len(full) // 2]  # the pixel data ends early
        _write_bytes(out_dir / raw_path, data)
        planted.append({"raw_path": raw_path, "kind": kind})
    return planted


def _generate_ricord(cfg: dict, out_dir: Path, progress: tqdm) -> dict[str, int]:
    """Write the RICORD-like DICOMs, the MD.ai export, corrupt files and their truth tables."""
    seed = int(cfg["seed"])
    patients, studies = _plan_ricord(cfg)
    truth_rows = []
    for study in studies:
        for image in study.images:
            data = _encode_ricord_image(seed, patients[study.patient_index], study, image)
            _write_bytes(out_dir / image.raw_path, data)
            truth_rows.append({
                "patient_id": image.patient_id,
                "study_uid": image.study_uid,
                "series_uid": image.series_uid,
                "sop_uid": image.sop_uid,
                "raw_path": image.raw_path,
                "n_zones": image.n_zones,
                "opacity_zones": ";".join(str(zone) for zone in image.zones),
                "modality": image.modality,
                "view": image.view,
                "photometric": image.photometric,
                "bits_stored": image.bits_stored,
                "rows": image.rows,
                "columns": image.columns,
            })
            progress.update(1)
    planted = _reader_labels(cfg, studies)
    export = _mdai_export(cfg, studies, planted)
    _write_text(out_dir / schema.RICORD_ANNOTATIONS, json.dumps(export, indent=1) + "\n")
    truth_dir = out_dir / schema.SYNTHETIC_TRUTH_DIR
    _write_csv(truth_dir / "ricord_images.csv", RICORD_TRUTH_COLUMNS, truth_rows)
    airspace = [
        {"study_uid": study.study_uid, "reader_id": reader, "label_name": name}
        for study, reader, group, name in planted if group == schema.AIRSPACE_GROUP
    ]
    _write_csv(truth_dir / "ricord_readers.csv", ["study_uid", "reader_id", "label_name"], airspace)
    corrupt = _corrupt_files(cfg, patients, studies, out_dir)
    _write_csv(truth_dir / "corrupt_files.csv", ["raw_path", "kind"], corrupt)
    graded_studies = {row["study_uid"] for row in airspace}
    invalid_studies = {row["study_uid"] for row in airspace if row["label_name"] == schema.INVALID}
    return {
        "ricord_patients": len(patients),
        "ricord_studies": len(studies),
        "ricord_images": len(truth_rows),
        "ricord_level1_images": sum(1 for row in truth_rows if row["n_zones"] <= 2),
        "ricord_level2_images": sum(1 for row in truth_rows if row["n_zones"] >= 3),
        "ricord_annotations": len(planted),
        "ricord_airspace_labels": len(airspace),
        "ricord_invalid_studies": len(invalid_studies),
        "ricord_ungraded_studies": len(studies) - len(graded_studies),
        "ricord_corrupt_files": len(corrupt),
    }


# =============================================================================================
# COVIDx-like pretraining cohort
# =============================================================================================
@dataclass
class PretrainImage:
    """One planted pretraining image and its list entry."""

    index: int
    patient_id: str
    filename: str
    label: str
    source: str
    list_name: str
    zones: tuple[int, ...]
    file_format: str  # PNG | JPEG
    color: bool  # stored as RGB (grey replicated), like many public sets
    rows: int
    columns: int


def _pretrain_identity(seed: int, source: str, label: str, number: int,
                       image_number: int) -> tuple[str, str, str]:
    """(patient_id, filename stem, extension) in the naming style of each COVIDx source."""
    if source == "rsna":
        patient_id = _hex_uuid(seed, "rsna", number)
        stem = patient_id if image_number == 0 else _hex_uuid(seed, "rsna", number, image_number)
        return patient_id, stem, ".png"
    if source == "sirm":
        # SIRM patient ids contain a space, which gives these list lines 5 fields.
        return f"COVID {number}", f"COVID({number})", ".png"
    if source == "actmed":
        return f"COVID-{number:05d}", f"COVID-{number:05d}", ".jpg" if number % 3 else ".png"
    if source == "fig1":
        return f"COVID-{5000 + number:05d}", f"COVID-{5000 + number:05d}a", ".jpg" if number % 2 else ".png"
    # cohen (ieee8023): numeric patient ids, descriptive file names, mixed formats
    finding = "covid-19-pneumonia" if label == "positive" else "pneumonia"
    suffix = ("PA", "AP", "AP-supine")[image_number % 3]
    return str(100 + number), f"{finding}-{100 + number}-{suffix}", ".jpg" if number % 2 else ".png"


def _plan_pretrain(cfg: dict) -> list[PretrainImage]:
    """Plan the pretraining images: classes, patients, sources, names, formats, list split."""
    seed = int(cfg["seed"])
    total = int(cfg["n_pretrain"])
    n_positive = int(round(total * float(cfg["pretrain_positive_fraction"])))
    rng = np.random.default_rng([seed, _STREAM_PRETRAIN])
    test_fraction = float(cfg["pretrain_test_fraction"])
    source_numbers: dict[str, int] = {}
    planned: list[PretrainImage] = []
    for label, count, sources in (("positive", n_positive, POSITIVE_SOURCES),
                                  ("negative", total - n_positive, NEGATIVE_SOURCES)):
        # Patients (with 1-3 images) until the class is full; the first positive patient is SIRM
        # so that even a tiny cohort has a 5-field line.
        patients: list[tuple[str, int]] = []
        remaining = count
        while remaining > 0:
            source = "sirm" if (label == "positive" and not patients) else _choice(rng, sources)
            size = 1 if source in SINGLE_IMAGE_SOURCES else int(rng.choice(PRETRAIN_IMAGES_PER_PATIENT))
            size = min(size, remaining)
            patients.append((source, size))
            remaining -= size
        # Whole patients go to test until the class's test share is reached (patient-disjoint).
        order = rng.permutation(len(patients))
        target = int(round(count * test_fraction))
        in_test: set[int] = set()
        test_images = 0
        for patient_position in order:
            if test_images >= target:
                break
            in_test.add(int(patient_position))
            test_images += patients[patient_position][1]
        for patient_position, (source, size) in enumerate(patients):
            number = source_numbers.get(source, 0) + 1
            source_numbers[source] = number
            zones = _sample_zones(rng) if label == "positive" else ()
            for image_number in range(size):
                patient_id, stem, extension = _pretrain_identity(seed, source, label, number, image_number)
                if source == "cohen" and size > 1:
                    stem = f"{stem}-{image_number + 1}"
                rows, columns = _non_square_size(rng, PRETRAIN_SIZE_RANGE)
                planned.append(PretrainImage(
                    index=len(planned),
                    patient_id=patient_id,
                    filename=stem + extension,
                    label=label,
                    source=source,
                    list_name="test" if patient_position in in_test else "train",
                    # A positive patient's later images may show a different extent of disease.
                    zones=zones if image_number == 0 or label == "negative" else _sample_zones(rng),
                    file_format="JPEG" if extension == ".jpg" else "PNG",
                    color=bool(rng.random() < 0.3),
                    rows=rows,
                    columns=columns,
                ))
    return planned


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an 8-bit grey (H, W) or RGB (H, W, 3) array as PNG.

    A minimal writer (one IDAT chunk, the "Sub" filter on every row, zlib's run-length strategy):
    about three times as fast as PIL's encoder, which tries all five filters per row and
    searches for long matches that fine detector noise does not have. PNG encoding of the noisy
    pretraining images was otherwise the largest single cost of generate().
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"need uint8 (H, W) or (H, W, 3) pixels, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    channels = 1 if pixels.ndim == 2 else 3
    filtered = rows.copy()
    filtered[:, channels:] = rows[:, channels:] - rows[:, :-channels]  # Sub: left neighbour, mod 256
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    scanlines[:, 0] = 1  # filter type 1 (Sub) for every row
    scanlines[:, 1:] = filtered

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    color_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", header),
        chunk(b"IDAT", compressor.compress(scanlines.tobytes()) + compressor.flush()),
        chunk(b"IEND", b""),
    ])


def _encode_pretrain_image(seed: int, planned: PretrainImage) -> bytes:
    """Render one pretraining image and encode it as PNG or JPEG (grey or RGB)."""
    rng = np.random.default_rng([seed, _STREAM_PRETRAIN_IMAGE, planned.index])
    display = render_chest(rng, planned.zones, planned.rows, planned.columns)
    grey = np.rint(display * 255.0).astype(np.uint8)
    pixels = np.repeat(grey[:, :, None], 3, axis=2) if planned.color else grey
    if planned.file_format == "PNG":
        return png_bytes(pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _plant_leaks(cfg: dict, out_dir: Path) -> list[dict[str, Any]]:
    """Copy ``plant_leaks`` severity images into the COVIDx images folder, disguised.

    Each copy gets a fresh file name and patient id (so matching by name or patient cannot find
    it), is shrunk and saved as JPEG (so its bytes and pixels differ), and is listed in the
    training list as a positive image. Returns the truth rows (one per copy).
    """
    count = int(cfg.get("plant_leaks", 0))
    if count == 0:
        return []
    seed = int(cfg["seed"])
    patients, studies = _plan_ricord(cfg)
    candidates = [(study, image) for study in studies for image in study.images]
    rng = np.random.default_rng([seed, _STREAM_LEAK])
    chosen = sorted(rng.choice(len(candidates), size=count, replace=False).tolist())
    rows = []
    for number, position in enumerate(chosen, start=1):
        study, image = candidates[position]
        display = _render_ricord_image(seed, patients[study.patient_index], study, image)
        scale = LEAK_SCALES[number % len(LEAK_SCALES)]
        quality = LEAK_JPEG_QUALITIES[number % len(LEAK_JPEG_QUALITIES)]
        grey = Image.fromarray(np.rint(display * 255.0).astype(np.uint8))
        grey = grey.resize((max(1, round(image.columns * scale)), max(1, round(image.rows * scale))),
                           Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        grey.save(buffer, format="JPEG", quality=quality)
        filename = f"{_hex_uuid(seed, 'leak', number)}.jpg"
        _write_bytes(out_dir / schema.COVIDX_IMAGES_DIR / filename, buffer.getvalue())
        rows.append({"filename": filename, "patient_id": _hex_uuid(seed, "leak-patient", number),
                     "source_raw_path": image.raw_path, "source_patient_id": image.patient_id,
                     "scale": scale, "jpeg_quality": quality})
    return rows


def _generate_pretrain(cfg: dict, out_dir: Path, progress: tqdm) -> dict[str, int]:
    """Write the COVIDx-like images (and any planted leaks), the train/test lists and the truth."""
    seed = int(cfg["seed"])
    planned = _plan_pretrain(cfg)
    for image in planned:
        _write_bytes(out_dir / schema.COVIDX_IMAGES_DIR / image.filename,
                     _encode_pretrain_image(seed, image))
        progress.update(1)
    leaks = _plant_leaks(cfg, out_dir)
    for list_name, relative in schema.COVIDX_LISTS.items():
        lines = [f"{image.patient_id} {image.filename} {image.label} {image.source}\n"
                 for image in planned if image.list_name == list_name]
        if list_name == "train":
            lines += [f"{leak['patient_id']} {leak['filename']} positive rsna\n" for leak in leaks]
        _write_text(out_dir / relative, "".join(lines))
    _write_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "planted_leaks.csv", LEAK_TRUTH_COLUMNS, leaks)
    _write_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "covidx.csv", COVIDX_TRUTH_COLUMNS, [
        {"patient_id": image.patient_id, "filename": image.filename, "label": image.label,
         "covidx_source": image.source, "list": image.list_name, "n_zones": len(image.zones)}
        for image in planned
    ])
    return {
        "pretrain_images": len(planned),
        "pretrain_train": sum(1 for image in planned if image.list_name == "train"),
        "pretrain_test": sum(1 for image in planned if image.list_name == "test"),
        "pretrain_positive": sum(1 for image in planned if image.label == "positive"),
        "pretrain_negative": sum(1 for image in planned if image.label == "negative"),
        "pretrain_patients": len({image.patient_id for image in planned}),
        "planted_leaks": len(leaks),
    }


# =============================================================================================
# Entry point
# =============================================================================================
REQUIRED_KEYS = (
    "seed", "n_patients", "studies_per_patient", "images_per_study", "reader_zone_noise",
    "invalid_study_fraction", "ungraded_study_fraction", "n_pretrain", "pretrain_test_fraction",
    "pretrain_positive_fraction",
)


def _check_config(cfg: dict) -> None:
    """Fail early, naming the problem, on a missing key or an out-of-range setting."""
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise ValueError(f"synthetic config is missing {missing}")
    for key in ("reader_zone_noise", "invalid_study_fraction", "ungraded_study_fraction",
                "pretrain_test_fraction", "pretrain_positive_fraction"):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            raise ValueError(f"synthetic.{key} must be in [0, 1], got {cfg[key]}")
    for key in ("n_patients", "n_pretrain"):
        if int(cfg[key]) < 0:
            raise ValueError(f"synthetic.{key} must be >= 0, got {cfg[key]}")
    for key in ("n_corrupt_files", "plant_leaks"):
        if int(cfg.get(key, 0)) < 0:
            raise ValueError(f"synthetic.{key} must be >= 0, got {cfg[key]}")


def generate(out_dir: Path, cfg: dict) -> dict:
    """Write the synthetic cohort in the raw layout of :mod:`stages.schema` under ``out_dir``.

    ``cfg`` is the ``synthetic:`` section of params.yaml. ``out_dir`` must be absent or empty
    (a stale file would silently join the cohort). Returns the counts also stored in
    ``SOURCE.json``. The output is byte-identical for identical ``cfg``.
    """
    _check_config(cfg)
    n_severity = _planned_image_count(cfg) - int(cfg["n_pretrain"])
    if int(cfg.get("plant_leaks", 0)) > n_severity:
        raise ValueError(f"synthetic.plant_leaks={cfg['plant_leaks']} but the cohort has {n_severity} "
                         f"severity images to copy")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; generate() writes a fresh cohort")
    out_dir.mkdir(parents=True, exist_ok=True)
    planned_total = _planned_image_count(cfg)
    with progress_bar(None, total=planned_total, desc="phantom", unit="img", leave=False) as progress:
        counts = _generate_ricord(cfg, out_dir, progress)
        counts.update(_generate_pretrain(cfg, out_dir, progress))
    manifest = {"source": "synthetic", "generator": "stages.sources.phantom", "config": cfg,
                "counts": counts}
    _write_text(out_dir / schema.SOURCE_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return counts


def _planned_image_count(cfg: dict) -> int:
    """Number of images generate() will render (for the progress bar)."""
    _, studies = _plan_ricord(cfg)
    return sum(len(study.images) for study in studies) + int(cfg["n_pretrain"])
