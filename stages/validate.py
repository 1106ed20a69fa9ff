"""Stage ``validate``: a Great Expectations gate over the pipeline's tables, and the leakage audit.

    python -m stages.validate --tables data/tables --images data/images --raw data/raw \
        --out metrics/validation --leakage metrics/leakage.json --report reports/validation.md

Runs the suites of :mod:`stages.validation.suites` on ``severity_images.csv``,
``pretrain_images.csv``, ``labels.csv`` and ``split.csv`` (and ``paper_cohort`` when
``data.source: ricord`` with ``split.mode: reference``), then the leakage audit of
:mod:`stages.validation.leakage`. Writes one deterministic ``<suite>.json`` per suite,
``leakage.json`` and a readable summary, all before deciding, so a failure can be inspected. When
every check passes it writes ``pretrain_audited.csv``, the only pretraining table the pretraining
stage reads; otherwise it removes it and exits non-zero, so ``dvc repro`` stops before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stages import schema
from stages.common.cli import stage_arguments
from stages.common.io import read_table, write_csv, write_json, write_text
from stages.reference import paper
from stages.validation import leakage, summary
from stages.validation.suites import SUITE_NAMES, Inputs, ValidationFailed, failure_lines, run_all

# Integer columns of the tables; everything else (ids above all) stays text.
NUMERIC_COLUMNS = ("rows", "columns", "bits_stored", "n_readers", "airspace_level", "patient_age_years")


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
    """The four tables (and ``rejects`` when present), ids as strings (``00123`` stays ``00123``)
    and counts as integers."""
    tables = {}
    names = list(SUITE_NAMES) + (["rejects"] if (folder / "rejects.csv").exists() else [])
    for name in names:
        table = read_table(folder / f"{name}.csv")
        for column in NUMERIC_COLUMNS:
            if column in table.columns:
                table[column] = as_int_column(table[column])
        tables[name] = table
    return tables


def wants_paper_cohort(params: dict[str, Any]) -> bool:
    """The run means to reproduce the paper's cohort: real RICORD with the published split."""
    return (params.get("data", {}).get("source") == "ricord"
            and (params.get("split") or {}).get("mode") == "reference")


def summary_line(result: dict[str, Any]) -> str:
    """``validate: split ok (14 expectations, 24 rows)`` or ``... FAILED (1 of 14 ...)``."""
    n = len(result["expectations"])
    failed = sum(not e["success"] for e in result["expectations"])
    status = "ok (" if result["success"] else f"FAILED ({failed} of "
    return f"validate: {result['suite']} {status}{n} expectations, {result['n_rows']} rows)"


def leakage_line(audit: dict[str, Any]) -> str:
    planted = audit.get("planted")
    found = f"; planted copies found: {planted['found']} of {planted['planted']}" if planted else ""
    return (f"validate: leakage audit ({audit['mode']}): {audit['matched_severity_images']} of "
            f"{audit['severity_images_audited']} severity images found in pretraining "
            f"({audit['matched_guarded_severity_images']} of them {'/'.join(audit['splits_guarded'])}), "
            f"{audit['excluded_pretrain_images']} pretraining images excluded, "
            f"{audit['cross_split_pairs']} val/test-train pairs{found}")


def leakage_audit(tables: dict[str, pd.DataFrame], raw: Path, settings: leakage.AuditSettings) -> leakage.AuditResult:
    """The audit, scored against the synthetic source's planted copies when there are any."""
    try:
        result = leakage.audit(tables["split"], tables["severity_images"], tables["pretrain_images"], settings)
    except leakage.MissingHashes as err:
        raise SystemExit(f"validate: {err}") from None
    planted_path = raw / schema.PLANTED_LEAKS
    if planted_path.exists():
        planted = read_table(planted_path)
        if len(planted):
            result.summary["planted"] = leakage.score_planted(
                planted, result.matches, tables["severity_images"], tables["pretrain_images"])
    return result


def run(tables_dir: Path, images: Path, raw: Path, out: Path, leakage_path: Path, report: Path,
        params: dict[str, Any]) -> dict[str, Any]:
    """Validate, audit and write every output; raise SystemExit naming each failure."""
    settings = params.get("validate") or {}
    try:
        audit_settings = leakage.AuditSettings.from_params(settings)
    except ValueError as err:
        raise SystemExit(f"validate: {err}") from None
    tables = read_tables(tables_dir)
    inputs = Inputs(images=images, raw=raw,
                    paper_cohort=paper()["cohort"] if wants_paper_cohort(params) else None)
    results = run_all(tables, settings, inputs)
    audit = leakage_audit(tables, raw, audit_settings)
    for stale in out.glob("*.json") if out.is_dir() else []:
        if stale.stem not in results:  # e.g. paper_cohort.json of an earlier ricord run
            stale.unlink()
    for name, result in results.items():
        write_json(out / f"{name}.json", result)
        print(summary_line(result))
    write_json(leakage_path, audit.summary)
    print(leakage_line(audit.summary))
    write_text(report, summary.render(results, audit.summary, params.get("data", {}).get("source", "")))
    audited_path = tables_dir / schema.PRETRAIN_AUDITED_TABLE
    failures = failure_lines(results)
    message = leakage.failure_message(audit)
    if message:
        failures.append(message)
    if failures:
        # No audited table, no pretraining: a stale one must not outlive a failed gate.
        audited_path.unlink(missing_ok=True)
        raise SystemExit(str(ValidationFailed(failures)))
    write_csv(audited_path, audit.audited_pretrain, schema.PRETRAIN_IMAGE_COLUMNS)
    return audit.summary


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(__doc__, argv, tables=Path("data/tables"), images=Path("data/images"),
                                   raw=Path("data/raw"), out=Path("metrics/validation"),
                                   leakage=Path("metrics/leakage.json"), report=Path("reports/validation.md"))
    run(args.tables, args.images, args.raw, args.out, args.leakage, args.report, params)


if __name__ == "__main__":
    main()
