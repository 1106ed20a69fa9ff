"""Read and write COVIDx label lists (``train_COVIDx8B.txt`` / ``test_COVIDx8B.txt``, the phantom's).

Each line is ``patient_id filename label source``, space separated. The SIRM patient ids contain
a space (``COVID 12 COVID(12).png positive sirm`` has 5 fields), which breaks the usual
``line.split()`` parsing, so the last three fields are taken from the right and everything
before them is the patient id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from stages import schema
from stages.common.io import write_text

COVIDX_LIST_COLUMNS = ["patient_id", "filename", "label", "covidx_source"]


def parse_covidx_line(line: str, path: Path, line_number: int) -> dict[str, str]:
    """Split one non-blank list line into its four fields (ValueError naming file and line)."""
    parts = line.strip().rsplit(None, 3)  # the patient id keeps its inner spaces
    if len(parts) < 4:
        raise ValueError(
            f"{path}:{line_number}: expected 'patient_id filename label source', "
            f"got {len(parts)} field(s): {line.strip()!r}"
        )
    patient_id, filename, label, source = parts
    if label not in schema.COVIDX_CLASSES:
        raise ValueError(
            f"{path}:{line_number}: label {label!r} is not one of {list(schema.COVIDX_CLASSES)}"
        )
    return {"patient_id": patient_id, "filename": filename, "label": label, "covidx_source": source}


def read_covidx_list(path: Path) -> pd.DataFrame:
    """Parse a COVIDx list into columns patient_id, filename, label, covidx_source.

    Blank lines are skipped; any other malformed line raises ValueError naming the file and the
    1-based line number.
    """
    path = Path(path)
    rows = []
    with path.open("r", encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if line.strip():
                rows.append(parse_covidx_line(line, path, line_number))
    return pd.DataFrame(rows, columns=COVIDX_LIST_COLUMNS, dtype=str)


def write_covidx_list(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """Write rows with the columns of :func:`read_covidx_list` as a list, one line each.

    A row that would not read back as written (a space in a file name, an unknown label) is a
    ValueError naming the file and the line it would have been.
    """
    path = Path(path)
    lines = []
    for line_number, row in enumerate(rows, start=1):
        fields = {column: str(row[column]) for column in COVIDX_LIST_COLUMNS}
        line = " ".join(fields.values())
        if parse_covidx_line(line, path, line_number) != fields:
            raise ValueError(f"{path}:{line_number}: {line!r} would not read back as {fields}")
        lines.append(line + "\n")
    return write_text(path, "".join(lines))


def read_not_acquired(path: Path) -> set[tuple[str, str]]:
    """(list, filename) pairs of acquire's ``covidx/missing.txt`` (empty when there is none); each
    line is ``<list> <filename>``, optionally followed by the reason it is missing (``schema.COVIDX_MISSING``
    names only the first two)."""
    path = Path(path)
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {tuple(line.split(" ", 2)[:2]) for line in lines if line}  # type: ignore[misc]
