"""``reports/validation.md``: the validation suites and the leakage audit, readable.

Built only from the deterministic results (:func:`stages.validation.suites.run_all`) and the audit
summary (:mod:`stages.validation.leakage`), so it changes only when they do.
"""

from __future__ import annotations

from typing import Any

from stages import schema

MAX_MATCH_ROWS = 20  # matched pairs listed in the report; metrics/leakage.json holds them all


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def suite_table(result: dict[str, Any]) -> list[str]:
    lines = ["| | expectation | column | why it exists | unexpected | first offending ids |",
             "| --- | --- | --- | --- | ---: | --- |"]
    for exp in result["expectations"]:
        mark = "pass" if exp["success"] else "**FAIL**"
        first = ", ".join(exp["unexpected_examples"][:3]) or (exp["error"] or "")
        lines.append(f"| {mark} | `{exp['expectation']}` | {_cell(exp['column'] or '')} | "
                     f"{_cell(exp['description'])} | {exp['unexpected_count']} | {_cell(first)} |")
    return lines


def leakage_lines(summary: dict[str, Any]) -> list[str]:
    splits = "/".join(summary["splits_audited"])
    lines = [
        f"Severity {splits} images audited: {summary['severity_images_audited']}; pretraining images "
        f"audited: {summary['pretrain_images_audited']} (mode `{summary['mode']}`, perceptual hashes "
        f"within {summary['phash_max_distance']} bits count as one image).",
        "",
        "| method | matched pairs | severity images | pretraining images |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, counts in summary["by_method"].items():
        lines.append(f"| {method} | {counts['pairs']} | {counts['severity_images']} | "
                     f"{counts['pretrain_images']} |")
    lines.append(f"| any | {summary['matched_pairs']} | {summary['matched_severity_images']} | "
                 f"{summary['matched_pretrain_images']} |")
    action = {
        "exclude": f"{summary['excluded_pretrain_images']} matched images of the pretraining train list "
                   f"were excluded; pretraining uses {summary['pretrain_train_images_after_audit']} "
                   f"train-list images.",
        "report": "Matches are recorded only (`validate.leakage: report`); pretraining uses every image.",
        "fail": "Any match in the pretraining train list stops the pipeline (`validate.leakage: fail`).",
    }[summary["mode"]]
    lines += ["", action]
    matches = summary["matches"]
    if matches:
        lines += ["", "| severity image | split | pretraining image | list | methods | phash distance |",
                  "| --- | --- | --- | --- | --- | ---: |"]
        for match in matches[:MAX_MATCH_ROWS]:
            distance = "" if match["phash_distance"] is None else match["phash_distance"]
            lines.append(f"| {match['severity_image_id']} | {match['severity_split']} | "
                         f"{match['pretrain_image_id']} | {match['pretrain_list']} | "
                         f"{match['methods']} | {distance} |")
        if len(matches) > MAX_MATCH_ROWS:
            lines.append(f"\n{len(matches) - MAX_MATCH_ROWS} more pairs in `metrics/leakage.json`.")
    return lines


def render(results: dict[str, dict[str, Any]], leakage: dict[str, Any], source: str) -> str:
    """The whole markdown page."""
    title = schema.SOURCE_TITLES.get(source, source)
    passed = all(r["success"] for r in results.values())
    lines = [f"# Data validation - {title}", "",
             "Written by `python -m stages.validate` (the `validate` stage of `dvc repro`) from "
             "`metrics/validation/*.json` and `metrics/leakage.json`.", "",
             "| suite | rows | expectations | failed |", "| --- | ---: | ---: | ---: |"]
    for name, result in results.items():
        failed = sum(not e["success"] for e in result["expectations"])
        lines.append(f"| {name} | {result['n_rows']} | {len(result['expectations'])} | {failed} |")
    lines += ["", "All suites pass." if passed else "**Validation failed**; `dvc repro` stopped here.", ""]
    for name, result in results.items():
        lines += [f"## Suite `{name}` - {title}", "", *suite_table(result), ""]
    lines += [f"## Leakage audit - {title}", "", *leakage_lines(leakage), ""]
    return "\n".join(lines)
