"""The COVIDx-like pretraining cohort: PNG/JPEG images in each source's naming style, two lists.

It stands in for COVIDx: positive and negative images from several public collections, split into
train and test lists by patient; the train list also names any planted leaks (``leaks``).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from stages import schema
from stages.common.io import write_bytes, write_csv
from stages.common.pool import ordered_map
from stages.sources.covidx import write_covidx_list
from stages.sources.phantom.ids import (
    STREAM_PRETRAIN,
    STREAM_PRETRAIN_IMAGE,
    choice,
    hex_uuid,
    non_square_size,
    sample_zones,
)
from stages.sources.phantom.leaks import LEAK_TRUTH_COLUMNS
from stages.sources.phantom.render import render_chest

POSITIVE_SOURCES = (("sirm", 0.30), ("cohen", 0.30), ("actmed", 0.25), ("fig1", 0.15))
NEGATIVE_SOURCES = (("rsna", 0.9), ("cohen", 0.1))
PRETRAIN_IMAGES_PER_PATIENT = (1, 1, 1, 2, 3)  # drawn uniformly: most patients have one image
SINGLE_IMAGE_SOURCES = ("sirm", "actmed", "fig1")  # these sources hold one image per patient
PRETRAIN_SIZE_RANGE = (256, 480)

# Columns of the truth tables under synthetic_truth/ (tests and checks read them).
COVIDX_TRUTH_COLUMNS = ["patient_id", "filename", "label", "covidx_source", "list", "n_zones"]


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
        patient_id = hex_uuid(seed, "rsna", number)
        stem = patient_id if image_number == 0 else hex_uuid(seed, "rsna", number, image_number)
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
    rng = np.random.default_rng([seed, STREAM_PRETRAIN])
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
            source = "sirm" if (label == "positive" and not patients) else choice(rng, sources)
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
            zones = sample_zones(rng) if label == "positive" else ()
            for image_number in range(size):
                patient_id, stem, extension = _pretrain_identity(seed, source, label, number, image_number)
                if source == "cohen" and size > 1:
                    stem = f"{stem}-{image_number + 1}"
                rows, columns = non_square_size(rng, PRETRAIN_SIZE_RANGE)
                planned.append(PretrainImage(
                    index=len(planned),
                    patient_id=patient_id,
                    filename=stem + extension,
                    label=label,
                    source=source,
                    list_name="test" if patient_position in in_test else "train",
                    # A positive patient's later images may show a different extent of disease.
                    zones=zones if image_number == 0 or label == "negative" else sample_zones(rng),
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
    rng = np.random.default_rng([seed, STREAM_PRETRAIN_IMAGE, planned.index])
    display = render_chest(rng, planned.zones, planned.rows, planned.columns)
    grey = np.rint(display * 255.0).astype(np.uint8)
    pixels = np.repeat(grey[:, :, None], 3, axis=2) if planned.color else grey
    if planned.file_format == "PNG":
        return png_bytes(pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _encode_pretrain_task(task: tuple[int, PretrainImage]) -> bytes:
    return _encode_pretrain_image(*task)


def generate_pretrain(cfg: dict, out_dir: Path, progress: tqdm,
                      leaks: list[dict[str, Any]] = (), workers: int | None = None) -> dict[str, int]:
    """Write the COVIDx-like images, the train/test lists (with the planted ``leaks``, already
    written by :func:`stages.sources.phantom.leaks.plant_leaks`) and the truth. The images are
    rendered by ``workers`` processes and written in order (as in ``generate_ricord``)."""
    seed = int(cfg["seed"])
    planned = _plan_pretrain(cfg)
    tasks = [(seed, image) for image in planned]
    for image, data in zip(planned, ordered_map(_encode_pretrain_task, tasks, workers)):
        write_bytes(out_dir / schema.COVIDX_IMAGES_DIR / image.filename, data)
        progress.update(1)
    for list_name, relative in schema.COVIDX_LISTS.items():
        rows = [{"patient_id": image.patient_id, "filename": image.filename, "label": image.label,
                 "covidx_source": image.source} for image in planned if image.list_name == list_name]
        if list_name == "train":  # leaks pose as positive RSNA-style images
            rows += [{"patient_id": leak["patient_id"], "filename": leak["filename"], "label": "positive",
                      "covidx_source": "rsna"} for leak in leaks]
        write_covidx_list(out_dir / relative, rows)
    truth_dir = out_dir / schema.SYNTHETIC_TRUTH_DIR
    write_csv(truth_dir / "planted_leaks.csv", pd.DataFrame(leaks, columns=LEAK_TRUTH_COLUMNS))
    write_csv(truth_dir / "covidx.csv", pd.DataFrame([
        {"patient_id": image.patient_id, "filename": image.filename, "label": image.label,
         "covidx_source": image.source, "list": image.list_name, "n_zones": len(image.zones)}
        for image in planned
    ], columns=COVIDX_TRUTH_COLUMNS))
    return {
        "pretrain_images": len(planned),
        "pretrain_train": sum(1 for image in planned if image.list_name == "train"),
        "pretrain_test": sum(1 for image in planned if image.list_name == "test"),
        "pretrain_positive": sum(1 for image in planned if image.label == "positive"),
        "pretrain_negative": sum(1 for image in planned if image.label == "negative"),
        "pretrain_patients": len({image.patient_id for image in planned}),
        "planted_leaks": len(leaks),
    }
