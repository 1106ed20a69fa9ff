"""Download a TCIA collection (RSNA RICORD 1c: ``MIDRC-RICORD-1C``) through the NBIA REST API.

Why this shape: the collection is about a thousand series fetched over a flaky public API, so
each series is its own unit of work. A series' zip is downloaded (resumably, see
:mod:`stages.sources.http`), verified against the MD5s NBIA publishes (or against the series size),
and only then gets a completion marker ``<downloads>/<SeriesInstanceUID>.json``. A rerun skips every
series with a marker without any request, so an interrupted or partly failed download resumes
where it stopped. Extraction refuses path tricks and is all-or-nothing per series.

Endpoints used (``base_url`` e.g. :data:`DEFAULT_BASE_URL`)::

    getSeries?Collection=..&Modality=..          -> [{"SeriesInstanceUID", "StudyInstanceUID", "PatientID", ...}]
    getImage?NewFileNames=Yes&SeriesInstanceUID=  -> zip: a ``LICENSE`` entry, then the series' DICOM files
    getImageWithMD5Hash?SeriesInstanceUID=        -> zip: the DICOM files plus md5hashes.csv (Filename,MD5Hash)
    getSeriesSize?SeriesInstanceUID=              -> [{"TotalSizeInBytes": "..", "ObjectCount": ".."}]

The service as it is (NBIA's own source, CBIIT/NBIA-TCIA ``restAPI/v4/V4_getImage.java``, and TCIA's
client ``tcia_utils``, read in 2026):

- the public host is ``nbia.cancerimagingarchive.net`` (``services.`` was the old one);
- ``getImage`` (v1, v2, v4; since May 2021) writes a ``LICENSE`` entry (the collection's licence
  text, no suffix) before the files; ``getSeriesSize`` counts the DICOM files only. ``LICENSE`` is
  therefore neither extracted nor counted nor read as an image; its sha256 goes to the marker;
- every zip is built while it is sent (JAX-RS ``StreamingOutput`` around a ``ZipOutputStream``):
  no Content-Length, no Range, and entry times are those of the request, so two downloads of one
  series differ in bytes. A part-downloaded zip therefore cannot be resumed: an interrupted
  series starts again from byte 0 (``resume=False``), and resumption is per series (the markers);
- on a server-side error mid-series the zip is closed early and still ends validly, short of files
  (and, for getImageWithMD5Hash, of md5hashes.csv): the md5 list or getSeriesSize's count catches it;
- v4 answers HTTP 400 to a query parameter it does not know.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from stages.common.io import atomic_folder, write_csv, write_json
from stages.common.progress import progress as progress_bar
from stages.sources import http
from stages.sources.http import DownloadError, fetch, get_json

DEFAULT_BASE_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"  # tcia_utils.nbia.setApiUrl
RICORD_1C = "MIDRC-RICORD-1C"
MD5_LIST = "md5hashes.csv"
LICENSE_ENTRY = "LICENSE"  # getImage's licence text, the zip's first entry (not data)
NOT_DATA = (MD5_LIST, LICENSE_ENTRY)  # zip entries at the top level that are not DICOM files
MANIFEST_COLUMNS = ["series_uid", "study_uid", "patient_id", "modality", "file", "bytes", "md5", "sha256"]
VERIFY_MODES = ("md5", "size")
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnsafeArchiveError(DownloadError):
    """A zip entry that would land outside the target folder (zip-slip) or is a symlink."""


class _Invalid(Exception):
    """A downloaded zip failed verification; a fresh download may fix it."""


def _endpoint(base_url: str, name: str) -> str:
    return base_url.rstrip("/") + "/" + name


def _series_uid(series: dict[str, Any]) -> str:
    """The series UID, checked to be a safe file name (it names files and folders)."""
    uid = str(series.get("SeriesInstanceUID", "")) if isinstance(series, dict) else ""
    if not _UID.match(uid) or ".." in uid:
        raise DownloadError(f"series entry has no usable SeriesInstanceUID: {series!r}")
    return uid


def list_series(base_url: str, collection: str, modalities: str | Iterable[str],
                **http_kwargs: Any) -> list[dict[str, Any]]:
    """All series of ``collection`` in the given modalities, deduplicated and sorted by UID.

    RICORD 1c mixes CR and DX, and getSeries filters by one modality at a time.
    """
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    found: dict[str, dict[str, Any]] = {}
    for modality in modalities:
        params = {"Collection": collection, "Modality": modality}
        result = get_json(_endpoint(base_url, "getSeries"), params=params, **http_kwargs)
        if not isinstance(result, list):
            raise DownloadError(f"getSeries {params}: expected a JSON list, got {type(result).__name__}")
        for series in result:
            found.setdefault(_series_uid(series), series)
    return [found[uid] for uid in sorted(found)]


def _member_parts(zip_path: Path, info: zipfile.ZipInfo) -> list[str]:
    """Path components of a zip entry; UnsafeArchiveError for anything that could escape."""
    name = info.filename
    problem = None
    if not name or "\0" in name:
        problem = "empty or NUL-containing name"
    elif name.startswith(("/", "\\")):
        problem = "absolute path"
    elif re.match(r"^[A-Za-z]:", name):
        problem = "drive letter"
    elif ".." in re.split(r"[\\/]", name):
        problem = "'..' component"
    elif stat.S_ISLNK(info.external_attr >> 16):
        problem = "symbolic link"
    if problem:
        raise UnsafeArchiveError(f"{zip_path}: refusing entry {name!r} ({problem})")
    return [part for part in re.split(r"[\\/]", name) if part not in ("", ".")]


def _file_members(zip_path: Path, archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, str]]:
    """(entry, relative posix path) for every data file; checks all entries, skips md5hashes.csv and
    LICENSE (:data:`NOT_DATA`)."""
    members, seen = [], set()
    for info in archive.infolist():
        parts = _member_parts(zip_path, info)
        if info.is_dir() or not parts or parts[-1] in NOT_DATA:
            continue
        relative = "/".join(parts)
        if relative in seen:
            raise UnsafeArchiveError(f"{zip_path}: duplicate entry {relative!r}")
        seen.add(relative)
        members.append((info, relative))
    return members


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, relative: str, sink=None) -> dict[str, Any]:
    """Stream one entry (to ``sink`` if given) and return its size and checksums."""
    with archive.open(info) as source:  # zipfile checks the entry's CRC at the end
        size, sha256, md5 = http.digest_stream(source, sink)
    return {"file": relative, "bytes": size, "md5": md5, "sha256": sha256}


def safe_extract(zip_path: str | Path, out_dir: str | Path) -> list[dict[str, Any]]:
    """Extract the data files of ``zip_path`` into ``out_dir``; return one checksum dict per file.

    Every entry is checked before anything is written; files go to a temporary sibling folder that
    is renamed into place at the end, so ``out_dir`` is either the old or the complete new content.
    """
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        members = _file_members(zip_path, archive)
        with atomic_folder(out_dir) as staging:
            files = []
            for info, relative in members:
                target = staging.joinpath(*relative.split("/"))
                if not target.resolve().is_relative_to(staging.resolve()):  # defence in depth
                    raise UnsafeArchiveError(f"{zip_path}: refusing entry {info.filename!r} (escapes {out_dir})")
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as sink:
                    files.append(_copy_member(archive, info, relative, sink))
    return sorted(files, key=lambda row: row["file"])


def _read_md5_list(zip_path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    """{normalised file name: md5} from the zip's md5hashes.csv."""
    names = [info.filename for info in archive.infolist() if re.split(r"[\\/]", info.filename)[-1] == MD5_LIST]
    if not names:
        raise _Invalid(f"{zip_path.name} has no {MD5_LIST}")
    text = archive.read(names[0]).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if not {"Filename", "MD5Hash"} <= set(reader.fieldnames or []):
        raise _Invalid(f"{MD5_LIST} header is {reader.fieldnames}, expected Filename,MD5Hash")
    listed = {}
    for row in reader:
        name = "/".join(p for p in re.split(r"[\\/]", (row["Filename"] or "").strip()) if p not in ("", "."))
        if name:
            listed[name] = (row["MD5Hash"] or "").strip().lower()
    return listed


def _verify_md5(files: list[dict[str, Any]], listed: dict[str, str]) -> None:
    """Every file has a matching MD5 in md5hashes.csv and every listed file is in the zip."""
    by_name = {row["file"]: row for row in files}
    by_base: dict[str, list[dict]] = {}
    for row in files:
        by_base.setdefault(row["file"].rsplit("/", 1)[-1], []).append(row)
    problems, matched = [], set()
    for name, expected in sorted(listed.items()):
        row = by_name.get(name)
        if row is None and len(by_base.get(name.rsplit("/", 1)[-1], [])) == 1:
            row = by_base[name.rsplit("/", 1)[-1]][0]  # the list may name files without their folder
        if row is None:
            problems.append(f"{MD5_LIST} lists {name!r}, which is not in the zip")
            continue
        matched.add(row["file"])
        if row["md5"] != expected:
            problems.append(f"md5 mismatch for {row['file']}: expected {expected}, got {row['md5']}")
    problems += [f"no MD5 listed for {row['file']}" for row in files if row["file"] not in matched]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise _Invalid("; ".join(problems[:3]) + more)


def _verify_size(files: list[dict[str, Any]], answer: Any) -> None:
    """Summed file sizes and file count agree with getSeriesSize."""
    try:
        entry = answer[0]
        total, count = int(float(entry["TotalSizeInBytes"])), int(float(entry["ObjectCount"]))
    except (IndexError, KeyError, TypeError, ValueError):
        raise _Invalid(f"getSeriesSize gave no usable answer: {answer!r}") from None
    got_total, got_count = sum(row["bytes"] for row in files), len(files)
    if (got_total, got_count) != (total, count):
        raise _Invalid(f"size mismatch: expected {total} bytes in {count} files, "
                       f"got {got_total} bytes in {got_count} files")


def _verified_files(base_url: str, uid: str, zip_path: Path, verify: str,
                    http_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Checksums of the files in a downloaded zip; _Invalid when it fails verification."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _file_members(zip_path, archive)
            files = sorted((_copy_member(archive, info, rel) for info, rel in members), key=lambda r: r["file"])
            listed = _read_md5_list(zip_path, archive) if verify == "md5" else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise _Invalid(f"corrupt zip ({error})") from None
    if not files:
        raise _Invalid("zip holds no files")
    if listed is not None:
        _verify_md5(files, listed)
    else:
        answer = get_json(_endpoint(base_url, "getSeriesSize"), params={"SeriesInstanceUID": uid}, **http_kwargs)
        _verify_size(files, answer)
    return files


def _download_verified(base_url: str, uid: str, zip_path: Path, verify: str,
                       http_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fetch and verify the series zip, re-downloading a zip that fails verification."""
    if verify == "md5":
        url, params = _endpoint(base_url, "getImageWithMD5Hash"), {"SeriesInstanceUID": uid}
    else:
        url, params = _endpoint(base_url, "getImage"), {"NewFileNames": "Yes", "SeriesInstanceUID": uid}
    retries, backoff = http_kwargs.get("retries", 4), http_kwargs.get("backoff", 0.5)
    reason = "no attempt made"
    for number in range(retries + 1):
        if number:
            http.sleep(backoff * 2 ** (number - 1))
        try:
            # A zip already at zip_path is complete (fetch renames only finished bodies) but unverified.
            info = fetch(url, zip_path, params=params, resume=False, **http_kwargs)
            return info, _verified_files(base_url, uid, zip_path, verify, http_kwargs)
        except _Invalid as error:
            reason = str(error)
            zip_path.unlink(missing_ok=True)
        except UnsafeArchiveError:
            zip_path.unlink(missing_ok=True)
            raise
        except DownloadError as error:
            raise DownloadError(f"series {uid}: {error}") from error
    raise DownloadError(f"series {uid}: verification ({verify}) failed after {retries + 1} downloads; "
                        f"last error: {reason}")


def _license_sha256(zip_path: Path) -> str | None:
    """sha256 of the zip's LICENSE entry (getImage writes one), None when it has none."""
    with zipfile.ZipFile(zip_path) as archive:
        names = [info for info in archive.infolist() if info.filename == LICENSE_ENTRY]
        return http.digest_stream(archive.open(names[0]))[1] if names else None


def _read_marker(marker_path: Path, uid: str) -> dict[str, Any] | None:
    """The completion marker of a verified series, or None when absent or unreadable."""
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("series_uid") != uid or not isinstance(marker.get("files"), list):
        return None
    return marker


def _is_extracted(series_dir: Path, files: list[dict[str, Any]]) -> bool:
    """Every file of the marker is in place with its size (a cheap check; extraction is atomic)."""
    for row in files:
        path = series_dir.joinpath(*row["file"].split("/"))
        if not path.is_file() or path.stat().st_size != row["bytes"]:
            return False
    return True


def download_series(base_url: str, series: dict[str, Any], downloads_dir: str | Path, out_dir: str | Path,
                    verify: str = "md5", **http_kwargs: Any) -> list[dict[str, Any]]:
    """Download, verify and extract one series to ``out_dir/<uid>/``; return per-file checksums.

    A series with a completion marker makes no request: it is only re-extracted from the kept
    zip when its folder is incomplete. ``http_kwargs`` go to :func:`~stages.sources.http.fetch`.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    uid = _series_uid(series)
    downloads_dir, out_dir = Path(downloads_dir), Path(out_dir)
    zip_path, marker_path, series_dir = downloads_dir / f"{uid}.zip", downloads_dir / f"{uid}.json", out_dir / uid
    marker = _read_marker(marker_path, uid)
    if marker is not None and _is_extracted(series_dir, marker["files"]):
        return marker["files"]
    if marker is None or not zip_path.exists():
        marker_path.unlink(missing_ok=True)
        info, files = _download_verified(base_url, uid, zip_path, verify, http_kwargs)
        marker = {"series_uid": uid, "series": series, "verify": verify, "files": files,
                  "zip": {key: info[key] for key in ("bytes", "sha256", "md5")},
                  "license_sha256": _license_sha256(zip_path)}
        write_json(marker_path, marker)
    extracted = safe_extract(zip_path, series_dir)
    expected = {(row["file"], row["md5"]) for row in marker["files"]}
    if {(row["file"], row["md5"]) for row in extracted} != expected:
        shutil.rmtree(series_dir, ignore_errors=True)
        marker_path.unlink(missing_ok=True)  # the kept zip changed since verification: verify it again
        raise DownloadError(f"series {uid}: extracted files differ from the verified ones in {marker_path.name}")
    return marker["files"]


def download_collection(base_url: str, collection: str, modalities: str | Iterable[str],
                        downloads_dir: str | Path, out_dir: str | Path, *, workers: int = 4,
                        verify: str = "md5", progress: bool = True, **http_kwargs: Any) -> pd.DataFrame:
    """Download every series of ``collection``; return the file manifest (:data:`MANIFEST_COLUMNS`).

    Series run ``workers`` at a time. A failing series does not stop the others; once all are
    done, DownloadError lists the failures. Finished series keep their markers, so a rerun only
    fetches what failed.
    """
    series_list = list_series(base_url, collection, modalities, **http_kwargs)
    if not series_list:
        raise DownloadError(f"getSeries returned no series for collection {collection!r}, modalities {modalities!r}")
    meta = {str(s["SeriesInstanceUID"]): {"study_uid": str(s.get("StudyInstanceUID", "")),
                                          "patient_id": str(s.get("PatientID", "")), "modality": str(s.get("Modality", ""))}
            for s in series_list}
    return download_all(series_list, meta, lambda series: download_series(
        base_url, series, downloads_dir, out_dir, verify, **http_kwargs), collection, workers, progress)


def download_all(series_list: list[dict[str, Any]], meta: dict[str, dict[str, str]], download: Callable,
                 label: str, workers: int, progress: bool) -> pd.DataFrame:
    """Run ``download(series)`` for every series, ``workers`` at a time, and return the manifest
    (:data:`MANIFEST_COLUMNS`; ``meta``: series UID -> study_uid, patient_id, modality). A failing
    series does not stop the others; DownloadError then lists every failure. Shared by the NBIA
    and IDC downloaders."""
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(download, series): str(series["SeriesInstanceUID"]) for series in series_list}
        try:
            for future in progress_bar(as_completed(futures), total=len(futures), desc=label,
                                       unit="series", disable=not progress):
                uid = futures[future]
                try:
                    files = future.result()
                except Exception as error:  # noqa: BLE001 - reported together below
                    text = str(error) if isinstance(error, DownloadError) else f"{type(error).__name__}: {error}"
                    failures[uid] = text.removeprefix(f"series {uid}: ")
                    continue
                rows += [{"series_uid": uid, **meta[uid], **row, "file": f"{uid}/{row['file']}"} for row in files]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    if failures:
        listing = "\n".join(f"  {uid}: {reason}" for uid, reason in sorted(failures.items()))
        raise DownloadError(f"{label}: {len(failures)} of {len(series_list)} series failed "
                            f"(finished ones are kept; rerun to retry):\n{listing}")
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return manifest.sort_values(["series_uid", "file"], kind="stable").reset_index(drop=True)


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest CSV atomically, in :data:`MANIFEST_COLUMNS` order."""
    return write_csv(path, manifest, MANIFEST_COLUMNS)
