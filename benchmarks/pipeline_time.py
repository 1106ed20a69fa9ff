"""Benchmark: wall time of a fresh ``dvc repro`` of the embedded default, per stage, and of a no-op one.

    python benchmarks/pipeline_time.py [--install]   # writes metrics/bench_pipeline.json

The files git knows are copied into an empty folder (as ``stages.checks.reproduce`` does, the same
state as a fresh clone), and ``dvc repro`` runs there from nothing: no data, no models, no DVC
cache. Each stage's time is read off the run's own output (from its ``Running stage`` line to the
next one), so the figures add up to the whole run. Then ``dvc repro`` runs ``--noop-runs`` more
times on the finished copy, where nothing is left to do. ``--install`` first times ``make
install`` in the copy (a new ``.venv`` from ``requirements.lock``; uv's download cache is whatever
this machine has). Timings are this machine's: a benchmark figure, never a test assertion.
"""

from __future__ import annotations

import argparse
import contextlib
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_pipeline.json"))
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--install", action="store_true", help="also time `make install` in the fresh copy")
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it (to compare its outputs "
                                                 "with the committed ones), instead of a temporary one")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    python = sys.executable
    if args.keep and args.keep.exists():
        raise SystemExit(f"bench: {args.keep} exists; --keep needs a new folder")
    with (contextlib.nullcontext(str(args.keep)) if args.keep else
          tempfile.TemporaryDirectory(prefix="bench-")) as temporary:
        workdir = Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        clean_copy(repo, workdir)
        figures: dict[str, object] = {}
        if args.install:
            started = time.perf_counter()
            subprocess.run(["make", "install"], cwd=workdir, check=True, env={**os.environ, "VENV": ".venv"})
            figures["install_seconds"] = round(time.perf_counter() - started, 1)
            python = str(workdir / ".venv" / "bin" / "python")
        total, stages = timed_repro(workdir, python)
        noop = []
        for _ in range(args.noop_runs):
            started = time.perf_counter()
            output = subprocess.run([python, "-m", "dvc", "repro"], cwd=workdir, env=env_for(python), check=True,
                                    capture_output=True, text=True).stdout
            noop.append(round(time.perf_counter() - started, 2))
            if "Running stage" in output:
                raise SystemExit("bench: a second dvc repro ran a stage; the pipeline is not a no-op")
    write_json(args.out, {
        "what": "wall seconds of `dvc repro` of the embedded default from a fresh copy (no data, models or "
                "DVC cache), per stage from its start to the next stage's; then of no-op `dvc repro` runs",
        "fresh_seconds": total, "stages": stages, "noop_seconds": noop, **figures,
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
    })
    print(f"bench: fresh dvc repro {total} s, no-op {noop} s -> {args.out}")


if __name__ == "__main__":
    main()
