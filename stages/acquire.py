"""Stage ``acquire``: bring the raw data into ``data/raw`` in the layout of ``stages.schema``.

``data.source`` picks one of ``stages.sources.SOURCES``:
- ``synthetic`` (default): the embedded phantom cohort, generated offline and deterministically;
- ``ricord``: RSNA RICORD 1c from TCIA, its MD.ai annotations, COVID-Net's reference files and
  COVIDx 8B (``stages.sources.ricord``; needs the internet and the ``ricord`` params section).
  Downloads go to ``--downloads`` first, are verified there and are reused by later runs.

Either way the raw folder is built in a sibling temporary folder and swapped in whole, so an
interrupted run never leaves a half-built raw folder that a later stage could mistake for data.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from stages.common.cli import stage_arguments
from stages.sources import SOURCES


def acquire(out_dir: Path, params: dict, downloads: Path = Path("data/downloads")) -> dict:
    name = params["data"]["source"]
    if name not in SOURCES:
        raise SystemExit(f"acquire: unknown data.source {name!r}; the known sources are {', '.join(SOURCES)}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        summary = SOURCES[name].build(staging, Path(downloads), params)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(
        __doc__, argv, out=Path("data/raw"), downloads=Path("data/downloads"),
        helps={"downloads": "where verified downloads are kept between runs (real sources only)"})
    from stages.sources.http import DownloadError
    try:
        summary = acquire(args.out, params, args.downloads)
    except DownloadError as error:
        raise SystemExit(f"acquire: {error}\nFinished downloads are kept in {args.downloads}; "
                         f"rerun to fetch only what is missing.") from None
    print(f"acquire: wrote {args.out} ({summary})")


if __name__ == "__main__":
    main()
