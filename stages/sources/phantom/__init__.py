"""The embedded synthetic cohort: a deterministic "digital phantom" of chest radiographs.

The phantom stands in for RSNA RICORD 1c (DICOM radiographs graded by several readers in one
MD.ai export; ``ricord``, ``readers``, ``dicom``) and for COVIDx (PNG/JPEG pretraining images
with ``patient_id filename label source`` lists; ``pretrain``), so that the whole pipeline runs
offline, on a CPU, in minutes. Every radiograph is drawn by ``render`` (on ``anatomy``); every
identifier and draw derives from ``cfg["seed"]`` (``ids``): two runs with the same settings
write byte-identical trees. This module checks the settings and writes the cohort.
"""

from __future__ import annotations

from pathlib import Path

from stages import schema
from stages.common.io import write_json
from stages.common.progress import progress as progress_bar
from stages.sources.phantom.anatomy import N_ZONES
from stages.sources.phantom.dicom import SOP_CLASS_OF_MODALITY
from stages.sources.phantom.leaks import plant_leaks
from stages.sources.phantom.pretrain import generate_pretrain, png_bytes
from stages.sources.phantom.render import (
    TEXT_BAND_FRACTION,
    burn_in_text,
    render_chest,
    render_chest_with_zones,
)
from stages.sources.phantom.ricord import generate_ricord, plan_ricord

__all__ = ["N_ZONES", "SOP_CLASS_OF_MODALITY", "TEXT_BAND_FRACTION", "build", "burn_in_text",
           "generate", "png_bytes", "render_chest", "render_chest_with_zones"]

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
                "pretrain_test_fraction", "pretrain_positive_fraction", "crop_box_fraction"):
        if not 0.0 <= float(cfg.get(key, 0.0)) <= 1.0:
            raise ValueError(f"synthetic.{key} must be in [0, 1], got {cfg[key]}")
    for key in ("n_patients", "n_pretrain"):
        if int(cfg[key]) < 0:
            raise ValueError(f"synthetic.{key} must be >= 0, got {cfg[key]}")
    for key in ("n_corrupt_files", "plant_leaks"):
        if int(cfg.get(key, 0)) < 0:
            raise ValueError(f"synthetic.{key} must be >= 0, got {cfg[key]}")


def generate(out_dir: Path, cfg: dict, workers: int | None = None) -> dict:
    """Write the synthetic cohort in the raw layout of :mod:`stages.schema` under ``out_dir``.

    ``cfg`` is the ``synthetic:`` section of params.yaml. ``out_dir`` must be absent or empty
    (a stale file would silently join the cohort). Returns the counts also stored in
    ``SOURCE.json``. The output is byte-identical for identical ``cfg``, whatever the number of
    ``workers`` (processes rendering the images; default :func:`stages.common.pool.default_workers`).
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
        counts = generate_ricord(cfg, out_dir, progress, workers)
        counts.update(generate_pretrain(cfg, out_dir, progress, plant_leaks(cfg, out_dir), workers))
    manifest = {"source": "synthetic", "generator": "stages.sources.phantom", "config": cfg,
                "counts": counts}
    write_json(out_dir / schema.SOURCE_MANIFEST, manifest)
    return counts


def build(staging: Path, downloads: Path, params: dict) -> dict:
    """The ``synthetic`` source (:class:`stages.sources.Source`): offline, so ``downloads`` is unused."""
    return generate(staging, params["synthetic"])


def _planned_image_count(cfg: dict) -> int:
    """Number of images generate() will render (for the progress bar)."""
    _, studies = plan_ricord(cfg)
    return sum(len(study.images) for study in studies) + int(cfg["n_pretrain"])
