"""Shared building blocks of the validation suites: the suite model, table preparation, check helpers.

A suite (:class:`SuiteSpec`) is a set of named :class:`Frame` objects (the table itself, or a small
derived table such as one row per image of a join) and the :class:`Check` objects to run on them,
each a Great Expectations 1.x expectation class with its arguments and the reason it exists.
:class:`Inputs` holds what the suites check besides the tables. This module also prepares a table
for GE (:func:`prepare`: blanks become missing values, rows get a number to name id-less rows),
builds the derived tables more than one suite uses (:func:`membership_frame`, :func:`files_frame`)
and provides the short helpers the suite modules spell their common expectations with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import great_expectations.expectations as gxe
import pandas as pd

# Row number in the table as given; names a row whose id itself is missing.
ROW = "__row__"


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


def has_columns(table: pd.DataFrame, *columns: str) -> bool:
    """Whether the table has every one of the columns (a derived table needs them all)."""
    return all(c in table.columns for c in columns)


def _ids(table: pd.DataFrame, column: str = "image_id") -> list[str]:
    """Sorted distinct non-missing ids of a column (empty when the column is absent)."""
    if column not in table.columns:
        return []
    return sorted({str(v) for v in table[column].dropna()})


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


def files_frame(table: pd.DataFrame, images: Path) -> pd.DataFrame:
    """Per image: whether its processed file is in the image folder."""
    if not has_columns(table, "image_id", "image_path"):
        return pd.DataFrame({"image_id": [], "image_file_present": []})
    known = table.dropna(subset=["image_id"])
    present = [isinstance(p, str) and (images / p).is_file() for p in known["image_path"]]
    return pd.DataFrame({"image_id": known["image_id"].astype(str).to_numpy(), "image_file_present": present})


# Short spellings of the expectations every table suite uses ("table" is the table itself).
def required_columns(columns: list[str]) -> Check:
    # exact_match=False: every required column must be there, extra columns are allowed.
    return Check("table", gxe.ExpectTableColumnsToMatchSet,
                 {"column_set": list(columns), "exact_match": False}, "required columns missing")


def not_empty() -> Check:
    # Every other check passes vacuously on an empty table.
    return Check("table", gxe.ExpectTableRowCountToBeBetween, {"min_value": 1}, "table is empty")


def not_null(*columns: str) -> list[Check]:
    return [Check("table", gxe.ExpectColumnValuesToNotBeNull, {"column": c}, f"missing {c}")
            for c in columns]


def unique(column: str, description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeUnique, {"column": column}, description)


def in_set(column: str, values: Iterable[Any], description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeInSet, {"column": column, "value_set": list(values)},
                 description)


def at_least(column: str, minimum: int, description: str, frame: str = "table") -> Check:
    return Check(frame, gxe.ExpectColumnValuesToBeBetween, {"column": column, "min_value": minimum},
                 description)


def image_file_checks(table: pd.DataFrame, inputs: Inputs) -> tuple[dict[str, Frame], list[Check]]:
    """The ``files`` frame and its check that every processed file exists; none without ``images``."""
    if inputs.images is None:
        return {}, []
    return ({"files": Frame(files_frame(table, inputs.images), ("image_id",))},
            [in_set("image_file_present", [True], "processed image file missing", frame="files")])
