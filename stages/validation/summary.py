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


def planted_lines(planted: dict[str, Any] | None) -> list[str]:
    """The audit scored against the copies the synthetic source planted (none on real data)."""
    if not planted:
        return []
    lines = ["", f"Planted copies (synthetic source): {planted['found']} of {planted['planted']} found.", "",
             "| kind | planted | found |", "| --- | ---: | ---: |"]
    lines += [f"| {kind} | {c['planted']} | {c['found']} |" for kind, c in planted["by_kind"].items()]
    for miss in planted["missed"]:
        lines.append(f"\nMissed: `{miss['filename']}` ({miss['kind']}), a copy of {miss['severity_image_id']}.")
    return lines


def leakage_lines(summary: dict[str, Any]) -> list[str]:
    splits = "/".join(summary["splits_guarded"])
    audited = ", ".join(f"{n} {s}" for s, n in summary["severity_images_audited_by_split"].items())
    lines = [
        f"Severity images audited: {summary['severity_images_audited']} ({audited}); pretraining images "
        f"audited: {summary['pretrain_images_audited']} (mode `{summary['mode']}`, perceptual hashes "
        f"within {summary['phash_max_distance']} bits count as one image; each severity image is "
        f"hashed whole, cut to COVID-Net's crop box and mirrored). Matches of {splits} images are "
        f"leakage; matches of train images are recorded only.",
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
        "exclude": f"{summary['excluded_pretrain_images']} images of the pretraining train list matched a "
                   f"{splits} image and were excluded; pretraining uses "
                   f"{summary['pretrain_train_images_after_audit']} train-list images.",
        "report": "Matches are recorded only (`validate.leakage: report`); pretraining uses every image.",
        "fail": "Any match of a {splits} image in the pretraining train list stops the pipeline "
                "(`validate.leakage: fail`).".format(splits=splits),
    }[summary["mode"]]
    nearest = summary["nearest_unmatched_phash_distance"]
    lines += ["", action]
    if nearest is not None:
        lines += ["", f"The closest severity/pretraining pair that did not match is {nearest} bits apart "
                      f"(threshold {summary['phash_max_distance']}; measured on real radiographs in "
                      f"`docs/leakage_threshold.md`)."]
    lines += planted_lines(summary.get("planted"))
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
    cross = summary["cross_split_matches"]
    lines += ["", f"Severity val/test images against severity train images (patient id, exact pixels, "
                  f"perceptual hashes): {summary['cross_split_pairs']} matched pairs."]
    if cross:
        lines += ["", "| image | split | train image | methods | phash distance |", "| --- | --- | --- | --- | ---: |"]
        lines += [f"| {m['image_id']} | {m['split']} | {m['train_image_id']} | {m['methods']} | "
                  f"{'' if m['phash_distance'] is None else m['phash_distance']} |" for m in cross[:MAX_MATCH_ROWS]]
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
