"""COVID-Net's reference files for CXR-S: the COVIDxSev split lists and the RICORD crop boxes.

They come from the COVID-Net repository at one pinned commit and are verified by sha256
(``REFERENCE_FILES``), so the published test set is exactly the one the paper used:

- ``train_COVIDxSev.txt`` / ``test_COVIDxSev.txt``: ``patient_id filename level source`` with
  level ``level1`` or ``level2``;
- ``ricord_data_set.txt``: the usable RICORD 1c PNG names, each optionally followed by a crop box
  ``xmin ymin xmax ymax`` in pixels of the original radiograph;
- ``ricord_patientid_to_studyid_mapping.json``: patient id -> list of StudyInstanceUIDs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stages.common.io import write_text


REPOSITORY = "lindawangg/COVID-Net"
COMMIT = "65999806546b55ab8adfc32b0cf8f70880c337dc"
RAW_BASE_URL = "https://raw.githubusercontent.com"

# file name -> (path in the repository, sha256 of the file at COMMIT)
REFERENCE_FILES = {
    "train_COVIDxSev.txt": (
        "labels/train_COVIDxSev.txt",
        "1de914b21f84c55de0dd56a580c2e6ddbad30ef5706d9d2b40e73f3abe2bf8be"),
    "test_COVIDxSev.txt": (
        "labels/test_COVIDxSev.txt",
        "0ab1825132b9f41f72cbceb3b112de799f5b4e6f747be51850c3a50d735cab28"),
    "ricord_data_set.txt": (
        "create_ricord_dataset/ricord_data_set.txt",
        "ce4d53c168c382966ed9be6ced9973ff692cebf0edca8bc4ed0e489cb0dd5bf4"),
    "ricord_patientid_to_studyid_mapping.json": (
        "create_ricord_dataset/ricord_patientid_to_studyid_mapping.json",
        "61c2a02829bb6231373fca320a54485c43754e572e61005f934d449fb58cac97"),
}
# COVIDx 8B label lists (the pretraining cohort), same repository and commit.
COVIDX_LIST_FILES = {
    "train": ("labels/train_COVIDx8B.txt",
              "1d267c5dd2dfbd9fa99f407a8e7e1f4103cf8b594b1f66f2e95fb43cf9c57a2e"),
    "test": ("labels/test_COVIDx8B.txt",
             "7c92ae0bef49652005e1541a1f2b774e313be4431a891cb0aa5539d37ca2a71e"),
}

# Kaggle's COVIDx (andyczhao/covidx-cxr2) is 9B or later now: 8B's test list is 9B's, and 15,951
# of 8B's 15,952 train names are in 9B's train list (labels/*_COVIDx9B.txt, same commit); this one
# is in neither 9B list, so no current copy has it. CXR-4 (Kaggle, 2023) adds a val/ folder.
DROPPED_IN_COVIDX_9B = frozenset({"242a639e.jpg"})
COVIDX_FOLDERS = ("train", "val", "test")  # split folders of a local copy (8B/9B: train, test; CXR-4: + val)

SEVERITY_LIST_COLUMNS = ["patient_id", "image_id", "airspace_level", "list_source"]
CROP_BOX_COLUMNS = ["image_id", "xmin", "ymin", "xmax", "ymax"]
LEVEL_OF_NAME = {"level1": 1, "level2": 2}


def file_url(repository_path: str, base_url: str = RAW_BASE_URL, commit: str = COMMIT) -> str:
    """Raw URL of one repository file at the pinned commit."""
    return f"{base_url.rstrip('/')}/{REPOSITORY}/{commit}/{repository_path}"


RICORD_PREFIX = "MIDRC-RICORD-1C-"


def ricord_image_id(patient_id: str, study_uid: str, index: int) -> str:
    """COVID-Net's RICORD image name: patient part, the study UID's last five characters, the
    image's number within its study (``MIDRC-RICORD-1C-<patient>-<uid[-5:]>-<i>``), so the
    published reference lists and crop boxes apply to our images."""
    patient = patient_id[len(RICORD_PREFIX):] if patient_id.startswith(RICORD_PREFIX) else patient_id
    return f"{RICORD_PREFIX}{patient}-{study_uid[-5:]}-{index}"


# ---------------------------------------------------------------------------------------------
# COVID-Net's image numbering. create_ricord_dataset.ipynb names image i of a study
# ``MIDRC-RICORD-1C-<mrn>-<study uid[-5:]>-<i>`` with
#     enumerate(sorted(glob(os.path.join(ricord_dir, 'MIDRC-RICORD-1C-<mrn>', '*-<uid5>', '*', '*.dcm'))))
# over the NBIA Data Retriever's "descriptive" layout (CBIIT/NBIA-TCIA, nbia-download-manager
# LocalSeriesDownloader.getRelativeDownloadDir): a study folder, then one folder per series named
#     getPartOfName(seriesNum) + getDescPartOfName(seriesDesc) + seriesInstanceUid[-5:]
# (seriesNum as the archive prints it, ``1.000000``; a missing description as ``NA``, as in every
# public TCIA download path, e.g. ``1001.000000-NA-00046/1-1.dcm`` in COVID-19-AR; '/' -> '-',
# at most 53 characters), holding files ``<acquisition>-<instance>.dcm``: ordinal positions of the
# acquisition number, then of the instance number within it, empty lowest, zero-padded
# (Data Retriever 3.6 release notes). Every file counts, laterals too: the notebook skips a
# non-AP/PA view only after numbering it.
# ---------------------------------------------------------------------------------------------
IMAGE_ORDERS = ("data_retriever", "series_uid")


def _part_of_name(value: str) -> str:
    """The Data Retriever's getPartOfName: the value and a dash; nothing when empty or "null"."""
    return "" if not value or value == "null" else value + "-"


def _desc_part_of_name(value: str) -> str:
    """getDescPartOfName: '/' becomes '-', at most 53 characters, then a dash; "-" and "null" give
    nothing. A description the archive lacks reaches the retriever as ``NA``."""
    value = (value or "NA").replace("/", "-")
    return "" if value in ("null", "-") else value[:53] + "-"


def series_number_text(series_number: object) -> str:
    """SeriesNumber as the archive's metadata prints it: ``1`` -> ``1.000000``; "" when absent."""
    text = str(series_number if series_number is not None else "").strip()
    if not text:
        return ""
    try:
        return f"{float(text):.6f}"
    except ValueError:
        return text


def retriever_series_folder(series_number: object, series_description: str | None, series_uid: str) -> str:
    """The Data Retriever's folder name for a series, e.g. ``1.000000-CHEST AP-12345``."""
    return (_part_of_name(series_number_text(series_number)) + _desc_part_of_name(series_description or "")
            + series_uid[-5:])


def image_order_in_study(table: pd.DataFrame, order: str = "data_retriever") -> pd.Series:
    """Each image's number within its study (0, 1, ...), the ``-<i>`` of its name.

    ``table`` needs study_uid, series_uid, sop_uid and instance_number; for ``data_retriever``
    (COVID-Net's order, above) also series_number, series_description and acquisition_number.
    ``series_uid`` is the order of the embedded phantom's own names (series UID, instance number,
    SOP UID). Ties the retriever leaves open (equal acquisition and instance numbers) go by SOP UID.
    """
    if order not in IMAGE_ORDERS:
        raise ValueError(f"image order must be one of {IMAGE_ORDERS}, got {order!r}")
    if order == "series_uid":
        keys = ["study_uid", "series_uid", "instance_number", "sop_uid"]
        ordered = table.sort_values(keys, kind="stable")
    else:
        folders = [retriever_series_folder(n, d, u) for n, d, u in
                   zip(table.series_number, table.series_description, table.series_uid)]
        empty_lowest = float("-inf")
        ordered = table.assign(
            _folder=folders,
            _acquisition=pd.to_numeric(table.acquisition_number, errors="coerce").fillna(empty_lowest),
            _instance=pd.to_numeric(table.instance_number, errors="coerce").fillna(empty_lowest),
        ).sort_values(["study_uid", "_folder", "_acquisition", "_instance", "sop_uid"], kind="stable")
    return ordered.groupby("study_uid", sort=False).cumcount().reindex(table.index)


def _image_id(filename: str) -> str:
    return filename[:-4] if filename.lower().endswith(".png") else filename


def read_severity_list(path: str | Path) -> pd.DataFrame:
    """Parse a COVIDxSev list; ValueError naming file and line for a malformed line."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4:
            raise ValueError(f"{path}:{number}: expected 'patient_id filename level source', "
                             f"got {len(fields)} field(s): {line.strip()!r}")
        patient_id, filename, level, source = fields
        if level not in LEVEL_OF_NAME:
            raise ValueError(f"{path}:{number}: level {level!r} is not one of {sorted(LEVEL_OF_NAME)}")
        rows.append({"patient_id": patient_id, "image_id": _image_id(filename),
                     "airspace_level": LEVEL_OF_NAME[level], "list_source": source})
    table = pd.DataFrame(rows, columns=SEVERITY_LIST_COLUMNS)
    duplicated = table.image_id[table.image_id.duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: image listed more than once: {sorted(set(duplicated))[:5]}")
    return table.astype({"airspace_level": "int64"})


def read_crop_boxes(path: str | Path) -> pd.DataFrame:
    """Crop boxes of ``ricord_data_set.txt`` (lines with a name only have no box and are skipped)."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if len(fields) in (0, 1):
            continue
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected 'filename [xmin ymin xmax ymax]', got {line.strip()!r}")
        try:
            xmin, ymin, xmax, ymax = (int(v) for v in fields[1:])
        except ValueError:
            raise ValueError(f"{path}:{number}: crop box is not four integers: {line.strip()!r}") from None
        if not (0 <= xmin < xmax and 0 <= ymin < ymax):
            raise ValueError(f"{path}:{number}: empty or negative crop box {fields[1:]}")
        rows.append({"image_id": _image_id(fields[0]), "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax})
    return pd.DataFrame(rows, columns=CROP_BOX_COLUMNS)


def write_crop_boxes(path: str | Path, boxes: dict[str, tuple[int, int, int, int] | None]) -> None:
    """Write ``ricord_data_set.txt``: one ``<image_id>.png [xmin ymin xmax ymax]`` line per image,
    sorted by name (the synthetic source writes it; :func:`read_crop_boxes` reads it back)."""
    lines = [f"{image_id}.png" + ("" if box is None else " " + " ".join(str(int(v)) for v in box))
             for image_id, box in sorted(boxes.items())]
    write_text(Path(path), "\n".join(lines) + "\n")


def read_patient_studies(path: str | Path) -> dict[str, list[str]]:
    """The patient id -> StudyInstanceUIDs map, validated as a JSON object of string lists."""
    path = Path(path)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in mapping.values()):
        raise ValueError(f"{path}: expected an object mapping patient ids to lists of StudyInstanceUIDs")
    return mapping

