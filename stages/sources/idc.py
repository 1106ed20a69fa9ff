"""Download RSNA RICORD 1c from the NCI Imaging Data Commons (IDC), TCIA's successor for public DICOM.

Why IDC beside NBIA: TCIA's own client (``tcia_utils``) and notebooks move public collections to
IDC, which keeps every DICOM instance as one object in a public bucket, anonymous and static:
objects have a Content-Length, honour Range (a cut download resumes where it stopped) and, uploaded
whole, carry their MD5 as ETag. IDC's index (the PyPI package ``idc-index-data``, the file
``idc_index.parquet`` that the IDC team's client ``idc-index`` reads) lists every series with its
bucket, its ``crdc_series_uuid`` (the object prefix), ``instanceCount`` and ``series_size_MB``
(the sum of its files' sizes / 10^6, exact to the byte), so each series is checked against the
index before and after its download.

Protocol (the one ``idc-index`` drives through s5cmd with ``--no-sign-request``; here plain HTTPS):

    GET {bucket_url}/?list-type=2&prefix=<crdc_series_uuid>/[&continuation-token=..]  -> S3 ListObjectsV2 XML
    GET {bucket_url}/<crdc_series_uuid>/<crdc_instance_uuid>.dcm                         -> the DICOM file

``bucket_url`` is a template with ``{bucket}``: ``https://{bucket}.s3.amazonaws.com`` (AWS,
virtual-host style) by default; tests point it at a local S3-compatible server.

Resumption is per file (``.part`` + Range, :func:`stages.sources.http.fetch`) and per series (a
completion marker ``<downloads>/<SeriesInstanceUID>.json`` after verification; a rerun makes no
request for a marked series). Files land in ``<out>/<SeriesInstanceUID>/`` all or nothing.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import requests

from stages.common.io import atomic_folder, write_json
from stages.sources import http, nbia
from stages.sources.http import DownloadError, fetch

DEFAULT_BUCKET_URL = "https://{bucket}.s3.amazonaws.com"
RICORD_1C = "midrc_ricord_1c"  # IDC's collection_id for TCIA's MIDRC-RICORD-1C
INDEX_COLUMNS = ["collection_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
                 "SeriesNumber", "SeriesDescription", "PatientAge", "PatientSex", "instanceCount",
                 "series_size_MB", "aws_bucket", "crdc_series_uuid"]
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def load_index(collection: str = RICORD_1C) -> tuple[pd.DataFrame, str]:
    """IDC's series index for ``collection`` and the index's version (``idc-index-data``)."""
    try:
        import idc_index_data
    except ImportError:
        raise SystemExit("acquire: ricord.service 'idc' reads IDC's index from the package idc-index-data "
                         "(with pyarrow); install the locked environment (make install)") from None
    index = pd.read_parquet(idc_index_data.IDC_INDEX_PARQUET_FILEPATH, columns=INDEX_COLUMNS,
                            filters=[("collection_id", "==", collection)])
    if index.empty:
        raise SystemExit(f"acquire: IDC's index {idc_index_data.__version__} has no collection {collection!r}")
    return index.reset_index(drop=True), str(idc_index_data.__version__)


def series_bytes(series_size_mb: float) -> int:
    """The index's series size in bytes: it stores the byte sum divided by 10^6 (idc_index.sql)."""
    return int(round(float(series_size_mb) * 1_000_000))


def list_objects(bucket_url: str, bucket: str, prefix: str, page_size: int | None = None,
                 **http_kwargs: Any) -> list[dict[str, Any]]:
    """Every object under ``prefix`` (ListObjectsV2, all pages of ``page_size`` keys, S3's 1,000 by
    default): key, size, etag (unquoted)."""
    base = bucket_url.format(bucket=bucket).rstrip("/") + "/"
    found: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"list-type": "2", "prefix": prefix, **({"max-keys": str(page_size)} if page_size else {}),
                  **({"continuation-token": token} if token else {})}
        body = _get_text(base, params, http_kwargs)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as error:
            raise DownloadError(f"{base} {params}: not an S3 listing ({error})") from None
        for item in root.iter(f"{_S3}Contents"):
            found.append({"key": item.findtext(f"{_S3}Key", ""), "size": int(item.findtext(f"{_S3}Size", "-1")),
                          "etag": item.findtext(f"{_S3}ETag", "").strip('"').lower()})
        token = root.findtext(f"{_S3}NextContinuationToken")
        if root.findtext(f"{_S3}IsTruncated", "false").lower() != "true" or not token:
            return sorted(found, key=lambda o: o["key"])


def _get_text(url: str, params: dict, http_kwargs: dict[str, Any]) -> str:
    """GET a small text body with fetch's retry policy (5xx, timeouts retried; 4xx not)."""
    retries, backoff, timeout = (http_kwargs.get("retries", 4), http_kwargs.get("backoff", 0.5),
                                 http_kwargs.get("timeout", 60.0))

    def attempt() -> str:
        with requests.get(url, params=params, timeout=timeout) as response:
            http._check_status(response, f"{url} {params}")
            return response.text

    return http._with_retries(f"{url} {params}", attempt, retries, backoff)


def _check_against_index(uid: str, objects: list[dict[str, Any]], count: int, size: int, what: str) -> None:
    got_count, got_size = len(objects), sum(o["size"] for o in objects)
    if (got_count, got_size) != (count, size):
        raise DownloadError(f"series {uid}: {what} holds {got_count} files, {got_size} bytes; IDC's index says "
                            f"{count} files, {size} bytes")


def download_series(row: dict[str, Any], bucket_url: str, downloads_dir: str | Path, out_dir: str | Path,
                    **http_kwargs: Any) -> list[dict[str, Any]]:
    """Download, verify and place one series (an index row) in ``out_dir/<SeriesInstanceUID>/``."""
    uid = nbia._series_uid(row)
    downloads_dir, out_dir = Path(downloads_dir), Path(out_dir)
    marker_path, series_dir = downloads_dir / f"{uid}.json", out_dir / uid
    marker = nbia._read_marker(marker_path, uid)
    if marker is not None and nbia._is_extracted(series_dir, marker["files"]):
        return marker["files"]
    count, size = int(row["instanceCount"]), series_bytes(row["series_size_MB"])
    files_dir = downloads_dir / uid
    if marker is None:
        prefix = f"{row['crdc_series_uuid']}/"
        objects = list_objects(bucket_url, str(row["aws_bucket"]), prefix, **http_kwargs)
        _check_against_index(uid, objects, count, size, f"s3://{row['aws_bucket']}/{prefix}")
        base = bucket_url.format(bucket=row["aws_bucket"]).rstrip("/")
        files = []
        for obj in objects:
            name = obj["key"][len(prefix):]
            if not nbia._UID.match(name) or ".." in name:
                raise DownloadError(f"series {uid}: refusing object name {obj['key']!r}")
            md5 = obj["etag"] if len(obj["etag"]) == 32 and "-" not in obj["etag"] else None  # multipart: no MD5
            info = fetch(f"{base}/{obj['key']}", files_dir / name, size=obj["size"], md5=md5, **http_kwargs)
            files.append({"file": name, "bytes": info["bytes"], "md5": info["md5"], "sha256": info["sha256"]})
        _check_against_index(uid, [{"size": f["bytes"]} for f in files], count, size, "the download")
        marker = {"series_uid": uid, "series": _plain(row), "verify": "idc-index", "files": files}
        write_json(marker_path, marker)
    _place_series(files_dir, series_dir, marker["files"])
    return marker["files"]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The index row as JSON-ready values."""
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def _place_series(files_dir: Path, series_dir: Path, files: list[dict[str, Any]]) -> None:
    """Link (or copy) the verified files into ``series_dir``, all or nothing."""
    with atomic_folder(series_dir) as staging:
        for row in files:
            source = files_dir / row["file"]
            if not source.is_file() or source.stat().st_size != row["bytes"]:
                raise DownloadError(f"{source}: missing or changed since it was verified; delete "
                                    f"{files_dir.parent / (files_dir.name + '.json')} to fetch the series again")
            try:
                os.link(source, staging / row["file"])
            except OSError:
                shutil.copyfile(source, staging / row["file"])


def download_collection(index: pd.DataFrame, modalities: str | Iterable[str], downloads_dir: str | Path,
                        out_dir: str | Path, *, bucket_url: str = DEFAULT_BUCKET_URL, workers: int = 4,
                        progress: bool = True, **http_kwargs: Any) -> pd.DataFrame:
    """Every series of ``index`` (IDC's rows of one collection) in ``modalities``; returns the file
    manifest in NBIA's columns (:data:`stages.sources.nbia.MANIFEST_COLUMNS`). A failing series
    does not stop the others; DownloadError lists the failures at the end."""
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    rows = index[index.Modality.isin(modalities)].sort_values("SeriesInstanceUID").to_dict("records")
    if not rows:
        raise DownloadError(f"IDC's index lists no series in modalities {modalities}")
    meta = {row["SeriesInstanceUID"]: {"study_uid": row["StudyInstanceUID"], "patient_id": row["PatientID"],
                                       "modality": row["Modality"]} for row in rows}
    return nbia.download_all(rows, meta, lambda row: download_series(row, bucket_url, downloads_dir, out_dir,
                                                                     **http_kwargs), "IDC", workers, progress)


def index_summary(index: pd.DataFrame) -> dict[str, Any]:
    """What the index promises for the collection (for SOURCE.json and the checks)."""
    return {"series": int(len(index)), "studies": int(index.StudyInstanceUID.nunique()),
            "patients": int(index.PatientID.nunique()), "instances": int(index.instanceCount.sum()),
            "bytes": int(sum(series_bytes(v) for v in index.series_size_MB))}

