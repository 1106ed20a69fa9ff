"""Stage ``acquire``: bring the raw data into ``data/raw`` in the layout of ``stages.schema``.

``data.source`` picks one of ``stages.sources.SOURCES``:
- ``synthetic`` (default): the embedded phantom cohort, generated offline and deterministically;
- ``ricord``: RSNA RICORD 1c from TCIA, its MD.ai annotations, COVID-Net's reference files and
  COVIDx 8B (``stages.sources.ricord``; needs the internet and the ``ricord`` params section).
  Downloads go to ``--downloads`` first, are verified there and are reused by later runs.

Either way the raw folder is built in a sibling temporary folder and swapped in whole, so an
interrupted run never leaves a half-built raw folder that a later stage could mistake for data.
Then its manifest (``data/manifests/raw.csv`` beside ``data/raw``: :mod:`stages.common.manifest`) is
written: the stages that read ``data/raw`` depend on that file, not on the folder.
"""

from __future__ import annotations

from pathlib import Path

from stages.common.cli import stage_arguments
from stages.common.io import atomic_folder
from stages.common.manifest import write_manifest
from stages.sources import SOURCES


def acquire(out_dir: Path, params: dict, downloads: Path = Path("data/downloads")) -> dict:
    name = params["data"]["source"]
    if name not in SOURCES:
        raise SystemExit(f"acquire: unknown data.source {name!r}; the known sources are {', '.join(SOURCES)}")
    with atomic_folder(out_dir) as staging:
        return SOURCES[name].build(staging, Path(downloads), params)


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
    listing, files = write_manifest(args.out)
    print(f"acquire: wrote {args.out} ({summary}); {len(files)} files listed in {listing}")


if __name__ == "__main__":
    main()
