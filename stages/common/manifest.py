"""File manifests: one row per file of a folder a stage writes (relative path, bytes, sha256).

Why (ours, issue 15): DVC hashes a folder dependency file by file (a walk, a stat and a
``.dvcignore`` check per file) at every ``dvc status`` and ``dvc repro``, once per stage that lists
it. ``data/raw`` and ``data/images`` (about 1,500 files each) were dependencies of 7 and 16 stages (three models),
and those walks were about two thirds of a no-op ``dvc repro``. Now the stage that writes the folder
also writes its manifest, and the stages that read the folder depend on the manifest: a small file
that changes exactly when a file of the folder is added, removed, renamed or changes a byte.

The folder stays its writer's DVC output, so ``dvc repro`` (with or without a target; not ``-s``)
still notices an edited file there: it reruns the writer, and the stages downstream rerun only when
the rewritten folder (its manifest) differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from stages.common.io import write_csv

MANIFEST_COLUMNS = ["path", "bytes", "sha256"]


def manifest_path(folder: str | Path) -> Path:
    """Where the manifest of ``folder`` goes: ``manifests/<folder name>.csv`` beside it
    (``data/raw`` -> ``data/manifests/raw.csv``), so a stage run on other folders (tests, a copy)
    writes its manifest beside them, never into the repository's ``data/``."""
    folder = Path(folder)
    return folder.parent / "manifests" / f"{folder.name}.csv"


# Folder -> its manifest, as dvc.yaml names them (stages.checks.deps holds dvc.yaml to this).
MANIFESTS = {folder: manifest_path(folder).as_posix() for folder in ("data/raw", "data/images")}
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(folder: Path) -> pd.DataFrame:
    """Every file under ``folder`` (recursively; POSIX paths relative to it), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"manifest: {folder} is not a folder")
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    return pd.DataFrame([{"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size,
                          "sha256": file_sha256(p)} for p in files], columns=MANIFEST_COLUMNS)


def write_manifest(folder: Path) -> tuple[Path, pd.DataFrame]:
    """Write ``folder``'s manifest to :func:`manifest_path` (CSV, atomically); return where and what."""
    table = manifest(folder)
    out = manifest_path(folder)
    write_csv(out, table, MANIFEST_COLUMNS)
    return out, table
