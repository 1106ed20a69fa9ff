"""The README's results section and reports/results.md say what metrics/ say, and a tampered
number or metric fails with the file, the key and both values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.checks import reported, reproduce
from stages.checks.reported import Paths, SectionError, check, readme_section, write_readme
from stages.common.tracked import TrackedFloat, TrackedInt, track, untrack

REPO = Path(__file__).resolve().parents[1]
EVALUATE = "metrics/models/{}/evaluate.json"


def _paths(root: Path) -> Paths:
    return Paths(readme=root / "README.md", report=root / "reports/results.md", metrics=root / "metrics",
                 params=root / "params.yaml")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the committed README, report, metrics and params; run from it, so labels are relative."""
    for name in ("README.md", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    (tmp_path / "reports").mkdir()
    shutil.copy(REPO / "reports/results.md", tmp_path / "reports/results.md")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _metric(root: Path, model: str, key: str) -> float:
    return json.loads((root / EVALUATE.format(model)).read_text())[key]


# ---- tracked numbers ------------------------------------------------------------------------

def test_tracked_numbers_keep_their_origin_through_arithmetic_and_formatting():
    data = track({"a": {"accuracy": 0.9080459770114943, "counts": [3, 8_704_034]}, "fits": True, "name": "x"},
                 "metrics/m.json")
    assert data["fits"] is True and data["name"] == "x"  # booleans and strings are left alone
    accuracy, count = data["a"]["accuracy"], data["a"]["counts"][1]
    assert isinstance(100 * accuracy, TrackedFloat) and isinstance(count / 1e6, TrackedFloat)
    assert isinstance(data["a"]["counts"][0] + 1, TrackedInt)
    assert str(accuracy) == "0.9080459770114943"  # figures and logs see plain numbers
    text, spans = untrack(f"acc {100 * accuracy:.2f}%, {count / 1e6:.2f} M, {count:,} parameters")
    assert text == "acc 90.80%, 8.70 M, 8,704,034 parameters"
    assert [(text[s.start:s.end], s.origin.key, s.origin.value) for s in spans] == [
        ("90.80", "a.accuracy", 0.9080459770114943), ("8.70", "a.counts[1]", 8_704_034),
        ("8,704,034", "a.counts[1]", 8_704_034)]
    assert {s.origin.file for s in spans} == {"metrics/m.json"}


# ---- README section and report against metrics/ ---------------------------------------------

def test_committed_readme_section_and_report_match_the_committed_metrics(project):
    assert check(_paths(Path("."))) == []


def test_a_tampered_readme_number_is_named_with_file_key_and_both_values(project):
    accuracy = _metric(project, "covidnet_cxr_s", "accuracy")
    readme = (project / "README.md").read_text()
    start, end = readme_section(readme, Path("README.md"))
    shown = f"| COVID-Net CXR-S | {100 * accuracy:.2f}%"
    assert readme[start:end].count(shown) == 1
    tampered = f"| COVID-Net CXR-S | {100 * accuracy + 1:.2f}%"
    (project / "README.md").write_text(readme[:start] + readme[start:end].replace(shown, tampered) + readme[end:])
    line = readme.count("\n", 0, readme.index(shown, start)) + 1
    assert check(_paths(Path("."))) == [
        f"README.md:{line}: shows {100 * accuracy + 1:.2f} where {EVALUATE.format('covidnet_cxr_s')} "
        f"[accuracy] = {accuracy!r} gives {100 * accuracy:.2f}"]
    with pytest.raises(SystemExit, match="1 difference"):
        reported.main([])


def test_a_tampered_metric_is_named_in_the_readme_and_the_report(project):
    path = project / EVALUATE.format("resnet50")
    evaluation = json.loads(path.read_text())
    committed_auc = evaluation["roc_auc"]
    evaluation["roc_auc"] = round(committed_auc - 0.05, 6)
    path.write_text(json.dumps(evaluation))
    problems = check(_paths(Path(".")))
    expected = (f"shows {committed_auc:.3f} where {EVALUATE.format('resnet50')} [roc_auc] = "
                f"{evaluation['roc_auc']!r} gives {evaluation['roc_auc']:.3f}")
    assert [p.split(":", 1)[0] for p in problems] == ["reports/results.md", "README.md"]
    assert all(p.endswith(expected) for p in problems), problems


def test_a_paper_figure_is_traced_to_paper_yaml(project):
    readme = (project / "README.md").read_text()
    start, end = readme_section(readme, Path("README.md"))
    section = readme[start:end].replace("| 92.66% |", "| 93.66% |")
    (project / "README.md").write_text(readme[:start] + section + readme[end:])
    [problem] = check(_paths(Path(".")))
    assert problem.endswith("shows 93.66 where stages/reference/paper.yaml [table3.covidnet_cxr_s.accuracy] = "
                            "92.66 gives 92.66")


def test_edited_words_and_removed_lines_are_reported_too(project):
    readme = (project / "README.md").read_text()
    start, end = readme_section(readme, Path("README.md"))
    section = readme[start:end].replace("| network |", "| model |", 1).replace("| ResNet-50 |", "| ResNet-101 |", 1)
    lines = section.split("\n")
    lines.remove("| --- | --- | --- | --- | --- |")  # Table 2's rule line
    section = "\n".join(lines)
    (project / "README.md").write_text(readme[:start] + section + readme[end:])
    problems = check(_paths(Path(".")))
    assert any("text differs" in p and "| model |" in p for p in problems), problems
    assert any(p.endswith("shows 101 where the report template (not a metric) gives 50") for p in problems), problems
    assert any("missing generated line: '| --- | --- | --- | --- | --- |'" in p for p in problems), problems


def test_section_markers_are_required_and_the_section_regenerates(project):
    readme = (project / "README.md").read_text()
    start, end = readme_section(readme, Path("README.md"))
    (project / "README.md").write_text(readme[:start] + "stale\n" + readme[end:])
    assert check(_paths(Path(".")))  # stale section fails ...
    assert write_readme(_paths(Path(".")))  # ... and is regenerated from metrics/
    assert (project / "README.md").read_text() == readme and check(_paths(Path("."))) == []
    (project / "README.md").write_text(readme.replace(reported.END, ""))
    with pytest.raises(SectionError, match="README.md: expected one .* found 1 and 0"):
        readme_section((project / "README.md").read_text(), Path("README.md"))


# ---- committed outputs against a reproduction (the comparison itself; the run is in test_reproduce)

def test_a_tampered_committed_metric_is_named_against_the_reproduction(tmp_path):
    committed, reproduced = tmp_path / "committed", tmp_path / "reproduced"
    name = EVALUATE.format("covidnet_cxr_s")
    for root in (committed, reproduced):
        (root / name).parent.mkdir(parents=True)
        shutil.copy(REPO / name, root / name)
    evaluation = json.loads((committed / name).read_text())
    reproduced_value = evaluation["confidence_intervals"]["intervals"]["accuracy"]["low"]
    evaluation["confidence_intervals"]["intervals"]["accuracy"]["low"] = 0.5
    (committed / name).write_text(json.dumps(evaluation))
    assert reproduce.compare_file(name, committed / name, reproduced / name) == [
        f"{name} [confidence_intervals.intervals.accuracy.low]: committed 0.5, reproduced {reproduced_value!r}"]
    assert reproduce.compare_file(name, reproduced / name, reproduced / name) == []


def test_lock_and_file_comparison_name_what_differs(tmp_path):
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    changed = yaml.safe_load((REPO / "dvc.lock").read_text())
    out = changed["stages"]["finetune@resnet50"]["outs"][0]
    was, out["md5"] = out["md5"], "0" * 32
    assert reproduce.compare_lock(lock, changed) == [
        f"dvc.lock [finetune@resnet50.outs.{out['path']}.md5]: committed {was!r}, reproduced {'0' * 32!r}"]
    assert reproduce.compare_lock(lock, lock) == []
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,y\n1,3\n")
    assert reproduce.compare_file("a.csv", tmp_path / "a.csv", tmp_path / "b.csv") == [
        "a.csv:2: committed '1,2', reproduced '1,3'"]
    (tmp_path / "a.png").write_bytes(b"\x89PNG1")
    (tmp_path / "b.png").write_bytes(b"\x89PNG2")
    assert "bytes differ" in reproduce.compare_file("a.png", tmp_path / "a.png", tmp_path / "b.png")[0]
    assert reproduce.compare_file("a.csv", tmp_path / "a.csv", tmp_path / "missing.csv") == [
        "a.csv: committed, but the reproduction did not write it"]


def test_committed_outputs_are_the_git_files_the_lock_lists():
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    files = ["README.md", "metrics/cohort.json", "metrics/bench_pipeline.json", "metrics/validation/split.json",
             "reports/results.md", "stages/report.py"]
    # Benchmarks write to metrics/ too, but no stage does: they are not pipeline outputs.
    assert reproduce.committed_outputs(lock, files) == ["metrics/cohort.json", "metrics/validation/split.json",
                                                        "reports/results.md"]
