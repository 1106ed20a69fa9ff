"""The mutation-score benchmark's committed output (metrics/bench_mutation.json) has the right
shape, covers every module of benchmarks/mutation.py with that module's own test files, and each
surviving mutant it lists is accounted for in docs/mutation.md. The mutation run itself (tens of
minutes) is not part of the test suite: `nice -n 10 python benchmarks/mutation.py`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import mutation  # noqa: E402

BENCH = REPO / "metrics" / "bench_mutation.json"
COUNTS = ("killed", "survived", "timeout", "no_tests")


@pytest.fixture(scope="module")
def bench() -> dict:
    return json.loads(BENCH.read_text())


def test_every_module_is_benchmarked_with_its_own_fast_tests(bench):
    assert set(bench["modules"]) == set(mutation.MODULES)
    for name, module in mutation.MODULES.items():
        entry = bench["modules"][name]
        assert entry["paths"] == list(module.paths) and entry["tests"] == list(module.tests), name
        for test in module.tests:
            path = REPO / test.split("::")[0]
            assert path.is_file(), test
            assert path.name != "test_reproduce.py" and "pytestmark = pytest.mark.slow" not in path.read_text(), test


def test_counts_add_up(bench):
    assert bench["goal_killed_fraction"] == mutation.GOAL == 0.9
    assert bench["tool"].startswith("mutmut ") and bench["command"] == "nice -n 10 python benchmarks/mutation.py"
    for name, entry in bench["modules"].items():
        assert all(isinstance(entry[k], int) and entry[k] >= 0 for k in (*COUNTS, "mutants")), name
        assert sum(entry[k] for k in COUNTS) + sum(entry["other"].values()) == entry["mutants"] > 0, name
        assert entry["killed_fraction"] == round(entry["killed"] / entry["mutants"], 4), name
        assert entry["meets_goal"] == (entry["killed"] / entry["mutants"] >= mutation.GOAL), name
        assert len(entry["not_killed"]) == entry["mutants"] - entry["killed"], name
        assert entry["wall_seconds"] > 0


def test_the_goal_holds_for_every_module(bench):
    below = {name: entry["killed_fraction"] for name, entry in bench["modules"].items() if not entry["meets_goal"]}
    assert not below, f"below {mutation.GOAL:.0%} killed: {below}"


def test_every_mutant_left_alive_is_accounted_for_in_the_docs(bench):
    docs = (REPO / "docs" / "mutation.md").read_text()
    missing = [m for entry in bench["modules"].values() for m in entry["not_killed"] if f"`{m}`" not in docs]
    assert not missing, f"docs/mutation.md does not list {len(missing)} surviving mutant(s): {missing[:5]}"


def test_mutmut_settings_per_module():
    settings = mutation.mutmut_settings(mutation.MODULES["fit"])
    assert 'only_mutate = ["stages/training/fit.py"]' in settings
    assert '"tests/test_numerics.py::test_validation_scores_by_hand"' in settings
    assert 'do_not_mutate_patterns = ["^\\\\s*print\\\\("]' in settings
    assert mutation.statuses("    stages.a.x_f__mutmut_1: killed\n    stages.a.x_g__mutmut_2: no tests\nnoise\n") == {
        "stages.a.x_f__mutmut_1": "killed", "stages.a.x_g__mutmut_2": "no tests"}
