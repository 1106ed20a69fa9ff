"""Stage ``ingest``: decode every raw radiograph once into model-ready uint8 PNGs and image tables.

Each DICOM/PNG/JPEG is decoded (Modality LUT, VOI LUT/window, MONOCHROME1 inverted), cropped by the
top 8% and resized to ``ingest.image_size``. Training reads only these PNGs and never re-decodes
DICOM. A file that cannot be used is named on stderr and recorded in ``rejects.csv`` with the
reason; above ``ingest.max_reject_fraction`` of a cohort the stage fails.

Two ways to run it:
    python -m stages.ingest --raw data/raw --images data/images --tables data/tables
    python -m stages.ingest INPUT --out OUTPUT.png      # one radiograph, exactly as the pipeline does
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from stages import schema
from stages.common.io import write_bytes, write_csv
from stages.common.progress import progress
from stages.common.params import load_params
from stages.dicomio.read import UnreadableImage, read_any, read_dicom, read_raster
from stages.imaging.preprocess import preprocess
from stages.sources.covidx import read_covidx_list

SEVERITY_DIR = "severity"
PRETRAIN_DIR = "pretrain"


def encode_png(pixels: np.ndarray) -> bytes:
    """Deterministic PNG bytes (Pillow writes no timestamp chunk)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _decode_dicom(task: tuple[Path, int, float]) -> tuple[bytes | None, dict | None, str | None]:
    path, size, crop = task
    try:
        display, header = read_dicom(path)
        return encode_png(preprocess(display, size, crop)), asdict(header), None
    except UnreadableImage as err:
        return None, None, str(err)


def _decode_raster(task: tuple[Path, int, float]) -> tuple[bytes | None, dict | None, str | None]:
    path, size, crop = task
    try:
        display = read_raster(path)
        return encode_png(preprocess(display, size, crop)), {
            "rows": display.shape[0], "columns": display.shape[1]}, None
    except UnreadableImage as err:
        return None, None, str(err)


def _map(function, tasks: list, workers: int, description: str) -> list:
    """Ordered parallel map with a progress bar (order keeps the outputs deterministic)."""
    if workers <= 1 or len(tasks) < 8:
        return [function(t) for t in progress(tasks, desc=description, unit="img")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(function, tasks, chunksize=8)
        return list(progress(results, total=len(tasks), desc=description, unit="img"))


def ricord_image_id(patient_id: str, study_uid: str, index: int) -> str:
    """COVID-Net's RICORD naming, so the published reference split applies to our images."""
    return f"MIDRC-RICORD-1C-{patient_id}-{study_uid[-5:]}-{index}"


def _patient_suffix(patient_id: str) -> str:
    # RICORD patient ids already start with the collection prefix; keep only the patient part.
    prefix = "MIDRC-RICORD-1C-"
    return patient_id[len(prefix):] if patient_id.startswith(prefix) else patient_id


def ingest_severity(raw: Path, images: Path, size: int, crop: float, workers: int,
                    source: str) -> tuple[pd.DataFrame, list[dict], int]:
    files = sorted(p for p in (raw / schema.RICORD_IMAGES_DIR).rglob("*") if p.is_file())
    results = _map(_decode_dicom, [(p, size, crop) for p in files], workers, "ingest severity")
    rows, rejects = [], []
    for path, (png, header, error) in zip(files, results):
        rel = path.relative_to(raw).as_posix()
        if error is not None:
            print(f"ingest: rejected {error}", file=sys.stderr)
            rejects.append({"raw_path": rel, "cohort": "severity", "reason": error})
            continue
        rows.append({**header, "raw_path": rel, "png": png, "source": source})
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=schema.SEVERITY_IMAGE_COLUMNS), rejects, len(files)
    # Number the images of each study in a stable order, as COVID-Net's file names do.
    table = table.sort_values(["study_uid", "series_uid", "instance_number", "sop_uid"], kind="stable")
    table["index_in_study"] = table.groupby("study_uid").cumcount()
    table["image_id"] = [
        ricord_image_id(_patient_suffix(p), s, i)
        for p, s, i in zip(table.patient_id, table.study_uid, table.index_in_study)
    ]
    table["image_path"] = SEVERITY_DIR + "/" + table["image_id"] + ".png"
    for image_path, png in zip(table.image_path, table.png):
        write_bytes(images / image_path, png)
    table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
    return table[schema.SEVERITY_IMAGE_COLUMNS], rejects, len(files)


def ingest_pretrain(raw: Path, images: Path, size: int, crop: float, workers: int,
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
    tasks = [(raw / p, size, crop) for p in table.raw_path]
    results = _map(_decode_raster, tasks, workers, "ingest pretrain")
    keep, rejects = [], []
    for i, (png, shape, error) in enumerate(results):
        if error is not None:
            print(f"ingest: rejected {error}", file=sys.stderr)
            rejects.append({"raw_path": table.raw_path[i], "cohort": "pretrain", "reason": error})
            continue
        stem = Path(table.filename[i]).stem
        image_path = f"{PRETRAIN_DIR}/{stem}.png"
        write_bytes(images / image_path, png)
        keep.append({"index": i, "image_id": stem, "image_path": image_path, **shape})
    kept = pd.DataFrame(keep, columns=["index", "image_id", "image_path", "rows", "columns"])
    table = table.iloc[kept["index"]].reset_index(drop=True)
    table = pd.concat([table, kept.drop(columns="index")], axis=1).assign(source=source)
    return table[schema.PRETRAIN_IMAGE_COLUMNS], rejects, len(results)


def _check_rejects(rejects: list[dict], total: int, cohort: str, max_fraction: float) -> None:
    n = sum(r["cohort"] == cohort for r in rejects)
    if total and n / total > max_fraction:
        names = ", ".join(r["raw_path"] for r in rejects if r["cohort"] == cohort)
        raise SystemExit(
            f"ingest: {n} of {total} {cohort} files ({n / total:.1%}) could not be used, above "
            f"ingest.max_reject_fraction={max_fraction:.1%}; see rejects.csv. Files: {names}"
        )


def run(raw: Path, images: Path, tables: Path, params: dict, workers: int | None = None) -> dict:
    size = int(params["ingest"]["image_size"])
    crop = float(params["ingest"]["crop_top_fraction"])
    max_fraction = float(params["ingest"]["max_reject_fraction"])
    source = params["data"]["source"]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    images.mkdir(parents=True, exist_ok=True)
    severity, rejects_s, n_s = ingest_severity(raw, images, size, crop, workers, source)
    pretrain, rejects_p, n_p = ingest_pretrain(raw, images, size, crop, workers, source)
    rejects = pd.DataFrame(rejects_s + rejects_p, columns=schema.REJECT_COLUMNS)
    write_csv(tables / "rejects.csv", rejects, schema.REJECT_COLUMNS)
    _check_rejects(rejects_s, n_s, "severity", max_fraction)
    _check_rejects(rejects_p, n_p, "pretrain", max_fraction)
    if severity.empty:
        raise SystemExit(f"ingest: no usable severity images under {raw / schema.RICORD_IMAGES_DIR}")
    write_csv(tables / "severity_images.csv", severity, schema.SEVERITY_IMAGE_COLUMNS)
    write_csv(tables / "pretrain_images.csv", pretrain, schema.PRETRAIN_IMAGE_COLUMNS)
    return {"severity": len(severity), "pretrain": len(pretrain), "rejected": len(rejects)}


def ingest_one(path: Path, out: Path, params: dict) -> None:
    """Preprocess one radiograph exactly as the pipeline does."""
    display = read_any(path)
    pixels = preprocess(display, int(params["ingest"]["image_size"]),
                        float(params["ingest"]["crop_top_fraction"]))
    write_bytes(out, encode_png(pixels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, help="one DICOM/PNG/JPEG file to preprocess")
    parser.add_argument("--out", type=Path, help="output PNG for a single INPUT")
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
            ingest_one(args.input, args.out, params)
        except UnreadableImage as err:
            raise SystemExit(f"ingest: {err}") from None
        print(f"ingest: wrote {args.out}")
        return
    summary = run(args.raw, args.images, args.tables, params, args.workers)
    print(f"ingest: {summary}")


if __name__ == "__main__":
    main()
