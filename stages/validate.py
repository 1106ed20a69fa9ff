"""Stage ``validate``: a Great Expectations gate over the pipeline's tables.

    python -m stages.validate --tables data/tables --out metrics/validation --params params.yaml

Runs the suites of :mod:`stages.validation.suites` on ``severity_images.csv``,
``pretrain_images.csv``, ``labels.csv`` and ``split.csv``, writes one deterministic
``<suite>.json`` per suite, and exits non-zero when any expectation fails, so ``dvc repro`` stops
before training on bad data. All results are written first, so a failure can be inspected.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from stages.common.io import read_table, write_json
from stages.common.params import load_params
from stages.validation.suites import SUITE_NAMES, ValidationFailed, raise_if_failed, run_all

# Integer columns of the tables; everything else (ids above all) stays text.
NUMERIC_COLUMNS = ("rows", "columns", "bits_stored", "n_readers", "airspace_level")


def as_int_column(column: pd.Series) -> pd.Series:
    """Integers where every present value is one; otherwise the text as read.

    Keeping unparseable text (rather than coercing it to NaN) lets the value-set checks name the
    bad value; blanks become missing values, which the not-null checks report.
    """
    if pd.api.types.is_integer_dtype(column):
        return column
    text = column.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    missing = text.isna() | text.eq("")
    parsed = pd.to_numeric(text.mask(missing), errors="coerce")
    if (parsed.isna() & ~missing).any() or (parsed.dropna() % 1 != 0).any():
        return column
    if missing.any():
        # Object ints with None: GE copes with these, not with pandas' nullable Int64 (pd.NA).
        return pd.Series([None if m else int(v) for v, m in zip(parsed, missing)],
                         index=column.index, dtype=object, name=column.name)
    return parsed.astype("int64")


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The four tables, ids as strings (``00123`` stays ``00123``) and counts as integers."""
    tables = {}
    for name in SUITE_NAMES:
        table = read_table(folder / f"{name}.csv")
        for column in NUMERIC_COLUMNS:
            if column in table.columns:
                table[column] = as_int_column(table[column])
        tables[name] = table
    return tables


def validate_params(path: Path) -> dict[str, Any]:
    """The ``validate`` section of the parameters (preset applied; empty when absent)."""
    return dict(load_params(path).get("validate") or {})


def summary_line(result: dict[str, Any]) -> str:
    """``validate: split ok (14 expectations, 24 rows)`` or ``... FAILED (1 of 14 ...)``."""
    n = len(result["expectations"])
    failed = sum(not e["success"] for e in result["expectations"])
    status = "ok (" if result["success"] else f"FAILED ({failed} of "
    return f"validate: {result['suite']} {status}{n} expectations, {result['n_rows']} rows)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=Path, default=Path("data/tables"))
    parser.add_argument("--out", type=Path, default=Path("metrics/validation"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    results = run_all(read_tables(args.tables), validate_params(args.params))
    for name, result in results.items():
        write_json(args.out / f"{name}.json", result)
        print(summary_line(result))
    try:
        raise_if_failed(results)
    except ValidationFailed as err:
        # SystemExit with a message prints it to stderr and exits 1: dvc repro stops here.
        raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
