"""Tests of the synthetic cohort (stages.sources.phantom): files, truth, determinism, pixels."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from stages import acquire, schema
from stages.sources import covidx, mdai, phantom

# The RICORD 1c label names exactly as REFERENCE.md quotes them (two spaces in Mild).
REFERENCE_AIRSPACE_LABELS = {
    "Mild Opacities  (1-2 lung zones)",
    "Moderate Opacities (3-4 lung zones)",
    "Severe Opacities (>4 lung zones)",
    "Invalid Study",
}
REFERENCE_CLASSIFICATION_LABELS = {
    "Typical Appearance",
    "Indeterminate Appearance",
    "Atypical Appearance",
    "Negative for Pneumonia",
}
GRADE_ZONES = {schema.MILD: {1, 2}, schema.MODERATE: {3, 4}, schema.SEVERE: {5, 6}}

TINY_CONFIG = {
    "seed": 7,
    "n_patients": 6,
    "studies_per_patient": [1, 3],
    "images_per_study": [1, 2],
    "reader_zone_noise": 0.3,
    "invalid_study_fraction": 0.2,
    "ungraded_study_fraction": 0.2,
    "n_pretrain": 40,
    "pretrain_test_fraction": 0.2,
    "pretrain_positive_fraction": 0.5,
    "n_corrupt_files": 3,
}


def _generate(root: Path, name: str, workers: int | None = None, **overrides: object) -> Path:
    """Generate the tiny cohort (with overrides) into root/name and return that folder."""
    out_dir = root / name
    phantom.generate(out_dir, {**TINY_CONFIG, **overrides}, workers=workers)
    return out_dir


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under root."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cohort, generated once for the module."""
    return _generate(tmp_path_factory.mktemp("phantom"), "a")


@pytest.fixture(scope="module")
def image_truth(cohort: Path) -> list[dict[str, str]]:
    """synthetic_truth/ricord_images.csv of the tiny cohort."""
    return _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")


# ---------------------------------------------------------------------------------------------
# Layout, manifest, determinism
# ---------------------------------------------------------------------------------------------
def test_acquire_builds_the_synthetic_source(cohort: Path, tmp_path: Path) -> None:
    """acquire, through stages.sources.SOURCES, writes what generate() writes."""
    summary = acquire.acquire(tmp_path / "raw", {"data": {"source": "synthetic"}, "synthetic": TINY_CONFIG})
    assert summary == json.loads((cohort / schema.SOURCE_MANIFEST).read_text())["counts"]
    written = sorted(p.relative_to(tmp_path / "raw") for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(cohort) for p in cohort.rglob("*") if p.is_file())
    assert all((tmp_path / "raw" / p).read_bytes() == (cohort / p).read_bytes() for p in written)


def test_layout_and_manifest(cohort: Path) -> None:
    """The raw layout of schema.py exists and SOURCE.json records source, config and counts."""
    for relative in (schema.RICORD_ANNOTATIONS, *schema.COVIDX_LISTS.values()):
        assert (cohort / relative).is_file(), relative
    assert any((cohort / schema.RICORD_IMAGES_DIR).rglob("*.dcm"))
    text = (cohort / schema.SOURCE_MANIFEST).read_text()
    manifest = json.loads(text)
    assert manifest["source"] == "synthetic"
    assert manifest["generator"] == "stages.sources.phantom"
    assert manifest["config"] == TINY_CONFIG
    assert text == json.dumps(manifest, indent=2, sort_keys=True) + "\n"  # sorted keys
    counts = manifest["counts"]
    truth = _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")
    assert counts["ricord_images"] == len(truth)
    assert counts["ricord_patients"] == TINY_CONFIG["n_patients"]
    assert counts["pretrain_images"] == TINY_CONFIG["n_pretrain"]


def test_same_config_gives_identical_bytes(cohort: Path, tmp_path: Path) -> None:
    """A second run with the same config writes a byte-identical tree (no time, no uuid4)."""
    again = _generate(tmp_path, "again")
    assert _tree_digest(again) == _tree_digest(cohort)


def test_worker_count_does_not_change_a_byte(tmp_path: Path) -> None:
    """One process and three write the same tree: the images are rendered in parallel, each from
    its own seeded generators, and written in the planned order."""
    assert _tree_digest(_generate(tmp_path, "three", workers=3)) == _tree_digest(_generate(tmp_path, "one", workers=1))


def test_other_seed_gives_other_pixels(cohort: Path, tmp_path: Path) -> None:
    """Changing the seed changes the images, not just the identifiers."""
    other = _generate(tmp_path, "other", seed=TINY_CONFIG["seed"] + 1)
    first = sorted((cohort / schema.RICORD_IMAGES_DIR).rglob("*.dcm"))[0]
    other_first = sorted((other / schema.RICORD_IMAGES_DIR).rglob("*.dcm"))[0]
    pixels = pydicom.dcmread(first).pixel_array
    other_pixels = pydicom.dcmread(other_first).pixel_array
    assert pixels.shape != other_pixels.shape or not np.array_equal(pixels, other_pixels)
    # No rendered image (planted DICOM, PNG or JPEG) of one seed reappears under the other.
    digests = set(_tree_digest(cohort).values())
    truth = _read_csv(other / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")
    images = [other / row["raw_path"] for row in truth]
    images += list((other / schema.COVIDX_IMAGES_DIR).iterdir())
    assert not any(hashlib.sha256(path.read_bytes()).hexdigest() in digests for path in images)


def test_refuses_non_empty_output(cohort: Path) -> None:
    """Writing over an existing cohort would mix stale files in: generate() refuses."""
    with pytest.raises(FileExistsError):
        phantom.generate(cohort, TINY_CONFIG)


def test_rejects_bad_config(tmp_path: Path) -> None:
    """A missing key or an out-of-range fraction fails before anything is written."""
    with pytest.raises(ValueError, match="n_pretrain"):
        phantom.generate(tmp_path / "x", {k: v for k, v in TINY_CONFIG.items() if k != "n_pretrain"})
    with pytest.raises(ValueError, match="reader_zone_noise"):
        phantom.generate(tmp_path / "y", {**TINY_CONFIG, "reader_zone_noise": 1.5})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ---------------------------------------------------------------------------------------------
# DICOM files
# ---------------------------------------------------------------------------------------------
def test_dicom_round_trip(cohort: Path, image_truth: list[dict[str, str]]) -> None:
    """Every planted DICOM reads back with its declared photometric, bit depth, size and UIDs."""
    assert image_truth
    for row in image_truth:
        ds = pydicom.dcmread(cohort / row["raw_path"])
        bits_stored = int(row["bits_stored"])
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.PhotometricInterpretation == row["photometric"]
        assert ds.BitsStored == bits_stored
        assert ds.BitsAllocated == (8 if bits_stored == 8 else 16)
        assert ds.HighBit == bits_stored - 1 and ds.PixelRepresentation == 0
        assert (ds.Rows, ds.Columns) == (int(row["rows"]), int(row["columns"]))
        assert ds.Rows != ds.Columns
        assert ds.Modality == row["modality"]
        assert ds.SOPClassUID == phantom.SOP_CLASS_OF_MODALITY[row["modality"]]
        assert ds.get("ViewPosition", "") == row["view"]
        assert (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
            row["patient_id"], row["study_uid"], row["series_uid"], row["sop_uid"]
        )
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert uid.startswith("2.25.") and len(uid) <= 64
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns)
        assert 0 <= pixels.min() and pixels.max() <= 2**bits_stored - 1


def test_dicom_variety(image_truth: list[dict[str, str]]) -> None:
    """The tiny cohort already mixes photometric interpretations, bit depths and views."""
    assert {row["photometric"] for row in image_truth} == {"MONOCHROME1", "MONOCHROME2"}
    assert len({row["bits_stored"] for row in image_truth}) >= 3
    assert "AP" in {row["view"] for row in image_truth} and "" in {row["view"] for row in image_truth}
    assert all(row["patient_id"].startswith("MIDRC-RICORD-1C-") for row in image_truth)


def _lung_minus_mediastinum(pixels: np.ndarray) -> float:
    """Median of both lung boxes minus median of the mediastinum box (stored values)."""
    height, width = pixels.shape
    rows = slice(int(0.35 * height), int(0.55 * height))
    lungs = np.concatenate([
        pixels[rows, int(0.22 * width):int(0.36 * width)].ravel(),
        pixels[rows, int(0.64 * width):int(0.78 * width)].ravel(),
    ])
    mediastinum = pixels[rows, int(0.47 * width):int(0.53 * width)]
    return float(np.median(lungs)) - float(np.median(mediastinum))


def test_monochrome1_is_stored_inverted(cohort: Path, image_truth: list[dict[str, str]]) -> None:
    """MONOCHROME2: lungs (air) store lower values than the mediastinum; MONOCHROME1: higher."""
    for row in image_truth:
        pixels = pydicom.dcmread(cohort / row["raw_path"]).pixel_array.astype(float)
        difference = _lung_minus_mediastinum(pixels)
        if row["photometric"] == "MONOCHROME1":
            assert difference > 0, row["raw_path"]
        else:
            assert difference < 0, row["raw_path"]


def test_corrupt_files_are_planted(cohort: Path, image_truth: list[dict[str, str]]) -> None:
    """n_corrupt_files unreadable .dcm files sit among the DICOMs, outside the image truth."""
    corrupt = _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv")
    assert [row["kind"] for row in corrupt] == ["not_dicom", "truncated", "not_dicom"]
    planted = {row["raw_path"] for row in image_truth}
    on_disk = {
        path.relative_to(cohort).as_posix()
        for path in (cohort / schema.RICORD_IMAGES_DIR).rglob("*.dcm")
    }
    assert on_disk == planted | {row["raw_path"] for row in corrupt}
    for row in corrupt:
        path = cohort / row["raw_path"]
        assert path.suffix == ".dcm" and row["raw_path"] not in planted
        if row["kind"] == "not_dicom":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
        else:
            with pytest.raises(Exception):
                pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding must fail


def test_no_corrupt_files_by_default(tmp_path: Path) -> None:
    """With n_corrupt_files 0 every .dcm file is a planted, readable image."""
    out_dir = _generate(tmp_path, "clean", n_patients=2, n_pretrain=2, n_corrupt_files=0)
    assert _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv") == []
    truth = _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")
    assert len(list((out_dir / schema.RICORD_IMAGES_DIR).rglob("*.dcm"))) == len(truth)


def test_planted_leaks_are_disguised_copies(tmp_path: Path) -> None:
    """plant_leaks copies severity images into the COVIDx train list under new names and patients,
    one kind after another, each pixel change checked against the source DICOM as decoded."""
    from stages.dicomio.read import read_dicom, read_raster
    from stages.imaging.hashing import hamming, perceptual_hash, pixel_sha256
    from stages.imaging.preprocess import to_uint8
    from stages.sources.covidnet_files import read_crop_boxes

    out_dir = _generate(tmp_path, "leaky", n_patients=10, n_pretrain=6, n_corrupt_files=0, plant_leaks=5,
                        crop_box_fraction=0.5)
    leaks = _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "planted_leaks.csv")
    assert [leak["kind"] for leak in leaks] == ["copy", "rescaled", "rewindowed", "cropped", "flipped"]
    assert json.loads((out_dir / schema.SOURCE_MANIFEST).read_text())["counts"]["planted_leaks"] == 5
    train = covidx.read_covidx_list(out_dir / schema.COVIDX_LISTS["train"])
    severity_patients = {row["patient_id"] for row in _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")}
    boxes = read_crop_boxes(out_dir / schema.RICORD_CROP_BOXES)
    assert len({leak["source_raw_path"] for leak in leaks}) == 5  # five different sources
    for leak in leaks:
        listed = train[train.filename == leak["filename"]]
        assert list(listed.label) == ["positive"] and list(listed.patient_id) == [leak["patient_id"]]
        assert leak["patient_id"] not in severity_patients and leak["source_patient_id"] in severity_patients
        copy_path = out_dir / schema.COVIDX_IMAGES_DIR / leak["filename"]
        source = to_uint8(read_dicom(out_dir / leak["source_raw_path"])[0])
        copy = to_uint8(read_raster(copy_path))
        kind = leak["kind"]
        if kind == "copy":
            assert np.array_equal(copy, source)
        elif kind == "rescaled":
            with Image.open(copy_path) as image:
                assert image.format == "JPEG"
            scale = float(leak["detail"].split(",")[0].split()[1])
            assert copy.shape == tuple(round(n * scale) for n in source.shape)
            assert hamming(perceptual_hash(copy / 255.0), perceptual_hash(source / 255.0)) <= 16
        elif kind == "rewindowed":
            assert copy.shape == source.shape and pixel_sha256(copy / 255.0) != pixel_sha256(source / 255.0)
            assert hamming(perceptual_hash(copy / 255.0), perceptual_hash(source / 255.0)) <= 16
        elif kind == "cropped":
            xmin, ymin, xmax, ymax = (int(v) for v in leak["detail"].split()[1:])
            assert [xmin, ymin, xmax, ymax] in boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy().tolist()
            assert np.array_equal(copy, source[ymin:ymax, xmin:xmax])
        else:
            assert np.array_equal(copy, source[:, ::-1])
    with pytest.raises(ValueError, match="plant_leaks=500"):
        phantom.generate(tmp_path / "too_many", {**TINY_CONFIG, "n_patients": 2, "plant_leaks": 500})
    assert not (tmp_path / "too_many").exists()  # refused before anything was written


def test_no_leaks_by_default(cohort: Path) -> None:
    assert _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "planted_leaks.csv") == []


# ---------------------------------------------------------------------------------------------
# MD.ai annotations and reader truth
# ---------------------------------------------------------------------------------------------
def test_annotations_parse_to_planted_reader_labels(cohort: Path) -> None:
    """mdai.read_reader_labels recovers exactly the planted airspace labels, in order."""
    labels = mdai.read_reader_labels(cohort / schema.RICORD_ANNOTATIONS)
    airspace = labels[labels["label_group"] == schema.AIRSPACE_GROUP]
    planted = _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "ricord_readers.csv")
    assert planted
    parsed = airspace[["study_uid", "reader_id", "label_name"]].to_dict("records")
    assert parsed == planted
    assert labels["annotation_index"].is_monotonic_increasing


def test_label_names_match_reference(cohort: Path) -> None:
    """The export defines exactly the RICORD label names (REFERENCE.md), as study-scoped labels."""
    export = json.loads((cohort / schema.RICORD_ANNOTATIONS).read_text())
    groups = {group["name"]: group["labels"] for group in export["labelGroups"]}
    assert set(groups) == {"Airspace Disease Grading", "Classification"}
    assert {label["name"] for label in groups["Airspace Disease Grading"]} == REFERENCE_AIRSPACE_LABELS
    assert {label["name"] for label in groups["Classification"]} == REFERENCE_CLASSIFICATION_LABELS
    assert all(label["scope"] == "STUDY" for labels in groups.values() for label in labels)
    for annotation in export["datasets"][0]["annotations"]:
        assert annotation["SeriesInstanceUID"] is None and annotation["SOPInstanceUID"] is None
        assert annotation["createdById"].startswith("U_")


def test_readers_studies_and_grades(cohort: Path, image_truth: list[dict[str, str]]) -> None:
    """2-3 readers per study, each with one classification; grades within one zone of the truth;
    the requested shares of invalid and ungraded studies."""
    labels = mdai.read_reader_labels(cohort / schema.RICORD_ANNOTATIONS)
    studies = mdai.read_studies(cohort / schema.RICORD_ANNOTATIONS)
    truth_zones = {row["study_uid"]: int(row["n_zones"]) for row in image_truth}
    assert list(studies["study_uid"]) == list(dict.fromkeys(row["study_uid"] for row in image_truth))
    assert list(studies["number"]) == list(range(1, len(studies) + 1))
    classification = labels[labels["label_group"] == schema.CLASSIFICATION_GROUP]
    readers_per_study = classification.groupby("study_uid")["reader_id"].agg(["count", "nunique"])
    assert set(readers_per_study.index) == set(truth_zones)
    assert (readers_per_study["count"] == readers_per_study["nunique"]).all()  # one each
    assert readers_per_study["count"].between(2, 3).all()

    airspace = labels[labels["label_group"] == schema.AIRSPACE_GROUP]
    for row in airspace.itertuples():
        if row.label_name != schema.INVALID:
            zones = truth_zones[row.study_uid]
            assert GRADE_ZONES[row.label_name] & {zones - 1, zones, zones + 1}
    n_studies = len(truth_zones)
    invalid = set(airspace.loc[airspace["label_name"] == schema.INVALID, "study_uid"])
    ungraded = set(truth_zones) - set(airspace["study_uid"])
    assert len(invalid) == round(TINY_CONFIG["invalid_study_fraction"] * n_studies)
    assert len(ungraded) == round(TINY_CONFIG["ungraded_study_fraction"] * n_studies)


def test_noiseless_readers_agree_with_truth(tmp_path: Path) -> None:
    """Without reader noise or invalid studies, every grade follows the planted zone count."""
    out_dir = _generate(tmp_path, "exact", reader_zone_noise=0.0, invalid_study_fraction=0.0,
                        ungraded_study_fraction=0.0, n_pretrain=2, n_corrupt_files=0)
    truth = _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")
    zones = {row["study_uid"]: int(row["n_zones"]) for row in truth}
    readers = _read_csv(out_dir / schema.SYNTHETIC_TRUTH_DIR / "ricord_readers.csv")
    assert {row["study_uid"] for row in readers} == set(zones)
    for row in readers:
        assert zones[row["study_uid"]] in GRADE_ZONES[row["label_name"]]


# ---------------------------------------------------------------------------------------------
# COVIDx-like pretraining part
# ---------------------------------------------------------------------------------------------
def test_covidx_lists_and_images(cohort: Path) -> None:
    """Lists parse with covidx.read_covidx_list, match the truth, hold a 5-field SIRM line,
    split patients between train and test, and every named image opens."""
    truth = _read_csv(cohort / schema.SYNTHETIC_TRUTH_DIR / "covidx.csv")
    lists = {name: covidx.read_covidx_list(cohort / relative)
             for name, relative in schema.COVIDX_LISTS.items()}
    parsed = [
        {**record, "list": name}
        for name, table in lists.items() for record in table.to_dict("records")
    ]
    expected = [{key: row[key] for key in ("patient_id", "filename", "label", "covidx_source", "list")}
                for row in truth]
    assert sorted(parsed, key=lambda r: r["filename"]) == sorted(expected, key=lambda r: r["filename"])
    raw_lines = [line for relative in schema.COVIDX_LISTS.values()
                 for line in (cohort / relative).read_text().splitlines()]
    assert any(len(line.split()) == 5 and line.endswith(" sirm") for line in raw_lines)
    assert set(lists["train"]["patient_id"]).isdisjoint(lists["test"]["patient_id"])
    assert len(lists["test"]) > 0 and set(lists["test"]["label"]) == {"positive", "negative"}
    positives = sum(row["label"] == "positive" for row in truth)
    assert positives == round(TINY_CONFIG["n_pretrain"] * TINY_CONFIG["pretrain_positive_fraction"])
    formats = set()
    for row in truth:
        with Image.open(cohort / schema.COVIDX_IMAGES_DIR / row["filename"]) as image:
            formats.add((image.format, image.mode))
            assert 256 <= min(image.size) and max(image.size) <= 640 and image.width != image.height
        assert (int(row["n_zones"]) > 0) == (row["label"] == "positive")
    assert {fmt for fmt, _ in formats} == {"PNG", "JPEG"}


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def test_render_chest_basic_contract() -> None:
    """float32 in [0, 1], the requested shape, deterministic for a given generator state."""
    image = phantom.render_chest(np.random.default_rng(3), [0, 4], 300, 260)
    again = phantom.render_chest(np.random.default_rng(3), [0, 4], 300, 260)
    other = phantom.render_chest(np.random.default_rng(4), [0, 4], 300, 260)
    assert image.dtype == np.float32 and image.shape == (300, 260)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert np.array_equal(image, again) and not np.array_equal(image, other)
    with pytest.raises(ValueError):
        phantom.render_chest(np.random.default_rng(3), [6], 300, 260)


def test_opacity_is_confined_to_its_zone() -> None:
    """Opacifying one zone brightens 50-85%-ish of that zone and nothing outside it."""
    for zone in range(phantom.N_ZONES):
        clear, masks = phantom.render_chest_with_zones(np.random.default_rng(zone), [], 240, 220)
        sick, _ = phantom.render_chest_with_zones(np.random.default_rng(zone), [zone], 240, 220)
        difference = sick - clear
        outside = masks[zone] < 0.02
        inside = masks[zone] > 0.9
        assert np.abs(difference[outside]).max() < 0.02
        covered = float((difference[inside] > 0.05).mean())
        assert 0.4 <= covered <= 0.95, (zone, covered)
        assert float(difference[inside].mean()) > 0.08


def test_more_zones_more_bright_lung() -> None:
    """The share of bright lung-field pixels grows with the number of opacified zones."""
    seeds = range(4)
    shares = []
    for count in range(phantom.N_ZONES + 1):
        per_seed = []
        for seed in seeds:
            zones = np.random.default_rng(100 + seed).permutation(phantom.N_ZONES)[:count]
            clear, masks = phantom.render_chest_with_zones(np.random.default_rng(seed), [], 200, 180)
            image = phantom.render_chest(np.random.default_rng(seed), zones, 200, 180)
            lungs = masks.max(axis=0) > 0.5
            threshold = np.median(clear[lungs]) + 0.1  # clearly brighter than clear lung
            per_seed.append(float((image[lungs] > threshold).mean()))
        shares.append(float(np.mean(per_seed)))
    assert all(later > earlier for earlier, later in zip(shares, shares[1:])), shares


def test_text_is_burned_into_top_band() -> None:
    """burn_in_text writes only inside the top 5% of the rows (which the pipeline crops)."""
    canvas = np.zeros((600, 500), dtype=np.float32)
    phantom.burn_in_text(canvas, ["R", "ACC12345678", "2020-05-01"])
    band = int(600 * phantom.TEXT_BAND_FRACTION)
    assert canvas[:band].max() > 0.9
    assert canvas[band:].max() == 0.0


@pytest.mark.parametrize("shape", [(5, 7), (64, 33), (40, 31, 3)])
def test_png_writer_round_trips(shape: tuple[int, ...]) -> None:
    """The minimal PNG writer is lossless and readable by PIL (grey -> L, RGB -> RGB)."""
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(phantom.png_bytes(pixels))) as image:
        image.verify()
    with Image.open(io.BytesIO(phantom.png_bytes(pixels))) as image:
        assert image.mode == ("L" if len(shape) == 2 else "RGB")
        assert np.array_equal(np.asarray(image), pixels)
    with pytest.raises(ValueError):
        phantom.png_bytes(pixels.astype(np.uint16))
