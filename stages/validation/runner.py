"""Running a suite with Great Expectations, and the deterministic, id-only summary of its results.

:class:`Validator` validates each :class:`~stages.validation.expectations.SuiteSpec` frame by frame
in one ephemeral GE context on pandas batches, and turns every expectation's outcome into a record
that holds no timestamps, run ids, versions or random ids, so identical tables give byte-identical
JSON; offending rows are named by their ids (``image_id``, ``patient_id``...), never by pixel data,
and long value sets by their size and hash. :func:`failure_lines` and :class:`ValidationFailed`
turn failed expectations into one readable line each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from stages.validation.expectations import ROW, Check, Frame, SuiteSpec

MAX_EXAMPLES = 10  # offending ids kept per expectation in the JSON
MESSAGE_EXAMPLES = 5  # ... and in the exception message
MAX_LISTED_VALUES = 50  # a longer value set is summarised (size and hash) to keep the JSON small


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
