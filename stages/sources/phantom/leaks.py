"""Planted leaks: severity images copied, disguised, into the COVIDx-like pretraining cohort.

Each copy gets a fresh file name and patient id (so matching by name or patient cannot find it) and
is listed in the training list as a positive image; what changes in its pixels is its ``kind``,
one per way a real copy of a RICORD radiograph differs from the DICOM:

* ``copy``: the same 8-bit pixels saved as PNG (exact-pixel hash);
* ``rescaled``: shrunk to 50% or 75% and saved as JPEG (perceptual hash);
* ``rewindowed``: a narrower window and a gamma, as another DICOM-to-PNG export would give;
* ``cropped``: cut to the image's COVID-Net crop box, as COVIDx's RICORD PNGs are;
* ``flipped``: mirrored left-right.

Sources are drawn among images that reach the split (views ingest keeps, studies every reader
graded), so the audit has every planted copy's source to find it from. The copies start from the
DICOM as ingest decodes it, so their pixels are what a real export would hold.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stages import schema
from stages.common.io import write_bytes
from stages.dicomio.read import read_dicom
from stages.imaging.preprocess import crop_box, to_uint8
from stages.sources.phantom.crop_boxes import plan_boxes
from stages.sources.phantom.ids import STREAM_LEAK, hex_uuid
from stages.sources.phantom.readers import reader_labels
from stages.sources.phantom.ricord import plan_ricord

KINDS = ("copy", "rescaled", "rewindowed", "cropped", "flipped")  # plant n has kind KINDS[n % 5]
LEAK_SCALES = (0.5, 0.75)
LEAK_JPEG_QUALITIES = (70, 85)
REWINDOW = (0.08, 0.88, 1.25)  # new window [low, high] of the display range, then this gamma
KEPT_VIEWS = ("AP", "PA", "UNKNOWN")  # ingest.views' default: a lateral never reaches the split
LEAK_TRUTH_COLUMNS = ["filename", "patient_id", "kind", "source_raw_path", "source_patient_id", "detail"]


def _candidates(cfg: dict) -> tuple[list[Any], dict[str, Any]]:
    """Images that reach the split (kept view, every reader gave a valid grade), and their boxes."""
    _, studies = plan_ricord(cfg)
    labels: dict[str, list[str]] = {}
    for study, _, group, name in reader_labels(cfg, studies):
        if group == schema.AIRSPACE_GROUP:
            labels.setdefault(study.study_uid, []).append(name)
    graded = {uid for uid, names in labels.items() if names and schema.INVALID not in names}
    images = [image for study in studies if study.study_uid in graded for image in study.images
              if (image.view or "UNKNOWN") in KEPT_VIEWS]
    return images, plan_boxes(cfg, [image for study in studies for image in study.images])


def _disguise(display: np.ndarray, kind: str, number: int, box: Any) -> tuple[bytes, str, str]:
    """The copy's bytes, file extension and what was done to it."""
    buffer = io.BytesIO()
    if kind == "rescaled":
        scale = LEAK_SCALES[number % len(LEAK_SCALES)]
        quality = LEAK_JPEG_QUALITIES[number % len(LEAK_JPEG_QUALITIES)]
        grey = Image.fromarray(to_uint8(display))
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BILINEAR)
        grey.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue(), ".jpg", f"scale {scale}, JPEG quality {quality}"
    if kind == "rewindowed":
        low, high, gamma = REWINDOW
        pixels, detail = np.clip((display - low) / (high - low), 0.0, 1.0) ** gamma, f"window {low}-{high}, gamma {gamma}"
    elif kind == "cropped":
        pixels, detail = crop_box(display, box), "box " + " ".join(str(v) for v in box)
    elif kind == "flipped":
        pixels, detail = np.fliplr(display), "mirrored left-right"
    else:
        pixels, detail = display, "same pixels"
    Image.fromarray(to_uint8(pixels)).save(buffer, format="PNG")
    return buffer.getvalue(), ".png", detail


def plant_leaks(cfg: dict, out_dir: Path) -> list[dict[str, Any]]:
    """Write ``synthetic.plant_leaks`` disguised copies into the COVIDx images folder (the RICORD
    DICOMs must be written already); returns their truth rows (``LEAK_TRUTH_COLUMNS``)."""
    count = int(cfg.get("plant_leaks", 0))
    if count == 0:
        return []
    seed = int(cfg["seed"])
    images, boxes = _candidates(cfg)
    kinds = [KINDS[number % len(KINDS)] for number in range(count)]
    boxed = [i for i, image in enumerate(images) if boxes[image.raw_path] is not None]
    unboxed = [i for i in range(len(images)) if boxes[images[i].raw_path] is None]
    n_cropped = kinds.count("cropped")
    if n_cropped > len(boxed) or count - n_cropped > len(images) - n_cropped:
        raise ValueError(f"synthetic.plant_leaks={count} needs {n_cropped} images with a crop box "
                         f"(synthetic.crop_box_fraction) and {count} usable images in all; the cohort "
                         f"has {len(boxed)} and {len(images)}")
    rng = np.random.default_rng([seed, STREAM_LEAK])
    chosen_boxed = rng.permutation(boxed)[:n_cropped].tolist()
    rest = [i for i in rng.permutation(unboxed + boxed).tolist() if i not in set(chosen_boxed)]
    rows = []
    for number, kind in enumerate(kinds):
        index = chosen_boxed.pop(0) if kind == "cropped" else rest.pop(0)
        image = images[index]
        display, _ = read_dicom(out_dir / image.raw_path)
        data, extension, detail = _disguise(display, kind, number, boxes[image.raw_path])
        filename = f"{hex_uuid(seed, 'leak', number + 1)}{extension}"
        write_bytes(out_dir / schema.COVIDX_IMAGES_DIR / filename, data)
        rows.append({"filename": filename, "patient_id": hex_uuid(seed, "leak-patient", number + 1),
                     "kind": kind, "source_raw_path": image.raw_path,
                     "source_patient_id": image.patient_id, "detail": detail})
    return rows
