"""The README's results section and ``reports/results.md`` against the metrics they are made from.

Both texts are rendered again from ``metrics/`` (``stages.report``), with every number tracked to
its file and key (``stages.common.tracked``), and compared with the committed text. A differing
number is reported with the file and line it appears on, what it shows, the metrics file and key
it comes from, and the value there::

    README.md:221: shows 91.80 where metrics/models/covidnet_cxr_s/evaluate.json [accuracy] = 0.908046 gives 90.80

Usage::

    python -m stages.checks.reported                 # check; exit 1 naming every difference
    python -m stages.checks.reported --write-readme  # regenerate the README section from metrics/
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from stages.common.io import write_text
from stages.common.params import load_params
from stages.common.tracked import Span, untrack
from stages.reference import paper
from stages.report import load_results, readme_text, results_text

BEGIN = ("<!-- results:begin - generated from metrics/ by `python -m stages.checks.reported --write-readme`; "
         "do not edit by hand: `make test` fails when a number here differs from metrics/ -->")
END = "<!-- results:end -->"
# A sign belongs to a number only when no word precedes it ("-1.1%", not the "-50" of "ResNet-50").
_NUMBER = re.compile(r"(?:(?<!\w)[-+])?\d+(?:,\d{3})*(?:\.\d+)?")


# Table 2's tolerance (issue 3): COVID-Net CXR-S within 5% of the paper's 8.8 M / 11.1 GFLOPs (an
# open reconstruction of an unpublished design); the keras.applications baselines' FLOPs within
# 2%, and their parameter counts within half a unit of the paper's one-decimal figure.
TABLE2_TOLERANCE = {"covidnet_cxr_s": {"parameters": 0.05, "gflops": 0.05},
                    "densenet121": {"parameters": 0.05 / 8.1, "gflops": 0.02},
                    "resnet50": {"parameters": 0.05 / 23.6, "gflops": 0.02}}


def table2_drift(complexity: dict, printed: dict, label: str = "metrics/complexity.json",
                 paper_label: str = "stages/reference/paper.yaml") -> list[str]:
    """Each Table 2 figure of ``complexity`` further from the paper's than its tolerance."""
    problems = []
    for model, tolerance in TABLE2_TOLERANCE.items():
        row, reference = complexity["models"][model], printed[model]
        basis = row["paper"]["parameters_compared"]
        for figure, ours, key, theirs in (
                ("parameters", row["parameters"][basis] / 1e6, f"parameters.{basis}", reference["parameters_m"]),
                ("gflops", row["flops"] / 1e9, "flops", reference["gflops"])):
            difference = ours / theirs - 1
            if abs(difference) > tolerance[figure]:
                problems.append(f"{label} [models.{model}.{key}] gives {ours:.3f} {'M' if figure == 'parameters' else 'G'}"
                                f", {paper_label} [table2.{model}.{'parameters_m' if figure == 'parameters' else 'gflops'}]"
                                f" = {theirs}: {difference:+.2%} is beyond the {tolerance[figure]:.2%} tolerance")
    return problems


@dataclass(frozen=True)
class Paths:
    readme: Path = Path("README.md")
    report: Path = Path("reports/results.md")
    metrics: Path = Path("metrics")
    params: Path = Path("params.yaml")


class SectionError(ValueError):
    pass


def readme_section(text: str, readme: Path) -> tuple[int, int]:
    """Offsets of the generated section's body (between the marker lines) in the README."""
    starts, ends = text.count(BEGIN), text.count(END)
    if starts != 1 or ends != 1:
        raise SectionError(f"{readme}: expected one '{BEGIN[:20]}...' and one '{END}' marker line, "
                           f"found {starts} and {ends}")
    start = text.index(BEGIN) + len(BEGIN) + 1
    end = text.index(END)
    if end < start:
        raise SectionError(f"{readme}: '{END}' comes before the begin marker")
    return start, end


def _origin_at(spans: list[Span], offset: int) -> Span | None:
    return next((span for span in spans if span.start <= offset < span.end), None)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def compare(label: str, committed: str, marked: str, first_line: int = 1) -> list[str]:
    """Every difference between ``committed`` and the freshly rendered ``marked`` text.

    A line that differs only in numbers names, per number, the file and key it comes from and both
    values; any other difference names the line and both texts. ``first_line`` is the committed
    text's first line number in ``label`` (for a section of a larger file).
    """
    expected, spans = untrack(marked)
    if committed == expected:
        return []
    old, new = committed.splitlines(), expected.splitlines()
    new_starts = _line_starts(expected)
    problems: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and a1 - a0 == b1 - b0:
            for i, j in zip(range(a0, a1), range(b0, b1)):
                problems += _line_problems(label, first_line + i, old[i], new[j], new_starts[j], spans)
            continue
        for i in range(a0, a1):
            problems.append(f"{label}:{first_line + i}: line not generated from metrics/: {old[i]!r}")
        for j in range(b0, b1):
            problems.append(f"{label}:{first_line + a0}: missing generated line: {new[j]!r}")
    return problems


def _line_problems(label: str, number: int, shown: str, generated: str, offset: int,
                   spans: list[Span]) -> list[str]:
    shown_numbers = list(_NUMBER.finditer(shown))
    generated_numbers = list(_NUMBER.finditer(generated))
    if _NUMBER.sub("#", shown) != _NUMBER.sub("#", generated) or len(shown_numbers) != len(generated_numbers):
        return [f"{label}:{number}: text differs from what metrics/ give:\n  shown:     {shown}\n"
                f"  generated: {generated}"]
    problems = []
    for was, wants in zip(shown_numbers, generated_numbers):
        if was.group() == wants.group():
            continue
        span = _origin_at(spans, offset + wants.start())
        source = ("the report template (not a metric)" if span is None else
                  f"{span.origin.file} [{span.origin.key}] = {span.origin.value!r}")
        problems.append(f"{label}:{number}: shows {was.group()} where {source} gives {wants.group()}")
    return problems


def _models(paths: Paths) -> dict:
    return load_params(paths.params)["models"]


def check(paths: Paths = Paths()) -> list[str]:
    """Every number of the README section and the report that differs from ``metrics/``, and every
    Table 2 figure that drifted from the paper beyond its tolerance."""
    results = load_results(paths.metrics, _models(paths))
    problems = table2_drift(json.loads((paths.metrics / "complexity.json").read_text()), paper()["table2"],
                            label=str(paths.metrics / "complexity.json"))
    if not paths.report.exists():
        problems.append(f"{paths.report}: not found (run dvc repro)")
    else:
        problems += compare(str(paths.report), paths.report.read_text(), results_text(results))
    readme = paths.readme.read_text()
    try:
        start, end = readme_section(readme, paths.readme)
    except SectionError as error:
        return problems + [str(error)]
    problems += compare(str(paths.readme), readme[start:end], readme_text(results),
                        first_line=readme.count("\n", 0, start) + 1)
    return problems


def write_readme(paths: Paths = Paths()) -> bool:
    """Regenerate the README's results section from ``metrics/``; True when it changed."""
    readme = paths.readme.read_text()
    start, end = readme_section(readme, paths.readme)
    body, _ = untrack(readme_text(load_results(paths.metrics, _models(paths))))
    updated = readme[:start] + body + readme[end:]
    if updated != readme:
        write_text(paths.readme, updated)
    return updated != readme


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=Paths.readme)
    parser.add_argument("--report", type=Path, default=Paths.report)
    parser.add_argument("--metrics", type=Path, default=Paths.metrics)
    parser.add_argument("--params", type=Path, default=Paths.params)
    parser.add_argument("--write-readme", action="store_true", help="regenerate the README's results section")
    args = parser.parse_args(argv)
    paths = Paths(args.readme, args.report, args.metrics, args.params)
    if args.write_readme:
        changed = write_readme(paths)
        print(f"{paths.readme}: results section {'regenerated' if changed else 'already up to date'}")
        return
    problems = check(paths)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(f"{len(problems)} difference(s) between the reported numbers and metrics/")
    print(f"{paths.readme} results section and {paths.report}: every number matches {paths.metrics}/")


if __name__ == "__main__":
    main()
