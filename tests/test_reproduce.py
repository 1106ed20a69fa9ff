"""The committed numbers are the ones the code produces: a clean ``dvc repro`` of the embedded
default (two stages at a time, as ``make repro`` runs it), from a copy of the repository with no
data, no models and no DVC cache, gives every committed metric, plot, report and ``dvc.lock``
entry: exactly on the reference platform, within the measured seed tolerance elsewhere
(``stages.checks.reproduce``; the assertion message names the mode and why). Then the worked
example of ``docs/comparing.md`` runs on that copy, command for command.

It trains all three models from scratch, as ``make repro`` does on a fresh clone, so it is its own
tier: ``make check-reproduction`` runs it (``make test`` leaves it out to stay within 10 minutes) and
``.ci/run`` runs both.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from stages.checks.reported import Paths, check, write_readme
from stages.checks.reproduce import clean_copy, compare_tree, dvc, mode, repro_as_make_does, run, tolerances_for
from tests.local_s3 import assert_arrived, round_trip, s3_server

# The whole pipeline from a clean copy (about 10 minutes): make check-reproduction.
pytestmark = [pytest.mark.slow, pytest.mark.reproduction]

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "comparing.md"
MODELS = ("covidnet_cxr_s", "densenet121", "resnet50")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> tuple[Path, list[str]]:
    workdir = tmp_path_factory.mktemp("reproduce")
    files = clean_copy(REPO, workdir)
    assert not (workdir / "data").exists() and not (workdir / "models").exists()
    # As make repro runs it: two stages at a time (stages/parallel.py); the no-op test below then
    # checks that a plain serial dvc repro finds nothing left to do.
    repro_as_make_does(workdir)
    return workdir, files


def test_committed_outputs_and_lock_match_a_clean_repro(reproduced):
    workdir, files = reproduced
    check_mode, reasons = mode(REPO)
    tolerances = tolerances_for(REPO) if check_mode == "tolerance" else None
    problems = compare_tree(REPO, workdir, files, check_mode, tolerances)
    assert not problems, (f"committed values differ from a clean dvc repro ({check_mode} mode"
                          + (f": {'; '.join(reasons)}" if reasons else "") + "):\n" + "\n".join(problems))


def test_the_reproduction_is_a_no_op_the_second_time(reproduced):
    workdir, _ = reproduced
    assert "Running stage" not in dvc(workdir, "repro").stdout
    assert "Data and pipelines are up to date" in dvc(workdir, "status").stdout


def test_a_dvc_remote_carries_the_reproduction_to_a_fresh_clone(reproduced, tmp_path):
    """The README's DVC remote, on an S3-compatible server started on 127.0.0.1: every output of the
    reproduction reaches a fresh clone by ``dvc pull``, and nothing runs there (``tests/local_s3.py``;
    ``tests/test_remote.py`` does the same with a workspace's own outputs)."""
    workdir, _ = reproduced
    with s3_server() as endpoint:
        trip = round_trip(workdir, tmp_path, endpoint)
    assert_arrived(trip)
    shutil.rmtree(trip.clone)  # 2.4 GB (cache and workspace); kept when the test fails


def test_reported_numbers_of_the_reproduction_match_its_metrics(reproduced):
    workdir, _ = reproduced
    paths = Paths(workdir / "README.md", workdir / "reports/results.md", workdir / "metrics", workdir / "params.yaml")
    # The report stage wrote results.md from the reproduction's metrics; the README's results section
    # is written by `stages.checks.reported --write-readme`, not by a stage, so it is regenerated first
    # (off the reference platform, training is held to a tolerance, not bits).
    write_readme(paths)
    assert check(paths) == []


def _example() -> tuple[list[str], str]:
    """The commands of the doc's ``bash`` block and the ``params diff`` output it shows."""
    text = DOC.read_text()
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    shown = re.search(r"   ```\n(   \| Path .*?)   ```", text, re.S).group(1)
    return commands, "\n".join(line[3:] for line in shown.splitlines())


def _calibration_errors(workdir: Path) -> dict[str, float]:
    return {m: json.loads((workdir / "metrics" / "models" / m / "evaluate.json").read_text())
            ["expected_calibration_error"] for m in MODELS}


def test_worked_example_of_comparing_configurations(reproduced):
    workdir, _ = reproduced
    commands, shown_params_diff = _example()
    assert [c.split()[:3] for c in commands] == [["dvc", "exp", "run"], ["dvc", "exp", "show"],
                                                  ["dvc", "params", "diff"], ["dvc", "metrics", "diff"]]
    # `main` in the example is the reproduction itself (off the reference platform training is held
    # to a tolerance, not bits), and the example compares an experiment with its base.
    run(workdir, "git", "add", "-A")
    run(workdir, "git", "-c", "user.name=reproduce", "-c", "user.email=reproduce@localhost", "commit", "-q",
        "--allow-empty", "-m", "the reproduction")
    before = _calibration_errors(workdir)
    outputs = [run(workdir, sys.executable, "-m", "dvc", *shlex.split(command)[1:]).stdout for command in commands]
    experiment, table, params_diff, metrics_diff = outputs
    after = _calibration_errors(workdir)
    # Which errors move with fewer bins depends on the predictions (with 87 test images a model's
    # error can be the same at 5 and 10 bins), so the expected columns come from the files.
    moved = [m for m in MODELS if before[m] != after[m]]
    assert "covidnet_cxr_s" in moved, (before, after)

    # Only the evaluation (and the report) re-ran: the models came from the cache.
    assert all(f"Running stage 'evaluate@{m}'" in experiment for m in MODELS), experiment
    assert "Running stage 'report'" in experiment
    assert "Running stage 'pretrain@" not in experiment and "Running stage 'finetune@" not in experiment
    # exp show: the experiment beside the baseline, only the columns that changed.
    assert "calibration-5-bins" in table and "evaluate.calibration_bins" in table
    header = table.splitlines()[0]
    shown = {m for m in MODELS if f"metrics/models/{m}/evaluate.json:expected_calibration_error" in header}
    assert shown == set(moved), table
    assert "accuracy" not in header and "roc_auc" not in header, table
    # params diff: exactly what the doc shows.
    assert params_diff.strip() == shown_params_diff.strip()
    # metrics diff: a Markdown table whose only changed metric is the calibration error.
    header, *_ = metrics_diff.splitlines()
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["Path", "Metric", "main", "workspace",
                                                                       "Change"], metrics_diff
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in metrics_diff.splitlines()
            if line.startswith("| metrics/")]
    assert [row[:2] for row in rows] == [["metrics/models/covidnet_cxr_s/evaluate.json",
                                          "expected_calibration_error"]], metrics_diff
    assert rows[0][2] != rows[0][3]  # both values shown, and they differ
