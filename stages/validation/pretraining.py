"""Suite for the pretraining table ``pretrain_images`` (the COVIDx-style images the backbone learns from).

Checks keys, COVIDx labels and list names, that every processed file is on disk and, given the raw
folder, that every file named in a COVIDx list is accounted for: ingested as a row of the table,
rejected with a reason in ``rejects.csv``, or reported not acquired by ``acquire``. A listed file
that is none of these vanished silently, and fails the suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stages import schema
from stages.sources.covidx import read_covidx_list, read_not_acquired
from stages.validation.expectations import (Frame, Inputs, SuiteSpec, image_file_checks, in_set, not_empty,
                                            not_null, prepare, required_columns, unique)

# How a file named in a COVIDx list may be accounted for; anything else vanished silently.
LISTED_STATUSES = ("ingested", "rejected", "not_acquired")
COVIDX_LISTS = tuple(sorted(schema.COVIDX_LISTS))  # test, train


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


def pretrain_images_suite(images: pd.DataFrame, params: dict[str, Any], inputs: Inputs = Inputs(),
                          rejects: pd.DataFrame | None = None) -> SuiteSpec:
    """The COVIDx-style pretraining images: keys, labels, lists, and every listed file accounted for."""
    table = prepare(images)
    frames, checks = image_file_checks(table, inputs)
    if inputs.raw is not None:
        rejects = rejects if rejects is not None else pd.DataFrame(columns=schema.REJECT_COLUMNS)
        frames["listed"] = Frame(listed_frame(table, rejects, inputs.raw), ("list", "filename"))
        checks.append(in_set("status", LISTED_STATUSES,
                             "listed file neither ingested nor reported rejected or not acquired",
                             frame="listed"))
    return SuiteSpec("pretrain_images", len(table), {"table": Frame(table, ("image_id",)), **frames}, [
        required_columns(schema.PRETRAIN_IMAGE_COLUMNS),
        not_empty(),
        *not_null("image_id", "filename", "label", "list"),
        unique("image_id", "image in two rows"),
        unique("filename", "file in two rows"),
        in_set("label", schema.COVIDX_CLASSES, "unknown COVIDx label"),
        in_set("list", COVIDX_LISTS, "unknown COVIDx list"),
        *checks,
    ])
