"""``stages.parallel``: ``dvc repro`` on several processes.

The plan (which stages, in which order) is checked on hand-made graphs; the scheduler with a fake
stage command that logs when it starts and ends; and a whole run on a small DVC repository
against a plain serial ``dvc repro`` of a copy: the same outputs and the same ``dvc.lock``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from stages.checks.reproduce import run
from stages.parallel import STAGE_SECONDS, Pipeline, execute, measured_seconds, plan, stage_weights

# a -> b -> d, a -> c -> d, e alone (the shape of this project's per-model chains)
DIAMOND = Pipeline({"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": set()})


def _logging_command(log: Path, fail: str | None = None, seconds: float = 0.3):
    """A stage command that appends 'start X' and 'end X' to ``log`` (``fail`` exits 3)."""
    def command(stage: str) -> list[str]:
        code = 3 if stage == fail else 0
        script = (f"import time,sys; open({str(log)!r},'a').write('start {stage}\\n'); time.sleep({seconds}); "
                  f"open({str(log)!r},'a').write('end {stage}\\n'); print('working on {stage}'); sys.exit({code})")
        return [sys.executable, "-c", script]
    return command


def _events(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()]


def test_chain_lengths_count_the_stages_to_the_end():
    assert DIAMOND.chain_lengths() == {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1}


def test_chain_lengths_in_seconds_sum_the_stage_times_along_the_longest_path():
    seconds = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.5, "e": 10.0}
    # by hand: d 1.5; b 5 + 1.5; c 2 + 1.5; a 1 + max(6.5, 3.5); e alone
    assert DIAMOND.chain_lengths(seconds) == {"a": 7.5, "b": 6.5, "c": 3.5, "d": 1.5, "e": 10.0}


def test_a_stage_without_a_time_weighs_the_mean_of_its_kind_else_one_second():
    zoo = Pipeline({"train@x": set(), "train@y": set(), "train@new": set(), "report": set()})
    assert stage_weights(zoo.upstream, {"train@x": 4.0, "train@y": 8.0}) == {
        "train@x": 4.0, "train@y": 8.0, "train@new": 6.0, "report": 1.0}


def test_stage_times_come_from_the_pipeline_benchmark(tmp_path):
    assert measured_seconds(tmp_path) is None  # no benchmark yet: ordered by stage count
    path = tmp_path / STAGE_SECONDS
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"serial": {"fresh_seconds": 9.0, "stages": {"a": 2.5, "b@m": 4}}}))
    assert measured_seconds(tmp_path) == {"a": 2.5, "b@m": 4.0}
    path.write_text(json.dumps({"serial": {"fresh_seconds": 9.0}}))
    assert measured_seconds(tmp_path) is None


def test_with_times_the_longest_chain_in_seconds_starts_first(tmp_path):
    # one job: by stage count a (3 stages) would go first; e alone takes longer than a's whole chain
    log = tmp_path / "log"
    seconds = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 10.0}
    outcome = execute(DIAMOND, tmp_path, 1, command=_logging_command(log, seconds=0.05), log=lambda _: None,
                      seconds=seconds)
    assert not outcome.failed
    assert [s for kind, s in _events(log) if kind == "start"] == ["e", "a", "b", "c", "d"]


def test_plan_takes_the_changed_stages_and_everything_after_them():
    assert set(plan(DIAMOND, {"b"}).upstream) == {"b", "d"}
    # b's upstream stage a is not in the plan, so b is ready at once
    assert plan(DIAMOND, {"b"}).upstream["b"] == set()
    assert set(plan(DIAMOND, {"a", "e"}).upstream) == {"a", "b", "c", "d", "e"}
    assert plan(DIAMOND, set()).upstream == {}


def test_plan_with_targets_keeps_only_what_they_need():
    assert set(plan(DIAMOND, {"a", "e"}, ["c"]).upstream) == {"a", "c"}
    with pytest.raises(SystemExit, match="no stage named nope"):
        plan(DIAMOND, {"a"}, ["nope"])
    # A foreach stage's name stands for all its items, as in `dvc repro finetune`.
    zoo = Pipeline({"data": set(), "train@x": {"data"}, "train@y": {"data"}, "trainer": {"data"}})
    assert set(plan(zoo, {"data"}, ["train"]).upstream) == {"data", "train@x", "train@y"}
    assert set(plan(zoo, {"data"}, ["train@y"]).upstream) == {"data", "train@y"}


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_every_stage_runs_once_after_its_upstream_and_never_more_than_jobs_at_once(tmp_path, jobs):
    log = tmp_path / "log"
    outcome = execute(DIAMOND, tmp_path, jobs, command=_logging_command(log), log=lambda _: None)
    assert not outcome.failed
    events = _events(log)
    assert sorted(s for kind, s in events if kind == "start") == ["a", "b", "c", "d", "e"]
    position = {(kind, s): i for i, (kind, s) in enumerate(events)}
    for stage, befores in DIAMOND.upstream.items():
        for before in befores:
            assert position[("end", before)] < position[("start", stage)], (before, stage, events)
    running = peak = 0
    for kind, _ in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= jobs
    if jobs > 1:
        assert peak >= 2  # a and e start together, then b and c
    else:  # one at a time, the longest chain first: a before e
        assert [s for kind, s in events if kind == "start"][:2] == ["a", "b"]


def test_a_failed_stage_stops_new_ones_and_is_named(tmp_path):
    log = tmp_path / "log"
    messages: list[str] = []
    outcome = execute(DIAMOND, tmp_path, 1, command=_logging_command(log, fail="a"), log=messages.append)
    assert outcome.failed == {"a": 3}
    assert [s for kind, s in _events(log) if kind == "start"] == ["a"]
    assert any("a FAILED (exit 3)" in m for m in messages)


DVC_YAML = {"stages": {
    "source": {"cmd": "python make.py source", "deps": ["make.py"], "outs": ["source.txt"]},
    "left": {"cmd": "python make.py left source.txt", "deps": ["make.py", "source.txt"], "outs": ["left.txt"]},
    "right": {"cmd": "python make.py right source.txt", "deps": ["make.py", "source.txt"],
              "outs": ["right.txt"]},
    "joined": {"cmd": "python make.py joined left.txt right.txt", "deps": ["make.py", "left.txt", "right.txt"],
               "metrics": [{"joined.json": {"cache": False}}]},
}}
MAKE = """import json, sys, time
name, inputs = sys.argv[1], sys.argv[2:]
time.sleep(1.0)
text = name + ":" + "+".join(open(p).read() for p in inputs)
if name == "joined":
    json.dump({"text": text, "length": len(text)}, open("joined.json", "w"), sort_keys=True)
else:
    open(name + ".txt", "w").write(text)
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "make.py").write_text(MAKE)
    run(root, "git", "init", "-q", "-b", "main")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    return root


@pytest.mark.slow
def test_a_parallel_run_gives_what_a_serial_dvc_repro_gives(tmp_path):
    serial, parallel = _project(tmp_path / "serial"), tmp_path / "parallel"
    shutil.copytree(serial, parallel)
    run(serial, sys.executable, "-m", "dvc", "repro")
    times = tmp_path / "times.json"
    out = run(parallel, sys.executable, "-m", "stages.parallel", "--jobs", "2", "--times", str(times)).stdout
    assert "[left] " in out and "[right] " in out and "parallel: finished joined" in out
    for name in ("source.txt", "left.txt", "right.txt", "joined.json"):
        assert (parallel / name).read_bytes() == (serial / name).read_bytes(), name
    assert yaml.safe_load((parallel / "dvc.lock").read_text()) == yaml.safe_load((serial / "dvc.lock").read_text())
    stages = json.loads(times.read_text())["stages"]
    # left and right ran side by side
    assert stages["right"]["start"] < stages["left"]["end"] and stages["left"]["start"] < stages["right"]["end"]
    # Up to date now: nothing to plan, nothing run.
    again = run(parallel, sys.executable, "-m", "stages.parallel").stdout
    assert "parallel: started" not in again and "Running stage" not in again
    # A change upstream re-runs it and everything after it.
    (parallel / "make.py").write_text(MAKE.replace("name + \":\"", "name + \"=\""))
    rerun = run(parallel, sys.executable, "-m", "stages.parallel").stdout
    assert all(f"parallel: finished {s}" in rerun for s in ("source", "left", "right", "joined"))
    assert json.loads((parallel / "joined.json").read_text())["text"].startswith("joined=")
