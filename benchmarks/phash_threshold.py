"""Benchmark: the perceptual-hash distance that separates copies from distinct patients, on real radiographs.

    python benchmarks/phash_threshold.py        # writes metrics/phash_threshold.json and docs/leakage_threshold.md
    python benchmarks/phash_threshold.py --data ../shared/data/cohen-severity --out OUT.json --doc OUT.md

The leakage audit (``stages/validation/leakage.py``) calls a severity image and a pretraining image
one when a hash of the severity image (``phash``, ``phash_mirrored``, ``phash_cropped``) is within
``validate.phash_max_distance`` bits of the other image's ``phash``. The threshold must be above the
distance between an image and its own copies and below the distance between images of distinct
patients. Both are measured here on the 93 real images of the covid-chestxray-dataset severity
subset (``../shared/data/cohen-severity``, patient ids from its ``metadata.csv``), each read as a
grey float image in [0, 1] (PIL ``convert("L")``):

* distinct patients: every pair of images of different patients, under the plain hash and under the
  audit's comparison (the smallest distance over the mirrored and cropped hashes too, either image
  on the severity side); pairs of one patient's different images are reported apart;
* copies: each image re-encoded (JPEG), rescaled then JPEG, re-windowed (contrast, gamma), cropped
  by boxes like COVID-Net's and flipped, each compared as the audit compares it (a crop against the
  original cut by the same box, a flip against the mirrored hash), and also as the plain hash would.

The recommended threshold is the largest candidate (8 to 32 bits) with no distinct-patient pair at
or below it; the JSON and the doc also give the sample's largest clean threshold (one below its
closest distinct pair) and which copy kinds each setting finds. The output is a pure function of
the images (no timings, sorted keys, rounded floats), and the doc is written from the same figures
so the two cannot drift apart. About half a minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from stages.common.io import write_json, write_text  # noqa: E402
from stages.imaging.hashing import PHASH_BITS, hamming, hamming_matrix, perceptual_hash  # noqa: E402
from stages.imaging.preprocess import crop_box, to_uint8  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cohen-severity"
DEFAULT_OUT = REPO / "metrics" / "phash_threshold.json"
DEFAULT_DOC = REPO / "docs" / "leakage_threshold.md"
SOURCE = "github.com/ieee8023/covid-chestxray-dataset, commit 584034aa of 2020-06-22"
CANDIDATES = (8, 12, 16, 20, 24, 32)
PERCENTILES = (1, 5, 50)

def configured_threshold() -> int:
    """``validate.phash_max_distance`` as params.yaml sets it now (the doc reports what it does)."""
    return int(yaml.safe_load((REPO / "params.yaml").read_text())["validate"]["phash_max_distance"])
HISTOGRAM_BIN = 8  # bits per row of the text histograms
BAR_WIDTH = 50  # characters of the longest histogram bar

# Crop boxes as fractions (left, top, right, bottom) of the width/height cut away. COVID-Net's
# RICORD boxes (ricord_data_set.txt) cut a median 8% on the left and 4% at the top; a tenth of each
# side is the most these copies model.
CROP_MARGINS: dict[str, tuple[float, float, float, float]] = {
    "box_typical": (0.08, 0.04, 0.0, 0.0),
    "box_5pct": (0.05, 0.05, 0.05, 0.05),
    "box_10pct": (0.10, 0.10, 0.10, 0.10),
}
KINDS = ("reencoded", "rescaled", "rewindowed", "cropped", "flipped")


def _encode(image: np.ndarray, fmt: str, **options: Any) -> np.ndarray:
    """Round-trip ``image`` through an 8-bit file of ``fmt`` (as a copy on disk would be)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format=fmt, **options)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.float32) / 255.0


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    return _encode(image, "JPEG", quality=quality)


def png(image: np.ndarray) -> np.ndarray:
    """Lossless 8-bit export (COVIDx stores RICORD as PNG): only rounding to 8 bits changes."""
    return to_uint8(image).astype(np.float32) / 255.0


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Resized by ``factor`` with Pillow's default (bicubic) filter, as an export tool would."""
    rows, columns = image.shape
    size = (max(2, round(columns * factor)), max(2, round(rows * factor)))
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize(size, Image.Resampling.BICUBIC),
                      dtype=np.float32).clip(0.0, 1.0)


def window(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """A narrower display window: ``low`` and ``high`` map to black and white, beyond them clipped."""
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def gamma(image: np.ndarray, power: float) -> np.ndarray:
    return np.power(np.clip(image, 0.0, 1.0), power)


def margin_box(shape: tuple[int, int], margins: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """``(xmin, ymin, xmax, ymax)`` cutting the given fractions off each side, as COVID-Net's boxes read."""
    rows, columns = shape
    left, top, right, bottom = margins
    return (round(columns * left), round(rows * top), columns - round(columns * right), rows - round(rows * bottom))


@dataclass(frozen=True)
class Variant:
    """One way of copying an image, and the two comparisons made on it."""

    kind: str  # reencoded, rescaled, rewindowed, cropped, flipped
    name: str
    copy: Callable[[np.ndarray], np.ndarray]  # the copy as a file would hold it
    audit_view: Callable[[np.ndarray], np.ndarray]  # the original as the audit's hash sees it
    audit_method: str  # the leakage method whose hash that is


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def _cropper(margins: tuple[float, float, float, float]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: crop_box(image, margin_box(image.shape, margins))


def variants() -> list[Variant]:
    """Every copy measured, in report order."""
    found = [Variant("reencoded", f"jpeg_q{q}", lambda x, q=q: jpeg(x, q), _identity, "phash")
             for q in (70, 85, 95)]
    found += [Variant("rescaled", f"scale_{f}_jpeg_q85", lambda x, f=f: jpeg(rescale(x, f), 85), _identity, "phash")
              for f in (0.5, 0.75)]
    found += [Variant("rewindowed", f"window_{lo:.2f}_{hi:.2f}", lambda x, lo=lo, hi=hi: png(window(x, lo, hi)),
                      _identity, "phash") for lo, hi in ((0.05, 0.95), (0.10, 0.90))]
    found += [Variant("rewindowed", f"gamma_{g}", lambda x, g=g: png(gamma(x, g)), _identity, "phash")
              for g in (0.8, 1.25)]
    for name, margins in CROP_MARGINS.items():
        cut = _cropper(margins)
        found.append(Variant("cropped", name, lambda x, cut=cut: png(cut(x)), cut, "phash_cropped"))
    cut = _cropper(CROP_MARGINS["box_10pct"])
    found.append(Variant("cropped", "box_10pct_jpeg_q85", lambda x, cut=cut: jpeg(cut(x), 85), cut, "phash_cropped"))
    found.append(Variant("flipped", "mirrored", lambda x: png(np.fliplr(x)), np.fliplr, "phash_mirrored"))
    found.append(Variant("flipped", "mirrored_jpeg_q85", lambda x: jpeg(np.fliplr(x), 85), np.fliplr, "phash_mirrored"))
    return found


def read_grey(path: Path) -> np.ndarray:
    """The image as grey float32 in [0, 1] (RGB and RGBA exports weighted to luma by PIL)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def read_collection(folder: Path) -> list[tuple[str, str]]:
    """``(filename, patient_id)`` of every file in ``folder/images``, sorted by name."""
    images, metadata = folder / "images", folder / "metadata.csv"
    if not images.is_dir() or not metadata.is_file():
        raise SystemExit(f"phash_threshold: no images at {images} or no {metadata.name} beside them: the real test "
                         f"data folder {folder} is absent (see ../shared/data/README.md), or pass --data")
    with metadata.open(newline="", encoding="utf-8") as handle:
        patients = {row["filename"]: row["patientid"].strip() for row in csv.DictReader(handle)}
    names = sorted(path.name for path in images.iterdir() if path.is_file())
    unknown = [name for name in names if not patients.get(name)]
    if unknown:
        raise SystemExit(f"phash_threshold: {len(unknown)} image(s) without a patient id in {metadata}: {unknown[:5]}")
    return [(name, patients[name]) for name in names]


def image_hashes(image: np.ndarray) -> dict[str, str]:
    """The hashes the audit keeps for a severity image: plain, mirrored, and cut by each crop box."""
    hashes = {"phash": perceptual_hash(image), "phash_mirrored": perceptual_hash(np.fliplr(image))}
    for name, margins in CROP_MARGINS.items():
        hashes[f"phash_cropped:{name}"] = perceptual_hash(_cropper(margins)(image))
    return hashes


def copy_distances(image: np.ndarray, plain: str) -> dict[str, dict[str, int]]:
    """``{variant: {"audit": d, "plain": d}}``: the copy's hash against the audit's hash of the
    original and against the original's plain hash."""
    distances = {}
    for variant in variants():
        copied = perceptual_hash(variant.copy(image))
        audit = perceptual_hash(variant.audit_view(image)) if variant.audit_method != "phash" else plain
        distances[variant.name] = {"audit": hamming(copied, audit), "plain": hamming(copied, plain)}
    return distances


def pair_distances(hashes: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Square matrices of distances between every two images: ``plain`` (phash against phash) and
    ``audit`` (the smallest over every severity-side hash against the other's phash, either way round)."""
    plain = [h["phash"] for h in hashes]
    audit = hamming_matrix(plain, plain)
    for key in hashes[0]:
        if key != "phash":
            audit = np.minimum(audit, hamming_matrix([h[key] for h in hashes], plain))
    return {"plain": hamming_matrix(plain, plain), "audit": np.minimum(audit, audit.T)}


def summary(values: list[int] | np.ndarray) -> dict[str, Any]:
    """Count, min, the chosen percentiles and max of integer distances (floats rounded)."""
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"count": 0}
    stats: dict[str, Any] = {"count": int(array.size), "min": int(array.min()), "max": int(array.max()),
                             "mean": round(float(array.mean()), 2), "sd": round(float(array.std()), 2)}
    for p in PERCENTILES:
        stats[f"p{p:02d}"] = round(float(np.percentile(array, p)), 2)
    return stats


def at_or_below(values: list[int] | np.ndarray) -> dict[str, int]:
    array = np.asarray(values)
    return {str(t): int((array <= t).sum()) for t in CANDIDATES}


def measure(folder: Path, limit: int | None = None) -> dict[str, Any]:
    """Every figure of ``metrics/phash_threshold.json`` from the collection in ``folder``
    (``limit``: only the first images by name, for quick checks)."""
    collection = read_collection(folder)[:limit]
    if len(collection) < 2:
        raise SystemExit(f"phash_threshold: {folder} holds {len(collection)} image(s); pairs need two or more")
    hashes, copies = [], []
    for name, _ in collection:
        image = read_grey(folder / "images" / name)
        hashes.append(image_hashes(image))
        copies.append(copy_distances(image, hashes[-1]["phash"]))

    matrices = pair_distances(hashes)
    distinct: dict[str, list[int]] = {"plain": [], "audit": []}
    same: dict[str, list[int]] = {"plain": [], "audit": []}
    closest: dict[str, tuple[int, str, str]] = {}  # the nearest pair of each kind, for the doc
    for i, j in combinations(range(len(collection)), 2):
        group = "same_patient" if collection[i][1] == collection[j][1] else "distinct_patients"
        target = same if group == "same_patient" else distinct
        for key in target:
            target[key].append(int(matrices[key][i, j]))
        closest[group] = min(closest.get(group, (PHASH_BITS + 1, "", "")),
                             (int(matrices["audit"][i, j]), collection[i][0], collection[j][0]))

    per_variant: dict[str, dict[str, Any]] = {}
    for variant in variants():
        audit = [c[variant.name]["audit"] for c in copies]
        plain = [c[variant.name]["plain"] for c in copies]
        per_variant[variant.name] = {"kind": variant.kind, "audit_method": variant.audit_method,
                                     "audit": summary(audit), "plain": summary(plain),
                                     "found_at_or_below": at_or_below(audit)}
    all_audit = [c[v]["audit"] for c in copies for v in per_variant]
    per_kind = {kind: {"audit_max": max(s["audit"]["max"] for s in per_variant.values() if s["kind"] == kind),
                       "plain_min": min(s["plain"]["min"] for s in per_variant.values() if s["kind"] == kind),
                       "plain_max": max(s["plain"]["max"] for s in per_variant.values() if s["kind"] == kind)}
                for kind in KINDS} if copies else {}

    # The sample would allow anything below its closest distinct pair; the candidates stop at 32 so
    # the choice keeps a margin for the audit's comparison, ~3,500 times more pairs (see the doc).
    largest_clean = min(distinct["audit"], default=PHASH_BITS + 1) - 1
    current = configured_threshold()
    recommended = max((t for t in CANDIDATES if t <= largest_clean), default=largest_clean)
    copy_max = max(all_audit, default=0)
    return {
        "source": SOURCE,
        "data": "real radiographs (JPEG/PNG exports), not synthetic",
        "hash_bits": PHASH_BITS,
        "images": len(collection),
        "patients": len({patient for _, patient in collection}),
        "candidates": list(CANDIDATES),
        "crop_margins": {name: list(m) for name, m in CROP_MARGINS.items()},
        "distinct_patients": {key: {**summary(v), "at_or_below": at_or_below(v)} for key, v in distinct.items()},
        "same_patient": {key: {**summary(v), "at_or_below": at_or_below(v)} for key, v in same.items()},
        "copies": {"variants": per_variant, "per_kind": per_kind, "audit": summary(all_audit),
                   "found_at_or_below": at_or_below(all_audit)},
        "histogram": histogram({"copies_audit": all_audit, "distinct_patients_audit": distinct["audit"],
                                "same_patient_audit": same["audit"]}),
        "closest_pairs": {group: {"distance": d, "images": [a, b]} for group, (d, a, b) in sorted(closest.items())},
        "largest_clean_threshold": largest_clean,
        "recommended_threshold": recommended,
        "recommended_finds_every_copy": copy_max <= recommended,
        "copy_kinds_above_recommended": sorted(k for k, v in per_kind.items() if v["audit_max"] > recommended),
        # Kinds a plain-hash comparison misses entirely at the recommended threshold.
        "copy_kinds_missed_by_plain_hash": sorted(k for k, v in per_kind.items() if v["plain_min"] > recommended),
        "current_threshold": {"value": current,
                              "distinct_pairs_at_or_below": int(sum(d <= current for d in distinct["audit"])),
                              "copies_missed": int(sum(d > current for d in all_audit)),
                              "copies_missed_by_variant": {name: stats["audit"]["count"]
                                                           - stats["found_at_or_below"][str(current)]
                                                           for name, stats in per_variant.items()
                                                           if stats["audit"].get("max", 0) > current}},
    }


def histogram(distributions: dict[str, list[int]]) -> dict[str, Any]:
    """Counts per bin of ``HISTOGRAM_BIN`` bits, from 0 to the largest value of any distribution."""
    top = max((max(v) for v in distributions.values() if v), default=0)
    edges = list(range(0, top + HISTOGRAM_BIN, HISTOGRAM_BIN))
    counts = {name: [int(c) for c in np.histogram(values, bins=[*edges, edges[-1] + HISTOGRAM_BIN])[0]]
              for name, values in distributions.items()}
    return {"bins": [f"{lo}-{lo + HISTOGRAM_BIN - 1}" for lo in edges], **counts}


def histogram_lines(table: dict[str, Any], marks: dict[str, str]) -> list[str]:
    """A text histogram: one row per bin, one bar per distribution (scaled to its own largest bin)."""
    width = max(len(b) for b in table["bins"])
    peaks = {name: max(table[name]) or 1 for name in marks}
    lines = []
    for row, label in enumerate(table["bins"]):
        bars = []
        for name, mark in marks.items():
            count = table[name][row]
            bar = mark * (max(1, round(BAR_WIDTH * count / peaks[name])) if count else 0)
            bars.append(f"{count:>5} {bar}")
        lines.append(f"{label:>{width}} bits " + " ".join(bars).rstrip())
    return lines


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _stats_row(label: str, stats: dict[str, Any]) -> str:
    return _row([label, stats["count"], stats["min"], stats["p01"], stats["p05"], stats["p50"], stats["max"]])


def _percent(fractions: list[float]) -> str:
    return "/".join(f"{f:.0%}" for f in fractions)


def render_doc(result: dict[str, Any]) -> str:
    """``docs/leakage_threshold.md`` from :func:`measure`'s result."""
    distinct, same, copies = result["distinct_patients"], result["same_patient"], result["copies"]
    recommended, current = result["recommended_threshold"], result["current_threshold"]
    largest_clean, closest = result["largest_clean_threshold"], result["closest_pairs"]
    header = ["| distribution | count | min | 1st pct | 5th pct | median | max |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines = [
        "# The perceptual-hash threshold of the leakage audit, measured",
        "",
        "<!-- Generated by `python benchmarks/phash_threshold.py` with the figures of",
        "     `metrics/phash_threshold.json`: edit the script and regenerate, not this file. -->",
        "",
        "The leakage audit (`stages/validation/leakage.py`) counts a severity image and a pretraining",
        "image as one when a hash of the severity image (`phash`, `phash_mirrored`, or `phash_cropped`",
        "after COVID-Net's crop box) is within `validate.phash_max_distance` bits of the other image's",
        f"`phash`, a {result['hash_bits']}-bit DCT hash (`stages/imaging/hashing.py`). The threshold must sit",
        "above the distance between an image and its own copies and below the distance between images",
        "of different patients. Both were measured on **real radiographs**, not synthetic phantoms: the",
        f"{result['images']} images of {result['patients']} patients in the severity-scored subset of the COVID-19",
        f"image data collection ({result['source']}), as kept under",
        "`../shared/data/cohen-severity/` (patient ids from its `metadata.csv`). They are JPEG and PNG",
        "exports as the collection publishes them, each read as a grey image in [0, 1] (PIL",
        "`convert(\"L\")`).",
        "",
        "## Distances between images",
        "",
        "*Plain*: `phash` against `phash`. *Audit*: the smallest distance the audit can see, over the",
        "plain, mirrored and cropped hashes of either image against the other's `phash` (the three crop",
        "boxes below stand in for COVID-Net's one box per image: taking the nearest of three makes the",
        "figure conservative).",
        "",
        *header,
        _stats_row("distinct patients, plain", distinct["plain"]),
        _stats_row("distinct patients, audit", distinct["audit"]),
        _stats_row("same patient, other image, plain", same["plain"]),
        _stats_row("same patient, other image, audit", same["audit"]),
        "",
        f"The closest distinct-patient pair is `{closest['distinct_patients']['images'][0]}` and",
        f"`{closest['distinct_patients']['images'][1]}` ({closest['distinct_patients']['distance']} bits). "
        f"The closest same-patient pair, `{closest['same_patient']['images'][0]}`",
        f"and `{closest['same_patient']['images'][1]}` ({closest['same_patient']['distance']} bits), are two "
        "different films of one",
        "patient in near-identical position (seen by eye; the readers scored them differently): a follow-up",
        "film can come as close as a copy. The audit would match such a pair by `patient_id` as well, and a",
        "same-patient match is leakage for a patient-level split anyway.",
        "",
        "## Distances between an image and its copy",
        "",
        "Each image was copied each of these ways. *Audit* compares the copy as the audit does (a crop",
        "against the original cut by the same box, a flip against the original's mirrored hash); *plain*",
        "compares the copy's `phash` with the original's `phash`, as a plain-hash audit would. The crop",
        "boxes cut these fractions of the width or height from the left/top/right/bottom: "
        + "; ".join(f"`{n}` {_percent(m)}" for n, m in result["crop_margins"].items()) + ".",
        "COVID-Net's RICORD boxes (`ricord_data_set.txt`) cut a median 8% on the left and 4% at the top.",
        "Lossless copies are 8-bit PNG; `window_lo_hi` maps `lo`..`hi` to black..white and clips beyond.",
        "",
        "| kind | copy | audit hash | audit median | audit max | plain median | plain max |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, stats in copies["variants"].items():
        lines.append(_row([stats["kind"], f"`{name}`", f"`{stats['audit_method']}`", stats["audit"]["p50"],
                           stats["audit"]["max"], stats["plain"]["p50"], stats["plain"]["max"]]))
    lines += ["", *header, _stats_row("all copies, audit", copies["audit"]), ""]

    lines += ["## Per threshold", "",
              "Pairs at or below each threshold (for distinct patients: false matches) and copies at or",
              "below it (found):", "",
              "| threshold | distinct patients, audit | distinct patients, plain | same patient, audit | copies found |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for t in result["candidates"]:
        key = str(t)
        lines.append(_row([t, distinct["audit"]["at_or_below"][key], distinct["plain"]["at_or_below"][key],
                           same["audit"]["at_or_below"][key],
                           f"{copies['found_at_or_below'][key]} of {copies['audit']['count']}"]))
    lines += ["", f"Histogram under the audit's comparison (bins of {HISTOGRAM_BIN} bits; `c` copies, `#` distinct-patient",
              "pairs, each bar scaled to its own largest bin):", "", "```",
              *histogram_lines(result["histogram"], {"copies_audit": "c", "distinct_patients_audit": "#"}),
              "```", ""]

    missed = current["copies_missed_by_variant"]
    plain_missed = result["copy_kinds_missed_by_plain_hash"]
    farthest_kind = max(copies["per_kind"], key=lambda kind: copies["per_kind"][kind]["audit_max"])
    gap_low, gap_high = copies["audit"]["max"], distinct["audit"]["min"]
    sds_below = (distinct["audit"]["p50"] - recommended) / distinct["audit"]["sd"] if distinct["audit"]["sd"] else 0.0
    lines += [
        "## The threshold",
        "",
        f"**Recommended: {recommended} bits**, the largest candidate with no distinct-patient pair at or below",
        f"it. Copies reach at most {gap_low} bits under the audit's comparison and distinct patients start at",
        f"{gap_high}, so the sample alone would allow anything up to {largest_clean}. The candidates stop at "
        f"{max(result['candidates'])} on",
        f"purpose: {recommended} bits finds "
        + ("every copy" if result["recommended_finds_every_copy"]
           else "all copies but those of kind " + ", ".join(result["copy_kinds_above_recommended"]))
        + f" ({recommended - gap_low} bits above the farthest) and stays {gap_high - recommended} bits below the",
        f"closest distinct pair ({sds_below:.1f} standard deviations below the distinct-patient median): margin for",
        "the real audit's far larger comparison (see below).",
        "",
        f"The configured `validate.phash_max_distance: {current['value']}` (params.yaml; why not "
        f"{recommended}: `docs/settings.md`) has "
        + ("no distinct-patient pair at or below it, so it is safe against false matches,"
           if current["distinct_pairs_at_or_below"] == 0
           else f"{current['distinct_pairs_at_or_below']} distinct-patient pairs at or below it (false matches),")
        + (f" and it misses {current['copies_missed']} of" if not missed else f" but it misses {current['copies_missed']} of"),
        f"{copies['audit']['count']} copies"
        + (": " + ", ".join(f"`{name}` {count}" for name, count in missed.items()) + "." if missed else "."),
        "",
        "A plain-hash audit would miss " + ("every " + " and every ".join(plain_missed) if plain_missed else "no kind of")
        + f" copy at {recommended} bits: mirroring flips the sign of every",
        "odd horizontal DCT coefficient, and a crop shifts and rescales the whole layout (a 5% border moves",
        f"the hash {copies['variants']['box_5pct']['plain']['min']}-{copies['variants']['box_5pct']['plain']['max']} bits, "
        "as far as another patient). The audit catches flips with `phash_mirrored` (the",
        "severity image mirrored before hashing) and crops with `phash_cropped` (the severity image cut",
        "by COVID-Net's own box, the box COVIDx cut its copy with).",
        "",
        "## What this does not cover",
        "",
        f"- {result['images']} images of one public collection give {distinct['audit']['count']} distinct-patient pairs; the audit",
        "  compares 909 severity images with 16,352 pretraining images, about 15 million pairs. Zero",
        f"  pairs here bounds the false-match rate only to about 3 / {distinct['audit']['count']} per pair (the rule of",
        "  three), so the larger comparison's tail may reach lower than this sample's. A `phash` match",
        "  is a candidate to inspect; the `patient_id`, `filename` and `pixel_sha256` methods do not",
        "  depend on the threshold.",
        "- JPEG/PNG exports (many already re-encoded, some cut from figures), not DICOM: RICORD's DICOMs",
        "  are windowed on decoding, and windows or gammas beyond the ones modelled here (0.05-0.95,",
        f"  0.10-0.90, gamma 0.8 and 1.25) are not measured; {farthest_kind} copies come closest to the",
        "  threshold.",
        "- The copies are made here with one library (Pillow): other encoders or resampling filters,",
        f"  borders beyond {max(max(m) for m in result['crop_margins'].values()):.0%} of a side, "
        "rotations and burned-in annotations are not measured.",
        "- The crop boxes are proportional margins (COVID-Net has no boxes for these images), and the",
        "  `phash_cropped` figures assume the audit cuts the severity image by the box the copy was cut",
        "  with. A copy cropped by any other box is compared by the plain hash, which misses it.",
        "",
        "Regenerate with `python benchmarks/phash_threshold.py` (needs `../shared/data/cohen-severity`;",
        "about half a minute); `tests/test_phash_threshold.py` checks that this file and the JSON match",
        "what the script produces.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the cohen-severity folder (images/, metadata.csv)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="metrics JSON to write")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="markdown report to write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = measure(args.data)
    write_json(args.out, result)
    write_text(args.doc, render_doc(result))
    print(f"phash_threshold: {result['images']} images, recommended threshold {result['recommended_threshold']} bits, "
          f"wrote {args.out} and {args.doc} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
