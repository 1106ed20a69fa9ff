"""Stage ``ingest``: decode every raw radiograph once into model-ready uint8 PNGs and image tables.

Each DICOM/PNG/JPEG is decoded (Modality LUT, VOI LUT/window, MONOCHROME1 inverted), cropped to
COVID-Net's box when ``ricord_data_set.txt`` gives one, cropped by the top 8% and resized to
``ingest.image_size``. Each decoded image's exact and perceptual hashes go to the tables, for
validate's leakage audit. DICOMs whose view is not in ``ingest.views`` are left out (listed in
``rejects.csv`` as "filtered"). Training reads only these PNGs and never re-decodes
DICOM. A file that cannot be used is named on stderr and recorded in ``rejects.csv`` with the
reason; above ``ingest.max_reject_fraction`` of a cohort the stage fails.

Two ways to run it:
    python -m stages.ingest --raw data/raw --images data/images --tables data/tables
    python -m stages.ingest INPUT --out OUTPUT.png      # one radiograph, exactly as the pipeline does
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from stages import schema
from stages.common.io import write_bytes, write_csv
from stages.common.pool import default_workers, ordered_map
from stages.common.manifest import write_manifest
from stages.common.progress import progress
from stages.common.params import load_params
from stages.dicomio.read import DICOM_SUFFIXES, UnreadableImage, read_dicom_header, read_raster
from stages.imaging.hashing import perceptual_hash, pixel_sha256
from stages.imaging.preprocess import crop_box
from stages.model_input import Preprocessing, prepare
from stages.sources import SOURCES
from stages.sources.covidnet_files import image_order_in_study, read_crop_boxes, ricord_image_id
from stages.sources.covidx import read_covidx_list, read_not_acquired

SEVERITY_DIR = "severity"
PRETRAIN_DIR = "pretrain"


def encode_png(pixels: np.ndarray) -> bytes:
    """Deterministic PNG bytes (Pillow writes no timestamp chunk)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def content_hashes(display: np.ndarray) -> dict[str, str]:
    """The leakage audit's hashes of the whole decoded image (before any crop)."""
    return {"pixel_sha256": pixel_sha256(display), "phash": perceptual_hash(display)}


def severity_hashes(display: np.ndarray, box: tuple[int, int, int, int] | None) -> dict[str, str]:
    """A severity image's hashes: the whole image's, and the two copies a pretraining set may hold
    instead: the image cut to COVID-Net's crop box (COVIDx's RICORD PNGs are cropped by it; the
    whole image's hash when there is no box) and the image mirrored left-right."""
    return {**content_hashes(display),
            "phash_cropped": perceptual_hash(crop_box(display, box)) if box else perceptual_hash(display),
            "phash_mirrored": perceptual_hash(np.fliplr(display))}


def _decode_dicom(task: tuple) -> tuple[bytes | None, dict | None, str | None]:
    path, settings, box = task
    try:
        display, pixels = prepare(path, settings, box)
        return encode_png(pixels), severity_hashes(display, box), None
    except UnreadableImage as err:
        return None, None, str(err)
    except ValueError as err:  # a crop box outside the image
        return None, None, f"{path}: {err}"


def _decode_raster(task: tuple[Path, tuple]) -> tuple[bytes | None, dict | None, str | None]:
    path, settings = task
    try:
        display, pixels = prepare(path, settings, read=read_raster)
        return encode_png(pixels), {
            "rows": display.shape[0], "columns": display.shape[1], **content_hashes(display)}, None
    except UnreadableImage as err:
        return None, None, str(err)


def _map(function, tasks: list, workers: int, description: str) -> list:
    """Ordered parallel map with a progress bar (order keeps the outputs deterministic)."""
    return list(progress(ordered_map(function, tasks, workers), total=len(tasks), desc=description, unit="img"))


def _headers(files: list[Path], raw: Path) -> tuple[list[dict], list[dict]]:
    """Header pass (no pixel data): the fields the image table keeps, and unreadable files."""
    rows, rejects = [], []
    for path in progress(files, desc="read headers", unit="file"):
        try:
            header = asdict(read_dicom_header(path))
        except UnreadableImage as err:
            rejects.append(_reject(path.relative_to(raw).as_posix(), "severity", "unreadable", str(err)))
            continue
        rows.append({**header, "raw_path": path.relative_to(raw).as_posix()})
    return rows, rejects


def _reject(raw_path: str, cohort: str, kind: str, reason: str) -> dict:
    print(f"ingest: {'rejected' if kind == 'unreadable' else 'left out'} {reason}", file=sys.stderr)
    return {"raw_path": raw_path, "cohort": cohort, "kind": kind, "reason": reason}


def read_crop_boxes_if_any(raw: Path) -> dict[str, tuple[int, int, int, int]]:
    """image_id -> COVID-Net crop box, when the reference files were acquired (RICORD only)."""
    path = raw / schema.RICORD_CROP_BOXES
    if not path.exists():
        return {}
    boxes = read_crop_boxes(path)
    return {row.image_id: (row.xmin, row.ymin, row.xmax, row.ymax) for row in boxes.itertuples()}


def ingest_severity(raw: Path, images: Path, prep: Preprocessing, workers: int, source: str,
                    views: tuple[str, ...] = schema.VIEWS) -> tuple[pd.DataFrame, list[dict], int]:
    files = sorted(p for p in (raw / schema.RICORD_IMAGES_DIR).rglob("*")
                   if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES)
    rows, rejects = _headers(files, raw)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=schema.SEVERITY_IMAGE_COLUMNS), rejects, len(files)
    # Nullable integers: a missing age would otherwise turn the column to floats ("45.0" in the CSV).
    table["patient_age_years"] = table["patient_age_years"].astype("Int64")
    # Number the images of each study as the source's names do (COVID-Net's order for RICORD).
    table["index_in_study"] = image_order_in_study(table, SOURCES[source].image_order)
    table = table.sort_values(["study_uid", "index_in_study"], kind="stable")
    table["image_id"] = [
        ricord_image_id(p, s, i)
        for p, s, i in zip(table.patient_id, table.study_uid, table.index_in_study)
    ]
    left_out = ~table.view.isin(views)
    for raw_path, view in zip(table.raw_path[left_out], table.view[left_out]):
        rejects.append(_reject(raw_path, "severity", "filtered", f"{raw_path}: view {view} is not in ingest.views {list(views)}"))
    table = table[~left_out]
    boxes = read_crop_boxes_if_any(raw)
    tasks = [(raw / p, prep, boxes.get(i)) for p, i in zip(table.raw_path, table.image_id)]
    results = _map(_decode_dicom, tasks, workers, "ingest severity")
    decoded = [error is None for _, _, error in results]
    for (_, _, error), raw_path in zip(results, table.raw_path):
        if error is not None:
            rejects.append(_reject(raw_path, "severity", "unreadable", error))
    hashes = [hashed or {} for _, hashed, _ in results]
    table = table.assign(png=[png for png, _, _ in results], source=source,
                         **{column: [h.get(column) for h in hashes]
                            for column in schema.SEVERITY_HASH_COLUMNS})[decoded]
    table["image_path"] = SEVERITY_DIR + "/" + table["image_id"] + ".png"
    for image_path, png in zip(table.image_path, table.png):
        write_bytes(images / image_path, png)
    table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
    return table[schema.SEVERITY_IMAGE_COLUMNS], rejects, len(files)


def ingest_pretrain(raw: Path, images: Path, prep: Preprocessing, workers: int,
                    source: str) -> tuple[pd.DataFrame, list[dict], int]:
    listed = []
    for list_name, rel in schema.COVIDX_LISTS.items():
        path = raw / rel
        if path.exists():
            listed.append(read_covidx_list(path).assign(list=list_name))
    if not listed:
        return pd.DataFrame(columns=schema.PRETRAIN_IMAGE_COLUMNS), [], 0
    table = pd.concat(listed, ignore_index=True)
    table["raw_path"] = schema.COVIDX_IMAGES_DIR + "/" + table["filename"]
    # Images acquire could not find were reported (and bounded) there; leave them out here.
    rejects = []
    not_acquired = read_not_acquired(raw / schema.COVIDX_MISSING)
    absent = [(n, f) in not_acquired for n, f in zip(table.list, table.filename)]
    for raw_path in table.raw_path[absent]:
        rejects.append(_reject(raw_path, "pretrain", "filtered", f"{raw_path}: listed in COVIDx but not acquired"))
    table = table[[not a for a in absent]].reset_index(drop=True)
    tasks = [(raw / p, prep) for p in table.raw_path]
    results = _map(_decode_raster, tasks, workers, "ingest pretrain")
    keep = []
    for i, (png, shape, error) in enumerate(results):
        if error is not None:
            rejects.append(_reject(table.raw_path[i], "pretrain", "unreadable", error))
            continue
        stem = Path(table.filename[i]).stem
        image_path = f"{PRETRAIN_DIR}/{stem}.png"
        write_bytes(images / image_path, png)
        keep.append({"index": i, "image_id": stem, "image_path": image_path, **shape})
    kept = pd.DataFrame(keep, columns=["index", "image_id", "image_path", "rows", "columns",
                                       "pixel_sha256", "phash"])
    table = table.iloc[kept["index"]].reset_index(drop=True)
    table = pd.concat([table, kept.drop(columns="index")], axis=1).assign(source=source)
    return table[schema.PRETRAIN_IMAGE_COLUMNS], rejects, len(results)


def _check_rejects(rejects: list[dict], total: int, cohort: str, max_fraction: float) -> None:
    unreadable = [r for r in rejects if r["cohort"] == cohort and r["kind"] == "unreadable"]
    n = len(unreadable)
    if total and n / total > max_fraction:
        names = ", ".join(r["raw_path"] for r in unreadable)
        raise SystemExit(
            f"ingest: {n} of {total} {cohort} files ({n / total:.1%}) could not be used, above "
            f"ingest.max_reject_fraction={max_fraction:.1%}; see rejects.csv. Files: {names}"
        )


def preprocessing(ingest: dict) -> Preprocessing:
    """The ``ingest`` section's preprocessing settings (shared with ``predict``: stages.model_input)."""
    try:
        return Preprocessing.from_params(ingest)
    except SystemExit as err:
        raise SystemExit(f"ingest: {err}") from None


def run(raw: Path, images: Path, tables: Path, params: dict, workers: int | None = None) -> dict:
    prep = preprocessing(params["ingest"])
    max_fraction = float(params["ingest"]["max_reject_fraction"])
    source = params["data"]["source"]
    views = tuple(params["ingest"].get("views") or schema.VIEWS)
    unknown = sorted(set(views) - set(schema.VIEWS))
    if unknown:
        raise SystemExit(f"ingest: ingest.views {unknown} not among {list(schema.VIEWS)} "
                         f"(the task takes one frontal radiograph; laterals are always left out)")
    workers = workers if workers is not None else default_workers()
    images.mkdir(parents=True, exist_ok=True)
    severity, rejects_s, n_s = ingest_severity(raw, images, prep, workers, source, views)
    pretrain, rejects_p, n_p = ingest_pretrain(raw, images, prep, workers, source)
    rejects = pd.DataFrame(rejects_s + rejects_p, columns=schema.REJECT_COLUMNS)
    write_csv(tables / "rejects.csv", rejects, schema.REJECT_COLUMNS)
    _check_rejects(rejects_s, n_s, "severity", max_fraction)
    _check_rejects(rejects_p, n_p, "pretrain", max_fraction)
    if severity.empty:
        raise SystemExit(f"ingest: no usable severity images under {raw / schema.RICORD_IMAGES_DIR}")
    write_csv(tables / "severity_images.csv", severity, schema.SEVERITY_IMAGE_COLUMNS)
    write_csv(tables / "pretrain_images.csv", pretrain, schema.PRETRAIN_IMAGE_COLUMNS)
    return {"severity": len(severity), "pretrain": len(pretrain), "rejected": len(rejects)}


def ingest_one(path: Path, out: Path, params: dict, box: tuple[int, int, int, int] | None = None) -> None:
    """Preprocess one radiograph exactly as the pipeline does (``box``: COVID-Net's crop box)."""
    _, pixels = prepare(path, preprocessing(params["ingest"]), box)
    write_bytes(out, encode_png(pixels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, help="one DICOM/PNG/JPEG file to preprocess")
    parser.add_argument("--out", type=Path, help="output PNG for a single INPUT")
    parser.add_argument("--crop-box", type=int, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                        help="for a single INPUT: crop box from ricord_data_set.txt, applied first")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--images", type=Path, default=Path("data/images"))
    parser.add_argument("--tables", type=Path, default=Path("data/tables"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.input is not None:
        if args.out is None:
            parser.error("--out is required with INPUT")
        try:
            ingest_one(args.input, args.out, params, tuple(args.crop_box) if args.crop_box else None)
        except (UnreadableImage, ValueError) as err:
            raise SystemExit(f"ingest: {err}") from None
        print(f"ingest: wrote {args.out}")
        return
    summary = run(args.raw, args.images, args.tables, params, args.workers)
    # The stages that read the images depend on this list of them (stages.common.manifest).
    listing, files = write_manifest(args.images)
    print(f"ingest: {summary}; {len(files)} images listed in {listing}")


if __name__ == "__main__":
    main()
