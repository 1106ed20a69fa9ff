"""Benchmark: wall time of a fresh run of the embedded default's pipeline, by ``dvc repro`` (one
stage at a time) and by ``make repro`` (:mod:`stages.parallel`, two at a time), per stage, and of
no-op runs of each.

    python benchmarks/pipeline_time.py [--install]   # writes metrics/bench_pipeline.json

The files git knows are copied into two empty folders (as ``stages.checks.reproduce`` does, the
same state as a fresh clone); ``dvc repro`` runs from nothing in one (no data, no models, no DVC
cache), ``python -m stages.parallel`` in the other, one after the other. The serial run's stage
times are read off its own output (from its ``Running stage`` line to the next one), so they add
up to the whole run; the parallel run records each stage's start and end. Then both commands run
``--noop-runs`` more times on the finished copy, where nothing is left to do. ``--install`` first
times ``make install`` in a copy (a new ``.venv`` from ``requirements.lock``; uv's download cache
is whatever this machine has). Timings are this machine's: a benchmark figure, never a test
assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.checks.reproduce import clean_copy, tool_env  # noqa: E402
from stages.common.io import write_json  # noqa: E402
from stages.parallel import DEFAULT_JOBS  # noqa: E402

RUNNING = re.compile(r"^Running stage '([^']+)'")


def env_for(python: str) -> dict[str, str]:
    """``make repro``'s environment with ``python``'s tools first on PATH."""
    return {**tool_env(), "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def timed_repro(workdir: Path, python: str) -> tuple[float, dict[str, float]]:
    """Run ``dvc repro`` in ``workdir``; total seconds and seconds per stage that ran."""
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []
    process = subprocess.Popen([python, "-m", "dvc", "repro"], cwd=workdir, env=env_for(python), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    assert process.stdout is not None
    for line in process.stdout:
        # A stage's progress bar ends its lines with "\r", so the next "Running stage" shares their line.
        match = RUNNING.match(line.rsplit("\r", 1)[-1])
        if match:
            marks.append((match.group(1), time.perf_counter()))
            print(f"bench: {match.group(1)} started at {marks[-1][1] - started:.1f} s", file=sys.stderr)
    if process.wait() != 0:
        raise SystemExit(f"bench: dvc repro failed in {workdir}")
    ended = time.perf_counter()
    stages = {name: round(next_at - at, 1)
              for (name, at), (_, next_at) in zip(marks, marks[1:] + [("end", ended)])}
    return round(ended - started, 1), stages


def timed_parallel(workdir: Path, python: str, jobs: int) -> tuple[float, dict[str, dict[str, float]]]:
    """``make repro``'s way (:mod:`stages.parallel`, ``jobs`` stages at a time) in ``workdir``;
    total seconds and each stage's start and end."""
    times = workdir.parent / f"{workdir.name}-times.json"
    started = time.perf_counter()
    process = subprocess.run([python, "-m", "stages.parallel", "--jobs", str(jobs), "--times", str(times)],
                             cwd=workdir, env=env_for(python), text=True)
    if process.returncode != 0:
        raise SystemExit(f"bench: python -m stages.parallel failed in {workdir}")
    total = round(time.perf_counter() - started, 1)
    stages = json.loads(times.read_text())["stages"]
    times.unlink()
    return total, stages


def noop_seconds(workdir: Path, python: str, command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``command`` on a finished copy; each must run no stage."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        output = subprocess.run([python, "-m", *command], cwd=workdir, env=env_for(python), check=True,
                                capture_output=True, text=True).stdout
        seconds.append(round(time.perf_counter() - started, 2))
        if "Running stage" in output or "parallel: started" in output:
            raise SystemExit(f"bench: `{' '.join(command)}` ran a stage on a finished copy; not a no-op")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_pipeline.json"))
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="stages at a time in the parallel run")
    parser.add_argument("--install", action="store_true", help="also time `make install` in the first fresh copy")
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep the two copies (serial/, "
                                                 "parallel/: to compare their outputs with the committed ones)")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    python = sys.executable
    if args.keep and args.keep.exists():
        raise SystemExit(f"bench: {args.keep} exists; --keep needs a new folder")
    figures: dict[str, object] = {}
    with (contextlib.nullcontext(str(args.keep)) if args.keep else
          tempfile.TemporaryDirectory(prefix="bench-")) as temporary:
        serial, parallel = Path(temporary) / "serial", Path(temporary) / "parallel"
        for workdir in (serial, parallel):
            workdir.mkdir(parents=True)
            clean_copy(repo, workdir)
        if args.install:
            started = time.perf_counter()
            subprocess.run(["make", "install"], cwd=serial, check=True, env={**os.environ, "VENV": ".venv"})
            figures["install_seconds"] = round(time.perf_counter() - started, 1)
            python = str(serial / ".venv" / "bin" / "python")
        total, stages = timed_repro(serial, python)
        figures["serial"] = {"what": "`dvc repro`: one stage at a time; seconds per stage from its start to the "
                                     "next stage's", "fresh_seconds": total, "stages": stages}
        print(f"bench: fresh dvc repro {total} s", file=sys.stderr)
        total, spans = timed_parallel(parallel, python, args.jobs)
        figures["parallel"] = {"what": f"`make repro` (python -m stages.parallel): {args.jobs} stages at a time; "
                                       "each stage's start and end, seconds from the first start",
                               "jobs": args.jobs, "fresh_seconds": total, "stages": spans}
        print(f"bench: fresh make repro ({args.jobs} at a time) {total} s", file=sys.stderr)
        figures["noop_seconds"] = noop_seconds(parallel, python, ["dvc", "repro"], args.noop_runs)
        figures["noop_make_repro_seconds"] = noop_seconds(parallel, python, ["stages.parallel"], args.noop_runs)
    write_json(args.out, {
        "what": "wall seconds of the embedded default's pipeline from a fresh copy (no data, models or DVC "
                "cache), run by `dvc repro` and by `make repro` in two copies; then of no-op runs of each on "
                "the finished copy (noop_seconds: dvc repro)",
        **figures,
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
    })
    print(f"bench: fresh dvc repro {figures['serial']['fresh_seconds']} s, make repro "
          f"{figures['parallel']['fresh_seconds']} s; no-op {figures['noop_seconds']} / "
          f"{figures['noop_make_repro_seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
