"""The RICORD-like severity cohort: patients, studies and DICOMs, graded by several readers.

It stands in for RSNA RICORD 1c: DICOM radiographs in ``ricord/images`` and one MD.ai export
whose study-scoped airspace grades follow each study's planted opacified zones. The plan (every
identifier, setting and truth value) is decided before any pixel is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from stages import schema
from stages.common.io import write_bytes, write_csv
from stages.common.pool import ordered_map
from stages.sources.phantom.anatomy import Anatomy, sample_acquisition, sample_anatomy
from stages.sources.phantom.crop_boxes import image_ids, plan_boxes, write_boxes
from stages.sources.phantom.dicom import dicom_bytes, stored_pixels
from stages.sources.phantom.ids import (
    STREAM_COHORT,
    STREAM_CORRUPT,
    STREAM_IMAGE,
    STREAM_PATIENT,
    STREAM_STUDY,
    accession_number,
    choice,
    int_range,
    non_square_size,
    sample_zones,
    uid,
)
from stages.sources.phantom.readers import reader_labels, write_mdai_export
from stages.sources.phantom.render import render_chest, render_image

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
STUDY_DATE_RANGE = (date(2020, 3, 1), date(2020, 12, 31))
# PatientID infixes of two made-up sites: real RICORD ids carry a six-digit site number
# (``MIDRC-RICORD-1C-419639-000025``); "PHANTOM" cannot be mistaken for one.
RICORD_SITES = (("PHANTOM1", 0.8), ("PHANTOM2", 0.2))

# Columns of the truth tables under synthetic_truth/ (tests and checks read them).
RICORD_TRUTH_COLUMNS = [
    "patient_id", "study_uid", "series_uid", "sop_uid", "raw_path", "n_zones", "opacity_zones",
    "modality", "view", "photometric", "bits_stored", "rows", "columns",
]


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
    """Distinct RICORD-style PatientIDs, e.g. MIDRC-RICORD-1C-PHANTOM1-000123 or ...-PHANTOM2-000045."""
    rng = np.random.default_rng([seed, STREAM_COHORT, 0])
    numbers = rng.choice(np.arange(1, 4000), size=n_patients, replace=False)
    return [
        f"MIDRC-RICORD-1C-{choice(rng, RICORD_SITES)}-{int(number):06d}" for number in numbers
    ]


def plan_ricord(cfg: dict) -> tuple[list[RicordPatient], list[RicordStudy]]:
    """Decide every patient, study and image (identifiers, truth, DICOM settings); no pixels."""
    seed = int(cfg["seed"])
    patients: list[RicordPatient] = []
    studies: list[RicordStudy] = []
    for patient_index, patient_id in enumerate(_patient_ids(seed, int(cfg["n_patients"]))):
        rng = np.random.default_rng([seed, STREAM_PATIENT, patient_index])
        patient = RicordPatient(
            index=patient_index,
            patient_id=patient_id,
            sex="M" if rng.random() < 0.62 else "F",
            age=int(np.clip(rng.normal(59, 16), 18, 95)),
            anatomy=sample_anatomy(rng),
        )
        patients.append(patient)
        first_day = rng.integers(0, (STUDY_DATE_RANGE[1] - STUDY_DATE_RANGE[0]).days - 30)
        for study_index in range(int_range(rng, cfg["studies_per_patient"])):
            studies.append(_plan_study(cfg, patient, study_index, int(first_day), len(studies) + 1))
    return patients, studies


def _plan_study(cfg: dict, patient: RicordPatient, study_index: int, first_day: int,
                number: int) -> RicordStudy:
    """Plan one study of a patient: date, opacified zones, series and images."""
    seed = int(cfg["seed"])
    rng = np.random.default_rng([seed, STREAM_STUDY, patient.index, study_index])
    study_uid = uid(seed, "study", patient.index, study_index)
    day = STUDY_DATE_RANGE[0] + timedelta(days=first_day + 3 * study_index + int(rng.integers(0, 3)))
    zones = sample_zones(rng)
    n_images = max(1, int_range(rng, cfg["images_per_study"]))
    one_series = rng.random() < 0.5  # some studies keep all images in one series
    modality = "CR" if rng.random() < 0.6 else "DX"
    view = choice(rng, list(zip(VIEW_CHOICES, VIEW_PROBABILITIES)))
    window = rng.random() < WINDOW_PROBABILITY
    images = []
    for image_index in range(n_images):
        series_number = 0 if one_series else image_index
        series_uid = uid(seed, "series", patient.index, study_index, series_number)
        sop_uid = uid(seed, "sop", patient.index, study_index, image_index)
        instance = image_index + 1 if one_series else 1
        raw_path = (
            f"{schema.RICORD_IMAGES_DIR}/{patient.patient_id}/{study_uid}/{series_uid}/1-{instance}.dcm"
        )
        rows, columns = non_square_size(rng, DICOM_SIZE_RANGE)
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


def render_ricord_image(seed: int, patient: RicordPatient, study: RicordStudy,
                        image: RicordImage) -> np.ndarray:
    """Render one planned DICOM's pixels: the patient's anatomy, the study's disease pattern."""
    image_rng = np.random.default_rng([seed, STREAM_IMAGE, image.patient_index,
                                       image.study_index, image.image_index])
    acquisition_rng, texture_rng, noise_rng = image_rng.spawn(3)
    # Same opacity stream for every image of a study: the disease does not move between images.
    opacity_rng = np.random.default_rng([seed, STREAM_STUDY, image.patient_index,
                                         image.study_index, 1])
    texts = ("R", f"ACC{accession_number(study.study_uid)}",
             f"{study.study_date[:4]}-{study.study_date[4:6]}-{study.study_date[6:]}",
             "PORTABLE" if image.view == "AP" else "CHEST")
    pixels, _ = render_image(patient.anatomy, sample_acquisition(acquisition_rng), study.zones,
                             opacity_rng, texture_rng, noise_rng, image.rows, image.columns, texts)
    return pixels


def _encode_ricord_image(seed: int, patient: RicordPatient, study: RicordStudy,
                         image: RicordImage) -> bytes:
    """Render and encode one planned image as DICOM bytes."""
    display = render_ricord_image(seed, patient, study, image)
    quantise_rng = np.random.default_rng([seed, STREAM_IMAGE, image.patient_index,
                                          image.study_index, image.image_index, 1])
    pixels, low, high = stored_pixels(display, image, quantise_rng)
    return dicom_bytes(seed, patient, study, image, pixels, low, high)


def _encode_ricord_task(task: tuple) -> bytes:
    return _encode_ricord_image(*task)


def _corrupt_files(cfg: dict, patients: list[RicordPatient], studies: list[RicordStudy],
                   out_dir: Path) -> tuple[list[dict[str, str]], list[RicordImage]]:
    """Plant unreadable .dcm files among the real ones: alternately not-DICOM and truncated.
    Returns their truth rows and the truncated files' planned headers (readable)."""
    seed = int(cfg["seed"])
    count = int(cfg.get("n_corrupt_files", 0))
    if count and not studies:
        raise ValueError("n_corrupt_files > 0 needs at least one study to hide the files in")
    taken = {image.raw_path for study in studies for image in study.images}
    planted, ghosts = [], []
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
            rng = np.random.default_rng([seed, STREAM_CORRUPT, index])
            ghost = replace(host, sop_uid=uid(seed, "corrupt", index), raw_path=raw_path, rows=512,
                            columns=600, image_index=1000 + index)
            pixels, low, high = stored_pixels(
                render_chest(rng, study.zones, ghost.rows, ghost.columns), ghost, rng
            )
            full = dicom_bytes(seed, patients[study.patient_index], study, ghost, pixels, low, high)
            data = full[: len(full) // 2]  # the pixel data ends early
            ghosts.append(ghost)  # its header still reads: ingest numbers it among its study's images
        write_bytes(out_dir / raw_path, data)
        planted.append({"raw_path": raw_path, "kind": kind})
    return planted, ghosts


def generate_ricord(cfg: dict, out_dir: Path, progress: tqdm, workers: int | None = None) -> dict[str, int]:
    """Write the RICORD-like DICOMs, the MD.ai export, corrupt files and their truth tables.

    The images are rendered by ``workers`` processes (:func:`stages.common.pool.ordered_map`: each
    image has its own seeded generators, so the bytes do not depend on the count) and written in order.
    """
    seed = int(cfg["seed"])
    patients, studies = plan_ricord(cfg)
    truth_rows = []
    tasks = [(seed, patients[study.patient_index], study, image) for study in studies for image in study.images]
    for (_, _, study, image), data in zip(tasks, ordered_map(_encode_ricord_task, tasks, workers)):
        write_bytes(out_dir / image.raw_path, data)
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
    planted = reader_labels(cfg, studies)
    write_mdai_export(out_dir / schema.RICORD_ANNOTATIONS, cfg, studies, planted)
    truth_dir = out_dir / schema.SYNTHETIC_TRUTH_DIR
    write_csv(truth_dir / "ricord_images.csv", pd.DataFrame(truth_rows, columns=RICORD_TRUTH_COLUMNS))
    airspace = [
        {"study_uid": study.study_uid, "reader_id": reader, "label_name": name}
        for study, reader, group, name in planted if group == schema.AIRSPACE_GROUP
    ]
    write_csv(truth_dir / "ricord_readers.csv",
              pd.DataFrame(airspace, columns=["study_uid", "reader_id", "label_name"]))
    corrupt, ghosts = _corrupt_files(cfg, patients, studies, out_dir)
    images = [image for study in studies for image in study.images]
    boxes = plan_boxes(cfg, images)
    if any(box is not None for box in boxes.values()):
        write_boxes(out_dir, boxes, image_ids(images + ghosts))
    write_csv(truth_dir / "corrupt_files.csv", pd.DataFrame(corrupt, columns=["raw_path", "kind"]))
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
        "ricord_crop_boxes": sum(1 for box in boxes.values() if box is not None),
    }
