"""Atomic, deterministic file output: a crash never leaves a half-written table or metric."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd


# os.umask can only be read by setting it; read it once at import, before any worker thread runs,
# so concurrent writers never see (or leave) a temporarily changed umask.
UMASK = os.umask(0o022)
os.umask(UMASK)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates the file private (0600); give it the usual permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling (yielded), then swap it in for ``target`` whole.

    When the block raises, the sibling is removed and ``target`` keeps its old content; otherwise
    the old ``target`` is moved aside first and deleted after the swap, so at no point is a half-
    built folder at ``target`` (a crash between the two renames leaves it absent, never partial).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staging.chmod(0o777 & ~UMASK)  # mkdtemp makes it private; give the usual permissions
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            target.replace(old / "content")
            staging.replace(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 with '\n' line ends whatever the platform's locale: same text, same bytes."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in metrics; make them plain JSON.
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, payload: Any) -> Path:
    """Sorted keys and a trailing newline: identical payloads give identical bytes."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_text(path, text)


def write_csv(path: str | Path, frame: pd.DataFrame, columns: list[str] | None = None) -> Path:
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: table is missing columns {missing}")
        frame = frame[columns]
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def read_table(path: str | Path, id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a pipeline CSV, keeping id-like columns as strings (``00123`` stays ``00123``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: table not found (did the stage that writes it run?)")
    id_like = {"image_id", "patient_id", "study_uid", "series_uid", "sop_uid", "raw_path",
               "image_path", "filename", "reader_grades", *id_columns}
    header = pd.read_csv(path, nrows=0).columns
    dtypes = {c: str for c in header if c in id_like}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[])
