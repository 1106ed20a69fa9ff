"""Chest anatomy and exposure of the phantom: the clear chest and its six lung zones.

Each radiograph is a frontal chest drawn analytically (body, two dark lung fields, mediastinum,
spine, heart, diaphragm, clavicles, ribs) in normalised image coordinates. Each lung is cut into
three zones of equal height, which is where airspace disease is drawn (``render``):

    zone 0 right upper   zone 3 left upper        (patient's right lung is on the image left)
    zone 1 right middle  zone 4 left middle
    zone 2 right lower   zone 5 left lower
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_ZONES = 6
ZONE_NAMES = (
    "right upper",
    "right middle",
    "right lower",
    "left upper",
    "left middle",
    "left lower",
)


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


def sigmoid(x: np.ndarray) -> np.ndarray:
    """A soft step from 0 to 1: smoothstep over |x| < 3, with the logistic's slope (1/4) at 0.

    Only additions and multiplications: the same bits on every CPU and fast at numpy's baseline
    instruction set (``stages.common.cpu``), where ``np.tanh`` took a third of the rendering time.
    """
    t = np.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


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
        sigmoid((local_half_width - np.abs(u - center)) / edge)
        * sigmoid((floor - v) / edge)
        * sigmoid((v - top) / edge)
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
                band = band * sigmoid((v - upper) / edge)
            if lower < bottom:
                band = band * sigmoid((lower - v) / edge)
            masks.append(visible * band)
    return masks


def anatomy_layers(anatomy: Anatomy, acquisition: Acquisition, u: np.ndarray, v: np.ndarray,
                   edge: float, texture: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Compose the clear chest (display convention, bright = dense) and its six zone masks."""
    du = np.abs(u - 0.5)
    # Body: neck, sloping shoulders, torso; arms faintly at the sides. Air outside is dark.
    shoulder_line = 0.05 + 0.30 * (du / 0.5) ** 2
    torso = sigmoid((anatomy.body_half_width - du) / edge) * sigmoid((v - shoulder_line) / edge)
    neck = sigmoid((0.09 - du) / edge)
    arms = sigmoid((anatomy.body_half_width + 0.07 - du) / edge) * sigmoid((v - 0.2) / edge)
    body = np.maximum(np.maximum(torso, neck), 0.55 * arms)
    image = 0.04 + (anatomy.soft_tissue - 0.04) * body
    # Lower body below the diaphragm is denser (liver, stomach, abdominal wall).
    image += 0.08 * body * sigmoid((v - anatomy.lung_bottom_right - 0.02) / 0.03)

    heart_u, heart_v = anatomy.heart_center
    radius_u, radius_v = anatomy.heart_radii
    heart_shape = ((u - heart_u) / radius_u) ** 2 + ((v - heart_v) / radius_v) ** 2
    heart = sigmoid((1.0 - heart_shape) / 0.1)

    lungs = {side: _lung_field(anatomy, acquisition, side, u, v, edge) for side in ("right", "left")}
    lung_union = np.maximum(lungs["right"][0], lungs["left"][0])
    # Lungs: dark air with faint vascular markings, densest near the hila.
    hilum = np.exp(-(((du - 0.11) / 0.06) ** 2 + ((v - 0.45) / 0.1) ** 2))
    vessels = 0.012 * texture + 0.05 * hilum
    # The heart shadow hides most of the lung behind it.
    image -= lung_union * (1.0 - 0.7 * heart) * (anatomy.lung_darkness - vessels)

    # Ribs: curved bands across the thorax, brighter where they overlie lung.
    thorax = sigmoid((anatomy.body_half_width - 0.03 - du) / edge) * sigmoid(
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
        sigmoid((mediastinum_half - du) / edge)
        * sigmoid((v - anatomy.lung_top + 0.04) / 0.02)
        * sigmoid((anatomy.lung_bottom_right + 0.06 - v) / 0.03)
    )
    image += 0.2 * mediastinum
    # The trachea: an air column down the midline into the upper mediastinum.
    trachea = sigmoid((0.018 - du) / edge) * sigmoid((anatomy.lung_top + 0.18 - v) / 0.02)
    image -= 0.12 * trachea * body
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * v / 0.045)
    spine = sigmoid((0.03 - du) / edge)
    image += (0.03 + 0.03 * vertebrae) * spine * body
    image += 0.14 * heart * (1.0 - 0.6 * mediastinum)

    return image, _zone_masks(lungs, heart, v, edge)
