"""Benchmark: wall time of every stage of the embedded pipeline, forced, on this machine.

    python benchmarks/pipeline_time.py            # writes metrics/bench_pipeline.json

Runs ``dvc repro --force --single-item STAGE`` for each stage in pipeline order, so the figure
covers exactly what ``dvc repro`` does on a fresh clone (DVC's own hashing and caching included).
The pipeline is deterministic, so the forced rerun rewrites the same outputs. Timings are
machine-dependent: this is a benchmark figure, never a test assertion.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.common.io import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_pipeline.json"))
    args = parser.parse_args(argv)
    # Every stage in pipeline order, foreach stages expanded (pretrain@covidnet_cxr_s, ...).
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], check=True,
                            capture_output=True, text=True).stdout.split()
    stages = [name for name in listed if name]
    seconds = {}
    for stage in stages:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage], check=True)
        seconds[stage] = round(time.perf_counter() - start, 1)
        print(f"bench: {stage} {seconds[stage]} s", file=sys.stderr)
    write_json(args.out, {
        "what": "wall seconds of `dvc repro --force --single-item STAGE`, embedded default",
        "stages": seconds, "total_seconds": round(sum(seconds.values()), 1),
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
    })
    print(f"bench: total {sum(seconds.values()):.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
