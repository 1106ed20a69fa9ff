"""Suites for the severity tables: ``severity_images`` (decoded RICORD-style radiographs) and ``labels``.

``severity_images`` checks keys, views, image sizes, sex and capped age, that every processed file
is on disk, and that no identifying DICOM header column (PS3.15 Annex E basic profile, matched by
normalised name on a one-row-per-column table) leaked into the table. ``labels`` checks one airspace
level per labelled image, consistent with its study grade and with the other images of its study,
for an image the image table knows.
"""

from __future__ import annotations

import re
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

from stages import schema
from stages.validation.expectations import (ROW, Check, Frame, Inputs, SuiteSpec, at_least, has_columns,
                                            image_file_checks, in_set, membership_frame, not_empty,
                                            not_null, prepare, required_columns, unique)

DEFAULT_MIN_IMAGE_SIZE = 64

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
    if not has_columns(labels, "image_id", "study_grade", "airspace_level"):
        return pd.DataFrame({"image_id": [], "airspace_level": [], "level_of_grade": []})
    return pd.DataFrame({
        "image_id": labels["image_id"],
        "airspace_level": _as_object(labels["airspace_level"]),
        "level_of_grade": _as_object(labels["study_grade"].map(schema.LEVEL_OF_GRADE)),
    })


def study_levels_frame(labels: pd.DataFrame) -> pd.DataFrame:
    """Per labelled study: how many distinct airspace levels its images carry (must be 1)."""
    if not has_columns(labels, "study_uid", "airspace_level"):
        return pd.DataFrame({"study_uid": [], "n_levels": []})
    known = labels.dropna(subset=["study_uid"])
    counts = known.groupby("study_uid", sort=True)["airspace_level"].nunique()
    return pd.DataFrame({"study_uid": counts.index.astype(str), "n_levels": counts.to_numpy(dtype="int64")})


def severity_images_suite(images: pd.DataFrame, params: dict[str, Any], inputs: Inputs = Inputs()) -> SuiteSpec:
    """The decoded RICORD-style radiographs: keys, views, sizes, sex and capped age, files, and no
    identifying headers."""
    table = prepare(images)
    min_size = int(params.get("min_image_size", DEFAULT_MIN_IMAGE_SIZE))
    identifying = sorted({normalise_column_name(c) for c in IDENTIFYING_DICOM_COLUMNS})
    file_frames, file_checks = image_file_checks(table, inputs)
    return SuiteSpec("severity_images", len(table), {
        "table": Frame(table, ("image_id",)),
        "columns": Frame(columns_frame(images), ("column_name",)),
        **file_frames,
    }, [
        required_columns(schema.SEVERITY_IMAGE_COLUMNS),
        not_empty(),
        Check("columns", gxe.ExpectColumnValuesToNotBeInSet,
              {"column": "normalised_name", "value_set": identifying},
              "identifying DICOM header column present"),
        *not_null("image_id", "patient_id", "view", "rows", "columns"),
        unique("image_id", "image in two rows"),
        # Blank SOP UIDs are missing values, which GE's uniqueness check skips.
        unique("sop_uid", "SOP instance in two rows"),
        in_set("view", schema.VIEWS, "unknown view"),
        at_least("rows", min_size, f"fewer than {min_size} rows"),
        at_least("columns", min_size, f"fewer than {min_size} columns"),
        # Blank sex or age means unknown: GE skips missing values. Ages are capped at 90 (HIPAA).
        in_set("patient_sex", schema.PATIENT_SEXES, "unknown patient sex"),
        Check("table", gxe.ExpectColumnValuesToBeBetween,
              {"column": "patient_age_years", "min_value": 0, "max_value": schema.AGE_CAP_YEARS},
              f"patient age outside 0..{schema.AGE_CAP_YEARS} years"),
        *file_checks,
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
        required_columns(schema.LABEL_COLUMNS),
        not_empty(),
        *not_null("image_id", "patient_id", "study_grade", "airspace_level"),
        unique("image_id", "image labelled twice"),
        in_set("airspace_level", schema.LEVELS, "unknown airspace level"),
        in_set("study_grade", STUDY_GRADES, "unknown study grade"),
        in_set("in_image_table", [True], "labelled image missing from the image table",
               frame="image_join"),
        in_set("study_has_images", [True], "labelled study without images", frame="study_join"),
        in_set("n_levels", [1], "study with images of two airspace levels", frame="study_levels"),
        # Rows with an unknown grade or level are already failed above; compare only known pairs.
        Check("grades", gxe.ExpectColumnPairValuesToBeEqual,
              {"column_A": "airspace_level", "column_B": "level_of_grade",
               "ignore_row_if": "either_value_is_missing"},
              "airspace level disagrees with study grade"),
    ])
