"""A queued sweep over a seed and one other parameter, run two at a time, compared with DVC's commands.

The sweep code is the seed benchmark's own (``benchmarks/seeds.py``: ``dvc exp run --queue -S``,
``dvc queue start -j 2``, ``dvc exp show --json``); here it runs on a tiny DVC project whose one
stage computes ``score = seed x scale``, so every expected value is a hand calculation. The stage
also waits (up to a minute) until both experiments have started, so the queue passes only if
``-j 2`` really ran them side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import seeds  # noqa: E402

# Two experiments: each moves the seed and the other parameter away from the baseline (seed 0, scale 1).
SWEEP = {"sweep-a": ["train.seed=3", "train.scale=0.5"], "sweep-b": ["train.seed=4", "train.scale=2.5"]}
EXPECTED = {"sweep-a": 3 * 0.5, "sweep-b": 4 * 2.5}  # score = seed x scale

STAGE = textwrap.dedent("""
    import json, pathlib, sys, time
    import yaml
    params = yaml.safe_load(open("params.yaml"))["train"]
    # The sweep's barrier (outside the project): both experiments must be running at once.
    barrier = pathlib.Path({barrier!r})
    if barrier.is_dir():
        (barrier / str(params["seed"])).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2:
            if time.monotonic() > deadline:
                sys.exit("ran alone: the other experiment did not start within a minute")
            time.sleep(0.2)
    json.dump({{"score": params["seed"] * params["scale"]}}, open("metrics.json", "w"))
""")


def _run(cwd: Path, *command: str) -> str:
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def _dvc(cwd: Path, *args: str) -> str:
    return _run(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture
def tiny_project(tmp_path) -> tuple[Path, Path]:
    project, barrier = tmp_path / "project", tmp_path / "barrier"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump({"train": {"seed": 0, "scale": 1.0}}))
    (project / "train.py").write_text(STAGE.format(barrier=str(barrier)))
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": f"{sys.executable} train.py", "deps": ["train.py"], "params": ["train.seed", "train.scale"],
        "metrics": [{"metrics.json": {"cache": False}}]}}}))
    _run(project, "git", "init", "-q", "-b", "main")
    _dvc(project, "init", "-q")
    _dvc(project, "repro")
    _run(project, "git", "add", "-A")
    _run(project, "git", "-c", "user.name=sweep", "-c", "user.email=sweep@localhost", "-c", "commit.gpgsign=false",
         "commit", "-q", "-m", "baseline")
    barrier.mkdir()
    return project, barrier


@pytest.mark.slow  # a dozen dvc commands and two queue workers (about 25 s here)
def test_a_queued_sweep_of_two_experiments_runs_two_at_a_time(tiny_project, monkeypatch):
    project, barrier = tiny_project
    monkeypatch.chdir(project)
    runs = seeds.run_sweep(SWEEP, jobs=2, poll_s=1)
    assert sorted(p.name for p in barrier.iterdir()) == ["3", "4"]  # both started, neither gave up
    assert {name: metrics["metrics.json"]["score"] for name, metrics in runs.items()} == EXPECTED

    # dvc exp show: both experiments beside the baseline, with their parameters and scores.
    table = _dvc(project, "exp", "show", "--md", "--no-pager", "--drop", "Created|State|Executor|train.py")
    header, _, *lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()]
    assert sorted(header[1:]) == ["score", "train.scale", "train.seed"], table
    rows = {line[0]: dict(zip(header[1:], line[1:])) for line in lines}
    shown = {name: row for label, row in rows.items() for name in SWEEP if label.endswith(f"[{name}]")}
    assert shown == {"sweep-a": {"score": "1.5", "train.seed": "3", "train.scale": "0.5"},
                     "sweep-b": {"score": "10", "train.seed": "4", "train.scale": "2.5"}}, table
    assert rows["main"] == {"score": "0", "train.seed": "0", "train.scale": "1"}, table

    # dvc metrics diff / params diff against the baseline branch.
    assert json.loads(_dvc(project, "metrics", "diff", "main", "sweep-b", "--json")) == {
        "metrics.json": {"score": {"old": 0.0, "new": 10.0, "diff": 10.0}}}
    assert json.loads(_dvc(project, "params", "diff", "main", "sweep-a", "--json")) == {
        "params.yaml": {"train.seed": {"old": 0, "new": 3, "diff": 3},
                        "train.scale": {"old": 1.0, "new": 0.5, "diff": -0.5}}}


def test_experiments_sweep_the_chosen_seed_with_every_setting():
    assert seeds.experiments("train.seed", [2023, 2024], []) == {
        "seed-2023": ["train.seed=2023"], "seed-2024": ["train.seed=2024"]}
    assert seeds.experiments("finetune.seed", [7], ["finetune.epochs=10", "finetune.batch_size=8"]) == {
        "finetune-seed-7": ["finetune.seed=7", "finetune.epochs=10", "finetune.batch_size=8"]}
    for bad in (["finetune.epochs"], ["=10"], ["train.seed=3"], ["finetune.seed=3"]):
        with pytest.raises(SystemExit, match="--set takes KEY=VALUE"):
            seeds.experiments("finetune.seed", [1], bad)
    with pytest.raises(SystemExit, match="--vary must be one of"):
        seeds.experiments("pretrain.seed", [1], [])


def test_the_committed_run_is_a_sample_only_of_its_own_settings():
    params = {"train": {"seed": 2022}, "finetune": {"seed": None}}
    assert seeds.committed_sample("train.seed", [], params) == 2022
    assert seeds.committed_sample("finetune.seed", [], params) == 2022  # null: fine-tuning uses train.seed
    assert seeds.committed_sample("finetune.seed", [], {"train": {"seed": 2022}, "finetune": {"seed": 5}}) == 5
    assert seeds.committed_sample("finetune.seed", ["finetune.epochs=10"], params) is None


def test_only_the_default_sweep_may_write_the_reproduction_checks_tolerances():
    for argv in (["--vary", "finetune.seed"], ["--set", "finetune.epochs=10"]):
        with pytest.raises(SystemExit, match="give this sweep another --out"):
            seeds.main(argv)


def test_finetune_seed_falls_back_to_the_training_seed():
    from stages.finetune import finetune_seed

    assert finetune_seed({"train": {"seed": 2022}, "finetune": {"seed": None}}) == 2022
    assert finetune_seed({"train": {"seed": 2022}, "finetune": {}}) == 2022
    assert finetune_seed({"train": {"seed": 2022}, "finetune": {"seed": 7}}) == 7
    assert finetune_seed({"train": {"seed": 2022}, "finetune": {"seed": 0}}) == 0  # 0 is a seed, not "unset"
