"""The perceptual-hash threshold benchmark (benchmarks/phash_threshold.py) and its committed figures.

Synthetic tests check the pairing and the threshold rule on a made-up collection. The tests on the
93 real images of ../shared/data/cohen-severity skip when that folder is absent (and fail when
CI=true, where it must be there); they check the figures with oracles that do not go through the
script (a hash against itself, a flip against the mirrored hash, pair counts from metadata.csv),
and, in the slow tier, that the committed JSON and doc are what the script writes now.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.imaging.hashing import hamming, hamming_matrix, perceptual_hash
from tests.conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "benchmarks"))
import phash_threshold  # noqa: E402

COHEN = SHARED_DATA / "cohen-severity"
COMMITTED_JSON = REPO / "metrics" / "phash_threshold.json"
COMMITTED_DOC = REPO / "docs" / "leakage_threshold.md"
SAMPLE = 6  # real images per quick check: the smallest ones, so the checks take seconds


@pytest.fixture(scope="module")
def cohen() -> Path:
    """The real collection; skipped when absent, except under CI where the data must be present."""
    if not (COHEN / "images").is_dir():
        reason = f"real test data not found at {COHEN} (the ../shared/data folder is absent)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return COHEN


@pytest.fixture(scope="module")
def small_real_images(cohen: Path) -> list[np.ndarray]:
    """The SAMPLE smallest real images as grey floats in [0, 1], read with PIL here, not by the script."""
    paths = sorted((cohen / "images").iterdir(), key=lambda p: (p.stat().st_size, p.name))[:SAMPLE]
    return [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255.0 for p in paths]


def _jpeg(image: np.ndarray, quality: int = 85) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.float32) / 255.0


def _write_collection(folder: Path, images: dict[str, tuple[np.ndarray, str]]) -> Path:
    """A cohen-severity-like folder: images/ and metadata.csv (filename, patientid)."""
    (folder / "images").mkdir(parents=True)
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "patientid", "view"])
        for name, (pixels, patient) in images.items():
            Image.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)).save(folder / "images" / name)
            writer.writerow([name, patient, "PA"])
    return folder


def _smooth(seed: int, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    """A random grey image with detail at the hash's scale (a coarser one leaves many of the 16x16
    DCT coefficients near their median, so a re-encode flips bits a radiograph's would not)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((24, 20)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.Resampling.BICUBIC)).clip(0, 1)


# --- made-up collections: no real data needed ---------------------------------------------------

def test_absent_folder_is_named_in_the_error(tmp_path):
    with pytest.raises(SystemExit, match=str(tmp_path / "nowhere")):
        phash_threshold.measure(tmp_path / "nowhere")


def test_pairs_split_by_patient_and_a_mirrored_copy_counts_as_one(tmp_path):
    a, b = _smooth(1), _smooth(2)
    folder = _write_collection(tmp_path / "c", {
        "a1.png": (a, "1"), "a2.png": (_jpeg(a, 90), "1"),  # one patient, an image and its re-encode
        "b.png": (b, "2"),
        "c.png": (np.fliplr(a), "3"),  # another "patient" holding a mirrored copy of a
    })
    result = phash_threshold.measure(folder)
    assert result["images"] == 4 and result["patients"] == 3
    assert result["same_patient"]["plain"]["count"] == 1
    assert result["distinct_patients"]["plain"]["count"] == comb(4, 2) - 1
    assert result["same_patient"]["plain"]["max"] <= 4  # a re-encode stays within a few bits
    # The mirrored copy is far under the plain hash, but the audit's mirrored hash finds it, so no
    # threshold is clean and the recommendation falls below every candidate.
    assert result["distinct_patients"]["audit"]["min"] == 0 < result["distinct_patients"]["plain"]["min"]
    assert result["largest_clean_threshold"] == -1 and result["recommended_threshold"] == -1
    assert result["recommended_finds_every_copy"] is False
    assert "## The threshold" in phash_threshold.render_doc(result)


def test_recommendation_is_the_largest_clean_candidate(tmp_path):
    folder = _write_collection(tmp_path / "c", {f"{i}.png": (_smooth(10 + i), str(i)) for i in range(4)})
    result = phash_threshold.measure(folder)
    closest = result["distinct_patients"]["audit"]["min"]
    assert result["largest_clean_threshold"] == closest - 1
    clean = [t for t in phash_threshold.CANDIDATES if t < closest]
    assert result["recommended_threshold"] == (max(clean) if clean else closest - 1)
    assert result["closest_pairs"]["distinct_patients"]["distance"] == closest


# --- the real images -----------------------------------------------------------------------------

def test_a_real_image_is_zero_bits_from_itself(small_real_images):
    hashes = [perceptual_hash(image) for image in small_real_images]
    assert [perceptual_hash(image.copy()) for image in small_real_images] == hashes
    assert np.diag(hamming_matrix(hashes, hashes)).tolist() == [0] * len(hashes)


def test_a_flipped_real_image_is_found_by_the_mirrored_hash_only(small_real_images):
    for image in small_real_images:
        flipped_copy = _jpeg(np.fliplr(image))
        assert hamming(perceptual_hash(flipped_copy), perceptual_hash(np.fliplr(image))) <= 8
        assert hamming(perceptual_hash(flipped_copy), perceptual_hash(image)) > 32  # the plain hash misses it


def test_the_script_copies_are_what_they_claim(small_real_images):
    image = small_real_images[0]
    copies = {v.name: v for v in phash_threshold.variants()}
    assert np.array_equal(copies["mirrored"].copy(image), np.fliplr(image))  # 8-bit input: PNG is lossless
    rows, columns = image.shape
    cut = copies["box_10pct"].copy(image)
    assert cut.shape == (rows - 2 * round(rows * 0.1), columns - 2 * round(columns * 0.1))
    assert np.array_equal(cut, image[round(rows * 0.1):rows - round(rows * 0.1),
                                     round(columns * 0.1):columns - round(columns * 0.1)])
    window = copies["window_0.10_0.90"].copy(image)
    assert window[image <= 0.1].max(initial=0) == 0 and window[image >= 0.9].min(initial=1) == 1
    assert copies["scale_0.5_jpeg_q85"].copy(image).shape == (round(rows / 2), round(columns / 2))


def test_committed_counts_match_metadata(cohen):
    result = json.loads(COMMITTED_JSON.read_text())
    with (cohen / "metadata.csv").open(newline="") as handle:
        patient = {row["filename"]: row["patientid"] for row in csv.DictReader(handle)}
    names = sorted(p.name for p in (cohen / "images").iterdir())
    per_patient = Counter(patient[name] for name in names)
    same_pairs = sum(comb(n, 2) for n in per_patient.values())
    assert (result["images"], result["patients"]) == (len(names), len(per_patient)) == (93, 64)
    assert result["same_patient"]["plain"]["count"] == same_pairs
    assert result["distinct_patients"]["plain"]["count"] == comb(len(names), 2) - same_pairs
    assert result["copies"]["audit"]["count"] == len(names) * len(phash_threshold.variants())
    # The recommendation follows its rule from the committed figures.
    distinct = result["distinct_patients"]["audit"]
    assert result["largest_clean_threshold"] == distinct["min"] - 1
    recommended = result["recommended_threshold"]
    assert recommended in phash_threshold.CANDIDATES and distinct["at_or_below"][str(recommended)] == 0
    assert result["recommended_finds_every_copy"] == (result["copies"]["audit"]["max"] <= recommended)


def test_committed_plain_distinct_distribution_matches_the_images(cohen):
    """The headline distribution recomputed from the images by plain hashing (a few seconds)."""
    with (cohen / "metadata.csv").open(newline="") as handle:
        patient = {row["filename"]: row["patientid"] for row in csv.DictReader(handle)}
    names = sorted(p.name for p in (cohen / "images").iterdir())
    hashes = [perceptual_hash(np.asarray(Image.open(cohen / "images" / n).convert("L"), dtype=np.float32) / 255.0)
              for n in names]
    distinct = [hamming(hashes[i], hashes[j]) for i, j in combinations(range(len(names)), 2)
                if patient[names[i]] != patient[names[j]]]
    committed = json.loads(COMMITTED_JSON.read_text())["distinct_patients"]["plain"]
    assert (committed["count"], committed["min"], committed["max"]) == (len(distinct), min(distinct), max(distinct))
    assert committed["p50"] == pytest.approx(float(np.median(distinct)))
    assert committed["at_or_below"] == {str(t): sum(d <= t for d in distinct) for t in phash_threshold.CANDIDATES}


@pytest.mark.slow  # the whole measurement: about half a minute on 2 cores
def test_committed_json_and_doc_are_what_the_script_writes(cohen, tmp_path):
    out, doc = tmp_path / "phash_threshold.json", tmp_path / "leakage_threshold.md"
    phash_threshold.main(["--data", str(cohen), "--out", str(out), "--doc", str(doc)])
    assert out.read_text() == COMMITTED_JSON.read_text(), "regenerate: python benchmarks/phash_threshold.py"
    assert doc.read_text() == COMMITTED_DOC.read_text(), "regenerate: python benchmarks/phash_threshold.py"
