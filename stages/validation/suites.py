"""Great Expectations suites for the pipeline's tables, and a deterministic summary of their results.

Four suites, one per table: ``severity_images``, ``pretrain_images``, ``labels`` and ``split``, and
a fifth, ``paper_cohort``, when the cohort is meant to be the paper's (RICORD with the reference
split): its counts must equal ``stages/reference/paper.yaml`` exactly.
Every check is a real GE 1.x expectation validated by an ephemeral context on a pandas batch. Checks
that are not about single values of the table (no patient in two splits, enough images of each
level in each split, no identifying DICOM header columns) run on small *derived* tables (one row per
patient, per split and level, per column name), so GE still expresses and evaluates them.

The summary (:func:`run_all`) holds no timestamps, run ids, versions or random ids, so identical
tables give byte-identical JSON; offending rows are named by their ids (``image_id``,
``patient_id``...), never by pixel data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

# GE 1.x phones home (posthog) unless told not to; set before the import reads it. The machine
# running ``dvc repro`` may be offline, and a validation gate has no business sending analytics.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from stages import schema  # noqa: E402
from stages.sources.covidx import read_covidx_list, read_not_acquired  # noqa: E402

SUITE_NAMES = ("severity_images", "pretrain_images", "labels", "split")
PAPER_COHORT_SUITE = "paper_cohort"
DEFAULT_MIN_IMAGE_SIZE = 64
DEFAULT_MIN_IMAGES_PER_LEVEL_PER_SPLIT = 1
DEFAULT_MAX_LEVEL2_SHARE_DEVIATION = 0.15
# How a file named in a COVIDx list may be accounted for; anything else vanished silently.
LISTED_STATUSES = ("ingested", "rejected", "not_acquired")
MAX_EXAMPLES = 10  # offending ids kept per expectation in the JSON
MESSAGE_EXAMPLES = 5  # ... and in the exception message
MAX_LISTED_VALUES = 50  # a longer value set is summarised (size and hash) to keep the JSON small

# Row number in the table as given; names a row whose id itself is missing.
ROW = "__row__"

# DICOM attributes that identify a person or place (PS3.15 Annex E basic profile). None may leak
# into a table. PatientID and the study/series/SOP UIDs are left out on purpose: the tables carry
# RICORD's already-pseudonymised ``patient_id`` and UIDs, which the pipeline needs as keys.
IDENTIFYING_DICOM_COLUMNS = (
    "PatientName",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "OtherPatientNames",
    "OtherPatientIDs",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "AccessionNumber",
)

STUDY_GRADES = tuple(sorted(schema.LEVEL_OF_GRADE))  # mild, moderate, severe
COVIDX_LISTS = tuple(sorted(schema.COVIDX_LISTS))  # test, train


class ValidationFailed(Exception):
    """One or more expectations failed; the message lists every failure with offending ids."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        if len(self.failures) == 1:
            message = f"validation failed: {self.failures[0]}"
        else:
            lines = "\n".join(f"  - {line}" for line in self.failures)
            message = f"validation failed: {len(self.failures)} checks failed\n{lines}"
        super().__init__(message)


@dataclass(frozen=True)
class Frame:
    """A dataframe that a group of expectations runs on, and the columns that name its rows."""

    data: pd.DataFrame
    id_columns: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One expectation: its GE class and arguments, the frame it runs on, and why it exists."""

    frame: str
    expectation: type[gxe.Expectation]
    kwargs: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Inputs:
    """What the suites check besides the tables: the files on disk and the paper's counts.

    ``images``: the processed image folder (every table row's ``image_path`` must be there);
    ``raw``: the raw folder (every COVIDx list line must be accounted for); ``paper_cohort``:
    the expected cohort counts, or None when the run is not meant to reproduce the paper's cohort.
    Left as None, a check that needs the input is not built.
    """

    images: Path | None = None
    raw: Path | None = None
    paper_cohort: dict[str, Any] | None = None


@dataclass
class SuiteSpec:
    """A suite before validation: named frames and the checks over them, in report order."""

    name: str
    n_rows: int
    frames: dict[str, Frame]
    checks: list[Check] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Table preparation and derived tables
# ---------------------------------------------------------------------------------------------
def _blank_to_missing(column: pd.Series) -> pd.Series:
    """Empty strings mean 'no value' in the CSVs (they are read with keep_default_na=False)."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column
    blank = column.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore")
    blank = blank.fillna(False).astype(bool)
    return column.mask(blank) if blank.any() else column


def prepare(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with blanks as missing values and a row-number column to point at id-less rows."""
    frame = table.reset_index(drop=True).copy()
    for name in frame.columns:
        frame[name] = _blank_to_missing(frame[name])
    frame[ROW] = range(len(frame))
    return frame


def _has(table: pd.DataFrame, *columns: str) -> bool:
    return all(c in table.columns for c in columns)


def _ids(table: pd.DataFrame, column: str = "image_id") -> list[str]:
    """Sorted distinct non-missing ids of a column (empty when the column is absent)."""
    if column not in table.columns:
        return []
    return sorted({str(v) for v in table[column].dropna()})


def normalise_column_name(name: str) -> str:
    """``PatientName``, ``patient_name`` and ``Patient Name`` all become ``patientname``."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def columns_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per column of the table, so GE can check the column *names* as values."""
    names = [str(c) for c in table.columns if c != ROW]
    return pd.DataFrame({"column_name": names, "normalised_name": [normalise_column_name(n) for n in names]})


def _as_object(column: pd.Series) -> pd.Series:
    # Nullable Int64 columns break GE's pair expectations ("boolean value of NA is ambiguous");
    # plain Python objects with None do not.
    return column.astype(object).where(column.notna(), None)


def grade_levels_frame(labels: pd.DataFrame) -> pd.DataFrame:
    """Per label: its airspace level and the level its study grade implies."""
    if not _has(labels, "image_id", "study_grade", "airspace_level"):
        return pd.DataFrame({"image_id": [], "airspace_level": [], "level_of_grade": []})
    return pd.DataFrame({
        "image_id": labels["image_id"],
        "airspace_level": _as_object(labels["airspace_level"]),
        "level_of_grade": _as_object(labels["study_grade"].map(schema.LEVEL_OF_GRADE)),
    })


def membership_frame(table: pd.DataFrame, reference: pd.DataFrame, flag: str,
                     column: str = "image_id") -> pd.DataFrame:
    """Per distinct id in ``table``: whether ``reference`` has it too (a join, as a boolean column).

    A join rather than ``expect_column_values_to_be_in_set(value_set=<every id>)``: GE 1.x
    re-serialises an expectation's kwargs each time it reads them, so a value set of thousands
    of ids makes validation take seconds instead of milliseconds.
    """
    # One row per distinct id: a study's several images are one question (does it have images?).
    ids = _ids(table, column)
    known = set(_ids(reference, column))
    return pd.DataFrame({column: ids, flag: [i in known for i in ids]})


def patients_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Per patient: in how many distinct splits their images are."""
    if not _has(split, "patient_id", "split"):
        return pd.DataFrame({"patient_id": [], "n_splits": []})
    known = split.dropna(subset=["patient_id", "split"])
    counts = known.groupby("patient_id", sort=True)["split"].nunique()
    return pd.DataFrame({"patient_id": counts.index.astype(str), "n_splits": counts.to_numpy(dtype="int64")})


def level_counts_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Images per (split, level) over every split and level, so a combination with none shows 0."""
    grid = pd.MultiIndex.from_product([schema.SPLITS, schema.LEVELS], names=["split", "airspace_level"])
    if _has(split, "split", "airspace_level"):
        counts = split.groupby(["split", "airspace_level"]).size()
        counts = counts.reindex(grid, fill_value=0)
    else:
        counts = pd.Series(0, index=grid)
    frame = counts.rename("n_images").reset_index()
    frame["n_images"] = frame["n_images"].astype("int64")
    return frame


def files_frame(table: pd.DataFrame, images: Path) -> pd.DataFrame:
    """Per image: whether its processed file is in the image folder."""
    if not _has(table, "image_id", "image_path"):
        return pd.DataFrame({"image_id": [], "image_file_present": []})
    known = table.dropna(subset=["image_id"])
    present = [isinstance(p, str) and (images / p).is_file() for p in known["image_path"]]
    return pd.DataFrame({"image_id": known["image_id"].astype(str).to_numpy(), "image_file_present": present})


def listed_frame(pretrain: pd.DataFrame, rejects: pd.DataFrame, raw: Path) -> pd.DataFrame:
    """Per line of the COVIDx lists under ``raw``: how the file is accounted for.

    ``ingested`` (a row of the table), ``rejected`` (in ``rejects.csv`` with the reason),
    ``not_acquired`` (acquire reported it missing) or ``absent``: listed, yet gone without a word.
    """
    ingested = set(zip(pretrain.get("list", []), pretrain.get("filename", [])))
    rejected = set(rejects["raw_path"]) if "raw_path" in rejects.columns else set()
    not_acquired = read_not_acquired(raw / schema.COVIDX_MISSING)
    rows = []
    for list_name, relative in sorted(schema.COVIDX_LISTS.items()):
        if not (raw / relative).exists():
            continue
        for filename in read_covidx_list(raw / relative)["filename"]:
            if (list_name, filename) in ingested:
                status = "ingested"
            elif f"{schema.COVIDX_IMAGES_DIR}/{filename}" in rejected:
                status = "rejected"
            elif (list_name, filename) in not_acquired:
                status = "not_acquired"
            else:
                status = "absent"
            rows.append({"list": list_name, "filename": filename, "status": status})
    return pd.DataFrame(rows, columns=["list", "filename", "status"])


def study_levels_frame(labels: pd.DataFrame) -> pd.DataFrame:
    """Per labelled study: how many distinct airspace levels its images carry (must be 1)."""
    if not _has(labels, "study_uid", "airspace_level"):
        return pd.DataFrame({"study_uid": [], "n_levels": []})
    known = labels.dropna(subset=["study_uid"])
    counts = known.groupby("study_uid", sort=True)["airspace_level"].nunique()
    return pd.DataFrame({"study_uid": counts.index.astype(str), "n_levels": counts.to_numpy(dtype="int64")})


def level2_share_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Per split: its Level 2 share, the whole cohort's, and how far apart they are."""
    columns = ["split", "n_images", "level2_share", "cohort_level2_share", "deviation"]
    if not _has(split, "split", "airspace_level") or split.empty:
        return pd.DataFrame(columns=columns)
    known = split.dropna(subset=["split", "airspace_level"])
    is_level2 = known["airspace_level"].map(lambda v: str(v) == "2")
    cohort = float(is_level2.mean())
    rows = []
    for name in schema.SPLITS:
        member = known["split"] == name
        if not member.any():
            continue  # an empty split is the level-count check's business
        share = float(is_level2[member].mean())
        rows.append({"split": name, "n_images": int(member.sum()), "level2_share": round(share, 6),
                     "cohort_level2_share": round(cohort, 6), "deviation": round(abs(share - cohort), 6)})
    return pd.DataFrame(rows, columns=columns)


def cohort_counts(split: pd.DataFrame) -> dict[str, int]:
    """The paper's cohort figures, counted on our split table."""
    levels = split["airspace_level"].map(lambda v: str(v))
    counts = {"images": len(split), "patients": split["patient_id"].nunique()}
    for level in schema.LEVELS:
        member = levels == str(level)
        counts[f"level{level}.images"] = int(member.sum())
        counts[f"level{level}.patients"] = int(split.loc[member, "patient_id"].nunique())
    test = split["split"] == "test"
    counts["test_images"] = int(test.sum())
    for level in schema.LEVELS:
        counts[f"test_level{level}_images"] = int((test & (levels == str(level))).sum())
    return {k: int(v) for k, v in counts.items()}


def flatten_counts(expected: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """``{level1: {images: 227}}`` -> ``{"level1.images": 227}``."""
    flat: dict[str, int] = {}
    for key, value in expected.items():
        if isinstance(value, dict):
            flat.update(flatten_counts(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = int(value)
    return flat


def paper_counts_frame(split: pd.DataFrame, expected: dict[str, Any]) -> pd.DataFrame:
    """One row per figure of the paper's cohort: ours beside the paper's."""
    wanted = flatten_counts(expected)
    observed = cohort_counts(split) if _has(split, "patient_id", "split", "airspace_level") else {}
    return pd.DataFrame({
        "figure": list(wanted),
        "observed": [observed.get(k) for k in wanted],
        "expected": list(wanted.values()),
    }).astype({"observed": object})


# ---------------------------------------------------------------------------------------------
# Suites
# ---------------------------------------------------------------------------------------------
def _required_columns(columns: list[str]) -> Check:
    # exact_match=False: every required column must be there, extra columns are allowed.
    return Check("table", gxe.ExpectTableColumnsToMatchSet,
                 {"column_set": list(columns), "exact_match": False}, "required columns missing")


def _not_empty() -> Check:
    # Every other check passes vacuously on an empty table.
    return Check("table", gxe.ExpectTableRowCountToBeBetween, {"min_value": 1}, "table is empty")


def _not_null(*columns: str) -> list[Check]:
    return [Check("table", gxe.ExpectColumnValuesToNotBeNull, {"column": c}, f"missing {c}")
            for c in columns]


def _unique(column: str, description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeUnique, {"column": column}, description)


def _in_set(column: str, values: Iterable[Any], description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeInSet, {"column": column, "value_set": list(values)},
                 description)


def _at_least(column: str, minimum: int, description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeBetween, {"column": column, "min_value": minimum},
                 description)


def _file_checks(table: pd.DataFrame, inputs: Inputs) -> tuple[dict[str, Frame], list[Check]]:
    if inputs.images is None:
        return {}, []
    return ({"files": Frame(files_frame(table, inputs.images), ("image_id",))},
            [_in_set("image_file_present", [True], "processed image file missing", frame="files")])


def severity_images_suite(images: pd.DataFrame, params: dict[str, Any], inputs: Inputs = Inputs()) -> SuiteSpec:
    """The decoded RICORD-style radiographs: keys, views, sizes, sex and capped age, files, and no
    identifying headers."""
    table = prepare(images)
    min_size = int(params.get("min_image_size", DEFAULT_MIN_IMAGE_SIZE))
    identifying = sorted({normalise_column_name(c) for c in IDENTIFYING_DICOM_COLUMNS})
    file_frames, file_checks = _file_checks(table, inputs)
    return SuiteSpec("severity_images", len(table), {
        "table": Frame(table, ("image_id",)),
        "columns": Frame(columns_frame(images), ("column_name",)),
        **file_frames,
    }, [
        _required_columns(schema.SEVERITY_IMAGE_COLUMNS),
        _not_empty(),
        Check("columns", gxe.ExpectColumnValuesToNotBeInSet,
              {"column": "normalised_name", "value_set": identifying},
              "identifying DICOM header column present"),
        *_not_null("image_id", "patient_id", "view", "rows", "columns"),
        _unique("image_id", "image in two rows"),
        # Blank SOP UIDs are missing values, which GE's uniqueness check skips.
        _unique("sop_uid", "SOP instance in two rows"),
        _in_set("view", schema.VIEWS, "unknown view"),
        _at_least("rows", min_size, f"fewer than {min_size} rows"),
        _at_least("columns", min_size, f"fewer than {min_size} columns"),
        # Blank sex or age means unknown: GE skips missing values. Ages are capped at 90 (HIPAA).
        _in_set("patient_sex", schema.PATIENT_SEXES, "unknown patient sex"),
        Check("table", gxe.ExpectColumnValuesToBeBetween,
              {"column": "patient_age_years", "min_value": 0, "max_value": schema.AGE_CAP_YEARS},
              f"patient age outside 0..{schema.AGE_CAP_YEARS} years"),
        *file_checks,
    ])


def pretrain_images_suite(images: pd.DataFrame, params: dict[str, Any], inputs: Inputs = Inputs(),
                          rejects: pd.DataFrame | None = None) -> SuiteSpec:
    """The COVIDx-style pretraining images: keys, labels, lists, and every listed file accounted for."""
    table = prepare(images)
    frames, checks = _file_checks(table, inputs)
    if inputs.raw is not None:
        rejects = rejects if rejects is not None else pd.DataFrame(columns=schema.REJECT_COLUMNS)
        frames["listed"] = Frame(listed_frame(table, rejects, inputs.raw), ("list", "filename"))
        checks.append(_in_set("status", LISTED_STATUSES,
                              "listed file neither ingested nor reported rejected or not acquired",
                              frame="listed"))
    return SuiteSpec("pretrain_images", len(table), {"table": Frame(table, ("image_id",)), **frames}, [
        _required_columns(schema.PRETRAIN_IMAGE_COLUMNS),
        _not_empty(),
        *_not_null("image_id", "filename", "label", "list"),
        _unique("image_id", "image in two rows"),
        _unique("filename", "file in two rows"),
        _in_set("label", schema.COVIDX_CLASSES, "unknown COVIDx label"),
        _in_set("list", COVIDX_LISTS, "unknown COVIDx list"),
        *checks,
    ])


def labels_suite(labels: pd.DataFrame, images: pd.DataFrame, params: dict[str, Any]) -> SuiteSpec:
    """One airspace level per labelled image, consistent with its grade, for a known image."""
    table = prepare(labels)
    return SuiteSpec("labels", len(table), {
        "table": Frame(table, ("image_id",)),
        "grades": Frame(grade_levels_frame(table), ("image_id",)),
        "image_join": Frame(membership_frame(table, prepare(images), "in_image_table"), ("image_id",)),
        "study_join": Frame(membership_frame(table, prepare(images), "study_has_images", column="study_uid"),
                            ("study_uid",)),
        "study_levels": Frame(study_levels_frame(table), ("study_uid",)),
    }, [
        _required_columns(schema.LABEL_COLUMNS),
        _not_empty(),
        *_not_null("image_id", "patient_id", "study_grade", "airspace_level"),
        _unique("image_id", "image labelled twice"),
        _in_set("airspace_level", schema.LEVELS, "unknown airspace level"),
        _in_set("study_grade", STUDY_GRADES, "unknown study grade"),
        _in_set("in_image_table", [True], "labelled image missing from the image table",
                frame="image_join"),
        _in_set("study_has_images", [True], "labelled study without images", frame="study_join"),
        _in_set("n_levels", [1], "study with images of two airspace levels", frame="study_levels"),
        # Rows with an unknown grade or level are already failed above; compare only known pairs.
        Check("grades", gxe.ExpectColumnPairValuesToBeEqual,
              {"column_A": "airspace_level", "column_B": "level_of_grade",
               "ignore_row_if": "either_value_is_missing"},
              "airspace level disagrees with study grade"),
    ])


def split_suite(split: pd.DataFrame, labels: pd.DataFrame, params: dict[str, Any]) -> SuiteSpec:
    """Every labelled image in exactly one split, patient-disjoint, each level in each split."""
    table = prepare(split)
    label_table = prepare(labels)
    minimum = int(params.get("min_images_per_level_per_split", DEFAULT_MIN_IMAGES_PER_LEVEL_PER_SPLIT))
    tolerance = float(params.get("max_level2_share_deviation", DEFAULT_MAX_LEVEL2_SHARE_DEVIATION))
    return SuiteSpec("split", len(table), {
        "table": Frame(table, ("image_id",)),
        "label_join": Frame(membership_frame(table, label_table, "in_labels"), ("image_id",)),
        "split_join": Frame(membership_frame(label_table, table, "in_split"), ("image_id",)),
        "patients": Frame(patients_frame(table), ("patient_id",)),
        "level_counts": Frame(level_counts_frame(table), ("split", "airspace_level")),
        "level2_shares": Frame(level2_share_frame(table), ("split", "level2_share", "cohort_level2_share")),
    }, [
        _required_columns(schema.SPLIT_COLUMNS),
        _not_empty(),
        *_not_null("image_id", "patient_id", "split", "airspace_level"),
        _unique("image_id", "image in two split rows"),
        _in_set("split", schema.SPLITS, "unknown split"),
        _in_set("airspace_level", schema.LEVELS, "unknown airspace level"),
        _in_set("in_labels", [True], "split image without a label", frame="label_join"),
        _in_set("in_split", [True], "labelled image missing from the split", frame="split_join"),
        _in_set("n_splits", [1], "patient in two splits", frame="patients"),
        _at_least("n_images", minimum, f"fewer than {minimum} images of a level in a split",
                  frame="level_counts"),
        Check("level2_shares", gxe.ExpectColumnValuesToBeBetween,
              {"column": "deviation", "max_value": tolerance},
              f"Level 2 share of a split more than {tolerance} from the cohort's"),
    ])


def paper_cohort_suite(split: pd.DataFrame, expected: dict[str, Any]) -> SuiteSpec:
    """The cohort of the paper exactly: images, patients, per level, and the test set size."""
    counts = paper_counts_frame(prepare(split), expected)
    return SuiteSpec(PAPER_COHORT_SUITE, len(counts), {
        "counts": Frame(counts, ("figure", "observed", "expected")),
    }, [
        Check("counts", gxe.ExpectColumnValuesToNotBeNull, {"column": "observed"},
              "figure not countable on the split table"),
        Check("counts", gxe.ExpectColumnPairValuesToBeEqual,
              {"column_A": "observed", "column_B": "expected"},
              "cohort count differs from the paper's (stages/reference/paper.yaml)"),
    ])


# ---------------------------------------------------------------------------------------------
# Running suites and summarising results
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-safe, deterministic version of a GE/numpy/pandas value."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=_sort_key)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy scalar -> Python scalar
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _report_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The expectation's arguments; a long value set (every image id) becomes a size and hash."""
    report = {}
    for key, value in sorted(kwargs.items()):
        value = _plain(value)
        if isinstance(value, list) and len(value) > MAX_LISTED_VALUES:
            digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
            value = {"n_values": len(value), "sha256": digest}
        report[key] = value
    return report


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(map(str, kwargs["column_list"]))
    return None


def _is_missing(value: Any) -> bool:
    return _plain(value) is None


def _format_id(row: dict[str, Any], id_columns: tuple[str, ...]) -> str:
    """``image_id=00123`` (or ``split=val,airspace_level=1``); ``row=N`` when the id is missing."""
    values = [row.get(c) for c in id_columns]
    if (not id_columns or any(_is_missing(v) for v in values)) and ROW in row:
        return f"row={_plain(row[ROW])}"
    return ",".join(f"{c}={_plain(v)}" for c, v in zip(id_columns, values))


def _exception_message(info: Any) -> str | None:
    """GE reports errors either flat or keyed by metric id (with hashes); keep only messages."""
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    messages = sorted({str(v.get("exception_message")) for v in info.values()
                       if isinstance(v, dict) and v.get("raised_exception")})
    return "; ".join(messages) or None


def _summarise(check: Check, expectation: gxe.Expectation, gx_result: Any, frame: Frame) -> dict[str, Any]:
    """The deterministic, id-only record of one expectation's outcome."""
    kwargs = dict(expectation.configuration.kwargs)
    result = gx_result.result or {}
    error = _exception_message(gx_result.exception_info)
    if isinstance(expectation, gxe.ExpectTableColumnsToMatchSet):
        # exact_match=False: only missing columns fail; extra columns are fine.
        missing = (result.get("details") or {}).get("mismatched", {}).get("missing", [])
        examples = sorted(f"missing_column={c}" for c in missing)
        values: list[Any] = sorted(missing)
        count = len(missing)
    elif "unexpected_count" not in result and "observed_value" in result:
        # Table-level aggregate (row count): the observed value is the offender.
        observed = _plain(result["observed_value"])
        examples = [] if gx_result.success else [f"observed={observed}"]
        values = [] if gx_result.success else [observed]
        count = 0 if gx_result.success else 1
    else:
        id_columns = tuple(c for c in frame.id_columns if c in frame.data.columns)
        examples = sorted({_format_id(row, id_columns) for row in result.get("unexpected_index_list") or []})
        values = sorted({_sort_key(_plain(v)) for v in result.get("unexpected_list") or []})
        values = [json.loads(v) for v in values]
        count = int(result.get("unexpected_count") or 0)
    return {
        "expectation": expectation.expectation_type,
        "column": _column_of(kwargs),
        "frame": check.frame,
        "description": check.description,
        "kwargs": _report_kwargs(kwargs),
        "success": bool(gx_result.success),
        "unexpected_count": count,
        "unexpected_examples": examples[:MAX_EXAMPLES],
        "unexpected_values": values[:MAX_EXAMPLES],
        "error": error,
    }


class Validator:
    """One ephemeral GE context with a pandas data source; validates suites frame by frame."""

    def __init__(self) -> None:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self.context = gx.get_context(mode="ephemeral")
        # tqdm "Calculating Metrics" bars would fill the dvc log with noise.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self.context.data_sources.add_pandas("tables").add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")

    def _validate_frame(self, suite: SuiteSpec, frame_name: str,
                        indexed: list[tuple[int, Check]]) -> dict[int, dict[str, Any]]:
        frame = suite.frames[frame_name]
        gx_suite = gx.ExpectationSuite(name=f"{suite.name}.{frame_name}")
        expectations = {}
        for index, check in indexed:
            # GE returns results in its own order; meta carries the check's index back.
            expectation = check.expectation(**check.kwargs, meta={"check": index})
            expectations[index] = expectation
            gx_suite.add_expectation(expectation)
        id_columns = [c for c in (*frame.id_columns, ROW) if c in frame.data.columns]
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame.data})
        outcome = batch.validate(gx_suite, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": id_columns})
        summaries = {}
        for gx_result in outcome.results:
            index = int(gx_result.expectation_config.meta["check"])
            summaries[index] = _summarise(suite.checks[index], expectations[index], gx_result, frame)
        return summaries

    def run(self, suite: SuiteSpec) -> dict[str, Any]:
        """Validate every check of the suite and return its deterministic summary."""
        by_frame: dict[str, list[tuple[int, Check]]] = {}
        for index, check in enumerate(suite.checks):
            by_frame.setdefault(check.frame, []).append((index, check))
        summaries: dict[int, dict[str, Any]] = {}
        for frame_name, indexed in by_frame.items():
            summaries.update(self._validate_frame(suite, frame_name, indexed))
        expectations = [summaries[i] for i in range(len(suite.checks))]
        return {
            "suite": suite.name,
            "success": all(e["success"] for e in expectations),
            "n_rows": int(suite.n_rows),
            "expectations": expectations,
        }


def build_suites(tables: dict[str, pd.DataFrame], params: dict[str, Any],
                 inputs: Inputs = Inputs()) -> list[SuiteSpec]:
    """The four table suites (``rejects`` is optional), then ``paper_cohort`` when asked for."""
    missing = [name for name in SUITE_NAMES if name not in tables]
    if missing:
        raise KeyError(f"validate: tables missing: {missing}")
    suites = [
        severity_images_suite(tables["severity_images"], params, inputs),
        pretrain_images_suite(tables["pretrain_images"], params, inputs, tables.get("rejects")),
        labels_suite(tables["labels"], tables["severity_images"], params),
        split_suite(tables["split"], tables["labels"], params),
    ]
    if inputs.paper_cohort is not None:
        suites.append(paper_cohort_suite(tables["split"], inputs.paper_cohort))
    return suites


def run_all(tables: dict[str, pd.DataFrame], params: dict[str, Any],
            inputs: Inputs = Inputs()) -> dict[str, dict[str, Any]]:
    """Run every suite; per suite a JSON-able result (no raising: the caller writes them first)."""
    validator = Validator()
    return {suite.name: validator.run(suite) for suite in build_suites(tables, params, inputs)}


def failure_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per failed expectation: suite, expectation, column, why, and offending ids."""
    lines = []
    for suite_name, suite in results.items():
        for exp in suite["expectations"]:
            if exp["success"]:
                continue
            where = f" on '{exp['column']}'" if exp["column"] else ""
            head = f"suite '{suite_name}', expectation '{exp['expectation']}'{where} ({exp['description']})"
            if exp["error"] and not exp["unexpected_count"]:
                lines.append(f"{head}: error: {exp['error']}")
                continue
            first = ", ".join(exp["unexpected_examples"][:MESSAGE_EXAMPLES])
            lines.append(f"{head}: {exp['unexpected_count']} unexpected; first: {first}")
    return lines


def raise_if_failed(results: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`ValidationFailed` listing every failed expectation, if any failed."""
    lines = failure_lines(results)
    if lines:
        raise ValidationFailed(lines)
