"""``data.source: ricord``: the real cohort, assembled into the raw layout of ``stages.schema``.

Everything fetched over the network lands first in a download folder (``data/downloads``, outside
DVC's outputs, so a stage rerun or an interruption never throws finished downloads away) and is
verified there; the raw folder is then assembled from those verified files:

- RSNA RICORD 1c radiographs, by ``ricord.service``: from IDC's public buckets (``stages.sources.idc``,
  the default: static files, resumable by Range, checked against IDC's index) or from TCIA's NBIA
  REST API (``stages.sources.nbia``, one verified zip per series), to
  ``ricord/images/<SeriesInstanceUID>/``, listed with checksums in ``ricord/manifest.csv``;
- the MD.ai annotation export, from a URL or a local path, to ``ricord/annotations.json``;
- COVID-Net's reference files (COVIDxSev lists, crop boxes, patient map) at a pinned commit,
  verified by sha256, to ``covidnet/``;
- COVIDx 8B for pretraining: its lists (same commit, sha256) to ``covidx/train.txt`` and
  ``covidx/test.txt`` and the listed images from a local folder (the Kaggle release) or, for
  sources with a URL template (the public GitHub collections), downloaded. Listed images found
  nowhere are reported with their count and names in ``covidx/missing.txt``.

The checksums of everything go to ``SOURCE.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from stages import schema
from stages.common.io import write_json, write_text
from stages.common.progress import progress
from stages.sources import covidnet_files as covidnet, idc, nbia
from stages.sources.covidx import read_covidx_list
from stages.sources.http import DownloadError, fetch, is_url, sha256_file


def _http_kwargs(params: dict) -> dict:
    return {"retries": int(params.get("retries", 4)), "timeout": float(params.get("timeout_s", 120))}


def place(source: Path, dest: Path) -> None:
    """Put a verified file into the raw folder: a hard link when possible (no copy of gigabytes),
    else a copy. The source is only ever read."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def fetch_reference_files(downloads: Path, raw: Path, params: dict) -> dict[str, str]:
    """COVID-Net's CXR-S reference files at the pinned commit, sha256-verified; name -> sha256."""
    base = params.get("covidnet_base_url", covidnet.RAW_BASE_URL)
    checksums = {}
    for name, (repository_path, sha256) in covidnet.REFERENCE_FILES.items():
        local = downloads / "covidnet" / name
        fetch(covidnet.file_url(repository_path, base), local, sha256=sha256, **_http_kwargs(params))
        place(local, raw / schema.COVIDNET_DIR / name)
        checksums[f"{schema.COVIDNET_DIR}/{name}"] = sha256
    return checksums


def annotation_pin(params: dict, pin_file: Path) -> tuple[int | None, str | None]:
    """(bytes, sha256) the annotation export must have: ``ricord.annotations_bytes`` and
    ``ricord.annotations_sha256`` where set, else what the first verified download recorded in
    ``pin_file`` (trust on first use: later runs and re-downloads must give the same file)."""
    size, sha256 = params.get("annotations_bytes"), params.get("annotations_sha256") or None
    if pin_file.is_file():
        seen = json.loads(pin_file.read_text())
        size = size if size is not None else seen.get("bytes")
        sha256 = sha256 or seen.get("sha256")
    return (int(size) if size is not None else None), sha256


def fetch_annotations(downloads: Path, raw: Path, params: dict) -> dict[str, str]:
    """The MD.ai export from a URL (downloaded once, kept) or a local path (read, never moved),
    checked against its size and sha256 pins (:func:`annotation_pin`)."""
    location = str(params["annotations"])
    name = Path(location.split("?")[0]).name
    pin_file = downloads / "annotations" / f"{name}.pin.json"
    size, expected = annotation_pin(params, pin_file)
    if is_url(location):
        local = downloads / "annotations" / name
        info = fetch(location, local, sha256=expected, size=size, **_http_kwargs(params))
        actual, got = info["sha256"], info["bytes"]
    else:
        local = Path(location)
        if not local.is_file():
            raise SystemExit(f"acquire: ricord.annotations {local} is not a file")
        actual, got = sha256_file(local), local.stat().st_size
        if size is not None and got != size:
            raise SystemExit(f"acquire: {local}: {got} bytes, but the annotation export is pinned at {size} "
                             f"(ricord.annotations_bytes or {pin_file})")
        if expected and actual != expected:
            raise SystemExit(f"acquire: {local}: sha256 {actual} does not match the pin {expected} "
                             f"(ricord.annotations_sha256 or {pin_file})")
    if not pin_file.is_file():
        write_json(pin_file, {"source": location, "bytes": got, "sha256": actual})
    place(local, raw / schema.RICORD_ANNOTATIONS)
    return {schema.RICORD_ANNOTATIONS: actual}


def find_covidx_image(folder: Path, list_name: str, filename: str) -> Path | None:
    """A listed image in a local COVIDx copy: its list's folder first, then the other split folders
    (8B and 9B: ``train/``, ``test/``; CXR-4 adds ``val/``, and a later release may move an image
    between splits), then the folder itself (flat)."""
    folders = [list_name] + [name for name in covidnet.COVIDX_FOLDERS if name != list_name]
    for candidate in [folder / name / filename for name in folders] + [folder / filename]:
        if candidate.is_file():
            return candidate
    return None


def missing_reason(filename: str, source: str, folder: Path | None, templates: dict[str, str]) -> str:
    """Why a listed image was found nowhere (written after its name in covidx/missing.txt)."""
    if filename in covidnet.DROPPED_IN_COVIDX_9B:
        return "dropped in COVIDx 9B: no Kaggle copy (9B, CXR-4) has it"
    if source in templates:
        return f"download failed (source {source})"
    if folder is None:
        return f"no ricord.covidx_dir and no URL template for source {source}"
    return f"not in ricord.covidx_dir under {'/, '.join(covidnet.COVIDX_FOLDERS)}/ or flat"


def fetch_covidx(downloads: Path, raw: Path, params: dict) -> dict[str, Any]:
    """COVIDx 8B lists (pinned, sha256) and images (local folder, then URL templates); every listed
    image found nowhere goes to covidx/missing.txt with the reason."""
    base = params.get("covidnet_base_url", covidnet.RAW_BASE_URL)
    folder = Path(params["covidx_dir"]) if params.get("covidx_dir") else None
    if folder is not None and not folder.is_dir():
        raise SystemExit(f"acquire: ricord.covidx_dir {folder} is not a folder")
    templates: dict[str, str] = params.get("covidx_image_urls") or {}
    checksums: dict[str, str] = {}
    missing: list[str] = []
    reasons: Counter[str] = Counter()
    failures: list[str] = []
    found = downloaded = 0
    for list_name, (repository_path, sha256) in covidnet.COVIDX_LIST_FILES.items():
        local = downloads / "covidx" / Path(repository_path).name
        fetch(covidnet.file_url(repository_path, base), local, sha256=sha256, **_http_kwargs(params))
        place(local, raw / schema.COVIDX_LISTS[list_name])
        checksums[schema.COVIDX_LISTS[list_name]] = sha256
        listed = read_covidx_list(local)
        for filename, source in progress(list(zip(listed.filename, listed.covidx_source)),
                                         desc=f"covidx {list_name}", unit="img"):
            path = find_covidx_image(folder, list_name, filename) if folder else None
            if path is None and source in templates and filename not in covidnet.DROPPED_IN_COVIDX_9B:
                path = downloads / "covidx" / "images" / filename
                try:
                    fetch(templates[source].format(filename=filename), path, **_http_kwargs(params))
                    downloaded += 1
                except DownloadError as error:
                    failures.append(str(error))
                    path = None
            if path is None:
                reason = missing_reason(filename, source, folder, templates)
                reasons[reason.split(" (")[0].split(":")[0]] += 1
                missing.append(f"{list_name} {filename} {reason}")
                continue
            found += 1
            place(path, raw / schema.COVIDX_IMAGES_DIR / filename)
    if failures:
        print(f"acquire: {len(failures)} COVIDx image downloads failed; first: {failures[:3]}", file=sys.stderr)
    listing = "".join(f"{m}\n" for m in missing)
    write_text(raw / schema.COVIDX_MISSING, listing)
    write_text(downloads / "covidx" / "missing.txt", listing)  # survives a failed run
    if missing:
        shown = ", ".join(m.split()[1] for m in missing[:10])
        print(f"acquire: {len(missing)} COVIDx images are listed but were found neither in "
              f"ricord.covidx_dir nor at a URL template (see covidx/missing.txt; by reason: {dict(reasons)}): "
              f"{shown}{', ...' if len(missing) > 10 else ''}", file=sys.stderr)
    total = found + len(missing)
    limit = float(params.get("covidx_max_missing_fraction", 0.0))
    if total and len(missing) / total > limit:
        raise SystemExit(
            f"acquire: {len(missing)} of {total} COVIDx images ({len(missing) / total:.1%}) are missing, above "
            f"ricord.covidx_max_missing_fraction={limit:.1%}; point ricord.covidx_dir at the Kaggle release "
            f"(names and reasons in {downloads / 'covidx' / 'missing.txt'})")
    return {"checksums": checksums, "images_found": found, "images_downloaded": downloaded,
            "images_missing": len(missing), "images_missing_by_reason": dict(sorted(reasons.items()))}


SERVICES = ("idc", "nbia")


def fetch_images(downloads: Path, raw: Path, params: dict) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The radiographs from ``ricord.service``: IDC (the default; ``stages.sources.idc``) or TCIA's
    NBIA API (``stages.sources.nbia``); the file manifest and what SOURCE.json says about them."""
    service = params.get("service", "nbia")
    if service not in SERVICES:
        raise SystemExit(f"acquire: ricord.service must be one of {SERVICES}, got {service!r}")
    out, workers = raw / schema.RICORD_IMAGES_DIR, int(params.get("workers", 4))
    if service == "idc":
        index, version = idc.load_index(params.get("idc_collection", idc.RICORD_1C))
        manifest = idc.download_collection(
            index, list(params["modalities"]), downloads / "idc", out, workers=workers,
            bucket_url=params.get("idc_bucket_url", idc.DEFAULT_BUCKET_URL), **_http_kwargs(params))
        return manifest, {"service": "idc", "idc_index_data": version, "collection": idc.RICORD_1C,
                          "bucket_url": params.get("idc_bucket_url", idc.DEFAULT_BUCKET_URL),
                          "index": idc.index_summary(index[index.Modality.isin(list(params["modalities"]))])}
    manifest = nbia.download_collection(
        params["nbia_base_url"], params["collection"], list(params["modalities"]), downloads / "nbia", out,
        workers=workers, verify=params.get("verify", "md5"), **_http_kwargs(params))
    return manifest, {"service": "nbia", "base_url": params["nbia_base_url"], "collection": params["collection"]}


def acquire(raw: Path, downloads: Path, params: dict) -> dict[str, Any]:
    """Assemble the real raw folder; returns what went into ``SOURCE.json``."""
    raw, downloads = Path(raw), Path(downloads)
    checksums = {**fetch_reference_files(downloads, raw, params), **fetch_annotations(downloads, raw, params)}
    manifest, images = fetch_images(downloads, raw, params)
    nbia.write_manifest(manifest, raw / schema.RICORD_DIR / "manifest.csv")
    covidx = fetch_covidx(downloads, raw, params)
    checksums.update(covidx.pop("checksums"))
    return {
        "source": "ricord",
        "images": {**images, "series": int(manifest.series_uid.nunique()) if len(manifest) else 0,
                   "files": int(len(manifest))},
        "sha256": dict(sorted(checksums.items())),
        "covidx": covidx,
    }


def build(staging: Path, downloads: Path, params: dict) -> dict[str, Any]:
    """The ``ricord`` source (:class:`stages.sources.Source`): needs the ``ricord`` params section."""
    if "ricord" not in params:
        raise SystemExit("acquire: data.source 'ricord' needs a 'ricord' section in params.yaml")
    summary = acquire(staging, downloads, params["ricord"])
    write_json(staging / schema.SOURCE_MANIFEST, summary)
    return summary
