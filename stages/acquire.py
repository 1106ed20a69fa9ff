"""Stage ``acquire``: bring the raw data into ``data/raw`` in the layout of ``stages.schema``.

``data.source: synthetic`` (the default) generates the embedded phantom cohort offline. Real
sources (RSNA RICORD 1c from TCIA, COVIDx) write the same layout.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from stages.common.params import load_params

SOURCES = ("synthetic",)


def acquire(out_dir: Path, params: dict) -> dict:
    source = params["data"]["source"]
    if source not in SOURCES:
        raise SystemExit(
            f"acquire: data.source {source!r} is not available yet; choose one of {list(SOURCES)}"
        )
    from stages.sources import phantom

    out_dir = Path(out_dir)
    # Build into a sibling temp folder and swap it in, so an interrupted run never leaves a
    # half-generated raw folder that a later stage could mistake for complete data.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        summary = phantom.generate(staging, params["synthetic"])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    summary = acquire(args.out, load_params(args.params))
    print(f"acquire: wrote {args.out} ({summary})")


if __name__ == "__main__":
    main()
