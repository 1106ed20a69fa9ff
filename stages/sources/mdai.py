"""Read and write an MD.ai annotation export (the format of the RSNA RICORD 1c label file).

An export is one JSON object::

    {"id": ..., "name": ...,
     "labelGroups": [{"id", "name", "labels": [{"id", "name", "scope", ...}, ...]}, ...],
     "datasets": [{"id", "name",
                   "studies": [{"StudyInstanceUID", "number"}, ...],
                   "annotations": [{"id", "StudyInstanceUID", "labelId", "createdById", ...}]}]}

RICORD's airspace grades and classifications are study-scoped labels; every reader (``createdById``)
adds one annotation per label they choose. This module turns an export into flat tables and
leaves all grading rules (majority, ties, invalid studies) to the pipeline; its writer (used by the
synthetic phantom) builds the same records, in MD.ai's key order, from what a cohort decided.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from stages.common.io import write_text

READER_LABEL_COLUMNS = ["study_uid", "reader_id", "label_group", "label_name", "annotation_index", "label_id"]
STUDY_COLUMNS = ["study_uid", "number"]
STUDY_SCOPE = "STUDY"


def load_export(path: Path) -> dict[str, Any]:
    """Parse the export file; ValueError naming the file when it is not a JSON object."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as stream:
            export = json.load(stream)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from error
    if not isinstance(export, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(export).__name__}")
    return export


def _require(mapping: Any, key: str, where: str, path: Path) -> Any:
    """mapping[key], or a ValueError naming the file, the place and the missing key."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: {where} is not a JSON object")
    if key not in mapping:
        raise ValueError(f"{path}: {where} has no '{key}' key")
    return mapping[key]


def _require_list(mapping: Any, key: str, where: str, path: Path) -> list:
    """Like :func:`_require`, for keys that must hold a JSON array."""
    value = _require(mapping, key, where, path)
    if not isinstance(value, list):
        raise ValueError(f"{path}: {where} '{key}' is not a list")
    return value


def label_table(export: dict[str, Any], path: Path) -> dict[str, dict[str, str | None]]:
    """Map each labelId to its group name, label name and scope (None when the export omits it)."""
    labels: dict[str, dict[str, str | None]] = {}
    for group_number, group in enumerate(_require_list(export, "labelGroups", "the export", path)):
        where = f"labelGroups[{group_number}]"
        group_name = _require(group, "name", where, path)
        for label_number, label in enumerate(_require_list(group, "labels", where, path)):
            label_where = f"{where}.labels[{label_number}]"
            label_id = _require(label, "id", label_where, path)
            labels[label_id] = {
                "group": group_name,
                "name": _require(label, "name", label_where, path),
                "scope": label.get("scope"),
            }
    return labels


def _is_study_scoped(label: dict[str, str | None], annotation: dict[str, Any]) -> bool:
    """Study-scoped: the label says so (in any case: "STUDY", "Study"), or (no scope given) the
    annotation names no series/image."""
    scope = label["scope"]
    if scope is not None:
        return str(scope).upper() == STUDY_SCOPE
    return annotation.get("SeriesInstanceUID") is None and annotation.get("SOPInstanceUID") is None


def read_reader_labels(path: Path) -> pd.DataFrame:
    """One row per study-scoped annotation: who (reader) gave which label to which study.

    Columns: study_uid, reader_id, label_group, label_name, annotation_index, label_id.
    annotation_index is the annotation's position among all annotations of the file (datasets in
    order), so "the first reader wins" tie rules can be applied later. Series- or image-scoped
    annotations (boxes, for instance) are skipped, and so are annotations whose labelId no
    labelGroups entry defines (:func:`read_export_labels` counts them). Raises ValueError, naming
    the file, for invalid JSON or missing keys.
    """
    return read_export_labels(path)[0]


def read_export_labels(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`read_reader_labels`'s table and the orphans: labelId -> annotations that use a label
    no labelGroups entry defines. They are left out, as mdai-client-py's ``json_to_dataframe`` (an
    inner merge on labelId) leaves them out of what COVID-Net graded, and the caller reports them."""
    path = Path(path)
    export = load_export(path)
    labels = label_table(export, path)
    rows = []
    orphans: dict[str, int] = {}
    annotation_index = 0
    for dataset_number, dataset in enumerate(_require_list(export, "datasets", "the export", path)):
        where = f"datasets[{dataset_number}]"
        for number, annotation in enumerate(_require_list(dataset, "annotations", where, path)):
            annotation_where = f"{where}.annotations[{number}]"
            label_id = _require(annotation, "labelId", annotation_where, path)
            label = labels.get(label_id)
            if label is None:
                orphans[str(label_id)] = orphans.get(str(label_id), 0) + 1
            elif _is_study_scoped(label, annotation):
                rows.append({
                    "study_uid": _require(annotation, "StudyInstanceUID", annotation_where, path),
                    "reader_id": _require(annotation, "createdById", annotation_where, path),
                    "label_group": label["group"],
                    "label_name": label["name"],
                    "annotation_index": annotation_index,
                    "label_id": label_id,
                })
            annotation_index += 1
    table = pd.DataFrame(rows, columns=READER_LABEL_COLUMNS)
    return table.astype({"annotation_index": "int64"}), dict(sorted(orphans.items()))


def read_studies(path: Path) -> pd.DataFrame:
    """The studies the export lists (StudyInstanceUID and MD.ai study number), in file order.

    A study listed by several datasets appears once (its first listing).
    """
    path = Path(path)
    export = load_export(path)
    rows = []
    for dataset_number, dataset in enumerate(_require_list(export, "datasets", "the export", path)):
        where = f"datasets[{dataset_number}]"
        for number, study in enumerate(_require_list(dataset, "studies", where, path)):
            study_where = f"{where}.studies[{number}]"
            rows.append({
                "study_uid": _require(study, "StudyInstanceUID", study_where, path),
                "number": _require(study, "number", study_where, path),
            })
    table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    return table.drop_duplicates("study_uid", keep="first").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def study_label(label_id: str, name: str, color: str) -> dict[str, Any]:
    """A label readers give to a whole study (no geometry), as RICORD's grades and classes are."""
    return {
        "id": label_id,
        "parentId": None,
        "name": name,
        "shortName": None,
        "description": "",
        "color": color,
        "type": "GLOBAL",
        "scope": STUDY_SCOPE,
        "annotationMode": None,
        "radlexTagIds": [],
    }


def label_group(group_id: str, name: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``labelGroups`` entry holding ``labels`` (records of :func:`study_label`)."""
    return {"id": group_id, "name": name, "description": "", "labels": labels}


def study_annotation(annotation_id: str, number: int, study_uid: str, label_id: str,
                     reader_id: str, created_at: str) -> dict[str, Any]:
    """One reader's study-scoped label on one study (``created_at``: ISO 8601 with a ``Z``)."""
    return {
        "id": annotation_id,
        "parentId": None,
        "isImported": False,
        "isInvalid": False,
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": None,
        "SOPInstanceUID": None,
        "frameNumber": None,
        "labelId": label_id,
        "annotationNumber": number,
        "createdById": reader_id,
        "createdAt": created_at,
        "updatedById": reader_id,
        "updatedAt": created_at,
        "data": None,
        "note": None,
        "radlexTagIds": [],
        "reviewsPositiveCount": 0,
        "reviewsNegativeCount": 0,
    }


def dataset(dataset_id: str, name: str, studies: Iterable[tuple[str, int]],
            annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """A DICOM dataset: its studies as (StudyInstanceUID, number) and its annotations."""
    return {
        "id": dataset_id,
        "name": name,
        "type": "DICOM",
        "studies": [{"StudyInstanceUID": study_uid, "number": number} for study_uid, number in studies],
        "annotations": annotations,
    }


def write_export(path: Path, project_id: str, name: str, description: str,
                 label_groups: list[dict[str, Any]], datasets: list[dict[str, Any]]) -> Path:
    """Write one export (the project, its label groups and datasets) as indented JSON."""
    export = {"id": project_id, "name": name, "description": description,
              "labelGroups": label_groups, "datasets": datasets}
    return write_text(path, json.dumps(export, indent=1) + "\n")
