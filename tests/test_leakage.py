"""The leakage audit: each matching method, each mode, the published lists, and the stage's outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import schema
from stages.dicomio.read import read_raster
from stages.ingest import content_hashes, severity_hashes
from stages.sources.covidnet_files import read_severity_list
from stages.sources.covidx import read_covidx_list
from stages.sources.phantom import render_chest
from stages.imaging.hashing import hamming
from stages.validation.leakage import (
    AuditSettings,
    MissingHashes,
    audit,
    failure_message,
    name_key,
    patient_key,
    score_planted,
)


def written(display: np.ndarray, path: Path, scale: float = 1.0, quality: int | None = None) -> dict:
    """Save an 8-bit copy (optionally resized, optionally JPEG) and hash it as ingest hashes a
    pretraining image."""
    image = Image.fromarray(np.rint(display * 255).astype(np.uint8))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    image.save(path, **({"quality": quality} if quality else {}))
    return content_hashes(read_raster(path))


def as_severity(display: np.ndarray, path: Path, box: tuple[int, int, int, int] | None = None) -> dict:
    """Save as PNG and hash it as ingest hashes a severity image (whole, in its box, mirrored)."""
    Image.fromarray(np.rint(display * 255).astype(np.uint8)).save(path)
    return severity_hashes(read_raster(path), box)


@pytest.fixture(scope="module")
def displays() -> dict[int, np.ndarray]:
    return {i: render_chest(np.random.default_rng(100 + i), (i % 6,), 400 + 10 * i, 380) for i in range(6)}


@pytest.fixture(scope="module")
def images(tmp_path_factory, displays) -> dict[str, dict]:
    """Hashes of six severity phantoms and of copies of them, as ingest computes them."""
    folder = tmp_path_factory.mktemp("leak")
    hashes = {f"s{i}": as_severity(displays[i], folder / f"s{i}.png") for i in displays}
    # The case: a test image re-encoded as JPEG and resized.
    hashes["jpeg_copy_of_s0"] = written(displays[0], folder / "copy0.jpg", scale=0.6, quality=75)
    hashes["png_copy_of_s1"] = written(displays[1], folder / "copy1.png")  # same pixels, new name
    hashes["copy_of_s3"] = written(displays[3], folder / "copy3.png")
    hashes["copy_of_s4"] = written(displays[4], folder / "copy4.png")
    hashes["copy_of_s5"] = written(displays[5], folder / "copy5.png")
    hashes["other"] = written(render_chest(np.random.default_rng(7), (), 400, 380), folder / "o.png")
    return hashes


def severity_tables(hashes: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """s0, s1 in test, s2 in val, s3 in train: (split, severity_images)."""
    rows = [("s0", "MIDRC-RICORD-1C-419639-000001", "test"), ("s1", "MIDRC-RICORD-1C-419639-000002", "test"),
            ("s2", "MIDRC-RICORD-1C-419639-000003", "val"), ("s3", "MIDRC-RICORD-1C-419639-000004", "train")]
    split = pd.DataFrame([{"image_id": i, "patient_id": p, "split": s, "airspace_level": 1,
                           "image_path": f"severity/{i}.png"} for i, p, s in rows])
    images = pd.DataFrame([{"image_id": i, "patient_id": p, **hashes[i]} for i, p, _ in rows])
    return split, images


def pretrain_row(image_id: str, patient_id: str, filename: str, hashes: dict, list_name: str = "train") -> dict:
    return {"image_id": image_id, "patient_id": patient_id, "filename": filename, "label": "positive",
            "covidx_source": "rsna", "list": list_name, "raw_path": f"covidx/images/{filename}",
            "image_path": f"pretrain/{image_id}.png", "rows": 300, "columns": 300, "source": "synthetic",
            **hashes}


def pretrain_table(images: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame([
        pretrain_row("p_jpeg", "x1", "p_jpeg.jpg", images["jpeg_copy_of_s0"]),  # content only
        pretrain_row("p_png", "x2", "p_png.png", images["png_copy_of_s1"]),  # exact pixels
        pretrain_row("p_patient", "419639-000003", "p_patient.png", images["other"]),  # patient of s2
        pretrain_row("s2", "x4", "s2.png", images["copy_of_s5"], list_name="test"),  # file name of s2, test list
        pretrain_row("p_train_copy", "x5", "p_train_copy.png", images["copy_of_s3"]),  # s3 is a train image
        pretrain_row("p_clean", "x6", "p_clean.png", images["copy_of_s4"]),
    ])


def matched(result) -> dict[tuple[str, str], str]:
    return {(r.severity_image_id, r.pretrain_image_id): r.methods for r in result.matches.itertuples()}


def test_each_method_finds_its_leak(images: dict) -> None:
    split, severity = severity_tables(images)
    result = audit(split, severity, pretrain_table(images), AuditSettings())
    assert matched(result) == {
        ("s0", "p_jpeg"): "phash",
        ("s1", "p_png"): "pixel_sha256;phash",
        ("s2", "p_patient"): "patient_id",
        ("s2", "s2"): "filename",
        ("s3", "p_train_copy"): "pixel_sha256;phash",  # a train image: recorded, not leakage
    }
    summary = result.summary
    assert summary["by_method"]["phash"] == {"pairs": 3, "severity_images": 3, "pretrain_images": 3}
    assert summary["by_method"]["pixel_sha256"]["pairs"] == 2
    assert summary["matched_severity_images_by_split"] == {"train": 1, "val": 1, "test": 2}
    assert summary["matched_guarded_severity_images"] == 3
    jpeg = result.matches.set_index("pretrain_image_id").loc["p_jpeg"]
    assert 0 < jpeg.phash_distance <= 16


def test_exclude_drops_train_list_matches_only(images: dict) -> None:
    split, severity = severity_tables(images)
    pretrain = pretrain_table(images)
    result = audit(split, severity, pretrain, AuditSettings(mode="exclude"))
    assert result.summary["excluded"] == ["p_jpeg", "p_patient", "p_png"]
    # The test-list match is recorded but kept (that list scores the backbone, it does not train it);
    # the copy of a severity *train* image is not leakage.
    assert sorted(result.audited_pretrain.image_id) == ["p_clean", "p_train_copy", "s2"]
    assert result.summary["pretrain_train_images_after_audit"] == 2
    assert failure_message(result) is None


def test_report_keeps_everything_and_fail_names_the_pairs(images: dict) -> None:
    split, severity = severity_tables(images)
    pretrain = pretrain_table(images)
    report = audit(split, severity, pretrain, AuditSettings(mode="report"))
    assert len(report.audited_pretrain) == len(pretrain) and report.summary["excluded"] == []
    assert report.summary["matched_pairs"] == 5
    fail = audit(split, severity, pretrain, AuditSettings(mode="fail"))
    message = failure_message(fail)
    assert message.startswith("leakage audit: 3 severity test/val images are in the pretraining train list")
    assert "s0 (test) ~ p_jpeg [phash]" in message and "s1 (test) ~ p_png [pixel_sha256;phash]" in message


def test_clean_cohort_passes_fail_mode(images: dict) -> None:
    split, severity = severity_tables(images)
    clean = pretrain_table(images).query("image_id in ['p_clean', 'p_train_copy']")
    result = audit(split, severity, clean, AuditSettings(mode="fail"))
    # Only the copy of the train image s3 matches: recorded, and no reason to stop.
    assert result.summary["matched_pairs"] == 1 and failure_message(result) is None


def test_audited_splits_are_a_setting(images: dict) -> None:
    split, severity = severity_tables(images)
    result = audit(split, severity, pretrain_table(images), AuditSettings(splits=("test",)))
    # Every split is matched; only the guarded one's matches are excluded.
    assert {s for s, _ in matched(result)} == {"s0", "s1", "s2", "s3"}
    assert result.summary["excluded"] == ["p_jpeg", "p_png"]


def test_settings_are_checked() -> None:
    assert AuditSettings.from_params({}) == AuditSettings("exclude", ("test", "val"), 24)
    with pytest.raises(ValueError, match="validate.leakage must be one of"):
        AuditSettings.from_params({"leakage": "drop"})
    with pytest.raises(ValueError, match="validate.leakage_splits: unknown splits \\['holdout'\\]"):
        AuditSettings.from_params({"leakage_splits": ["test", "holdout"]})


def test_keys() -> None:
    assert patient_key("MIDRC-RICORD-1C-419639-000238") == patient_key("419639-000238") == "419639-000238"
    assert patient_key("COVID 1") == "COVID 1" and patient_key(None) is None
    # A RICORD id may end in a dot and two digits of its study UID: only image extensions go.
    assert name_key("MIDRC-RICORD-1C-440808-000008-08.50-0") == "MIDRC-RICORD-1C-440808-000008-08.50-0"
    assert name_key("a/MIDRC-RICORD-1C-440808-000008-08.50-0.PNG") == "MIDRC-RICORD-1C-440808-000008-08.50-0"
    assert name_key("COVID(1).jpeg") == "COVID(1)" and name_key("") is None


def fake_hash(name: str, kind: str) -> str:
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()


def test_published_lists_share_91_test_images_by_file_name(shared_data: Path) -> None:
    """COVID-Net CXR-S's 150 test images against COVIDx 8B's training list (no pixels needed)."""
    test = read_severity_list(shared_data / "ricord-covidnet" / "test_COVIDxSev.txt")
    split = pd.DataFrame({"image_id": test.image_id, "patient_id": "MIDRC-RICORD-1C-" + test.patient_id,
                          "split": "test"})
    covidx = read_covidx_list(shared_data / "covidx" / "train_COVIDx8B.txt").assign(list="train")
    covidx["image_id"] = covidx.filename.map(name_key)
    # No pixels here: every image gets its own made-up hashes (256 random bits are ~128 apart).
    severity = split[["image_id"]].assign(**{c: [fake_hash(i, c) for i in split.image_id]
                                             for c in schema.SEVERITY_HASH_COLUMNS})
    covidx = covidx.assign(**{c: [fake_hash(f, c) for f in covidx.filename] for c in ("pixel_sha256", "phash")})
    result = audit(split, severity, covidx, AuditSettings())
    by_method = result.summary["by_method"]
    assert by_method["filename"] == {"pairs": 91, "severity_images": 91, "pretrain_images": 91}
    # The 91 come from 9 of the 68 test patients, and those patients have no other COVIDx images.
    assert by_method["patient_id"]["severity_images"] == 91 and by_method["patient_id"]["pretrain_images"] == 91
    leaked = set(result.matches.severity_image_id)
    assert len({p for i, p in zip(test.image_id, test.patient_id) if i in leaked}) == 9
    assert result.summary["excluded_pretrain_images"] == 91
    assert len(result.audited_pretrain) == len(covidx) - 91 == 15861
    assert not set(result.audited_pretrain.filename.map(name_key)) & set(test.image_id)


def test_matches_table_has_the_schema_columns(images: dict) -> None:
    split, severity = severity_tables(images)
    result = audit(split, severity, pretrain_table(images), AuditSettings())
    assert list(result.matches.columns) == schema.LEAKAGE_MATCH_COLUMNS
    assert list(result.summary["matches"][0]) == schema.LEAKAGE_MATCH_COLUMNS


# --- copies the whole-image hash misses: crops, flips; missing hashes; the severity cohort itself ---

BOX = (30, 40, 350, 390)  # xmin ymin xmax ymax: a COVID-Net-style crop of a 380x400 image


def crop_case(displays: dict, folder: Path, box) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """s0 (test) has a crop box; the pretraining list holds s0 cut to that box, and s1 (val)
    mirrored, under new names and patients."""
    severity = {"s0": as_severity(displays[0], folder / "s0.png", box),
                "s1": as_severity(displays[1], folder / "s1.png")}
    y0, y1, x0, x1 = BOX[1], BOX[3], BOX[0], BOX[2]
    cropped = written(displays[0][y0:y1, x0:x1], folder / "crop.png")
    flipped = written(np.fliplr(displays[1]), folder / "flip.png")
    split = pd.DataFrame([{"image_id": i, "patient_id": f"P{i}", "split": s, "airspace_level": 1,
                           "image_path": f"severity/{i}.png"} for i, s in (("s0", "test"), ("s1", "val"))])
    images = pd.DataFrame([{"image_id": i, "patient_id": f"P{i}", **h} for i, h in severity.items()])
    pretrain = pd.DataFrame([pretrain_row("p_crop", "x1", "p_crop.png", cropped),
                             pretrain_row("p_flip", "x2", "p_flip.png", flipped)])
    return split, images, pretrain


def test_crop_and_flip_are_found_by_their_own_hashes(displays: dict, tmp_path: Path) -> None:
    split, images, pretrain = crop_case(displays, tmp_path, BOX)
    result = audit(split, images, pretrain, AuditSettings())
    assert matched(result) == {("s0", "p_crop"): "phash_cropped", ("s1", "p_flip"): "phash_mirrored"}
    assert result.summary["excluded"] == ["p_crop", "p_flip"]


def test_without_the_crop_aware_hash_the_crop_escapes(displays: dict, tmp_path: Path) -> None:
    """The same case hashed without the box (phash_cropped = the whole image's hash): the
    cropped copy is too far from the whole image for any method."""
    split, images, pretrain = crop_case(displays, tmp_path, None)
    result = audit(split, images, pretrain, AuditSettings())
    assert matched(result) == {("s1", "p_flip"): "phash_mirrored"}
    whole = images.set_index("image_id").loc["s0", "phash"]
    assert hamming(whole, pretrain.set_index("image_id").loc["p_crop", "phash"]) > 16


def test_a_missing_hash_is_an_error_naming_the_images(images: dict) -> None:
    split, severity = severity_tables(images)
    severity.loc[severity.image_id == "s2", "phash_mirrored"] = None
    with pytest.raises(MissingHashes, match="severity_images.csv: phash_mirrored missing for 1 image.*s2"):
        audit(split, severity, pretrain_table(images), AuditSettings())
    pretrain = pretrain_table(images).drop(columns="phash")
    _, severity = severity_tables(images)
    with pytest.raises(MissingHashes, match="pretrain_images.csv: phash missing for 6 image"):
        audit(split, severity, pretrain, AuditSettings())


def test_severity_val_test_images_are_audited_against_train(images: dict) -> None:
    """s2 (val) gets the pixels of s3 (train), and s1 (test) the patient of s3."""
    split, severity = severity_tables(images)
    hashes = list(schema.SEVERITY_HASH_COLUMNS)
    severity.loc[severity.image_id == "s2", hashes] = severity.loc[severity.image_id == "s3", hashes].to_numpy()
    split.loc[split.image_id == "s1", "patient_id"] = "MIDRC-RICORD-1C-419639-000004"
    severity.loc[severity.image_id == "s1", "patient_id"] = "MIDRC-RICORD-1C-419639-000004"
    result = audit(split, severity, pretrain_table(images).iloc[:0], AuditSettings(mode="fail"))
    pairs = {(m["image_id"], m["train_image_id"]): m["methods"] for m in result.summary["cross_split_matches"]}
    assert pairs == {("s1", "s3"): "patient_id", ("s2", "s3"): "pixel_sha256;phash"}
    assert "2 severity val/test images match a severity train image" in failure_message(result)
    clean = audit(*severity_tables(images), pretrain_table(images), AuditSettings(mode="fail"))
    assert clean.summary["cross_split_pairs"] == 0 and clean.cross_split.empty


def test_planted_copies_are_scored_by_kind() -> None:
    matches = pd.DataFrame({"severity_image_id": ["a", "b"], "pretrain_image_id": ["pa", "px"],
                            "methods": ["phash", "phash"]})
    severity = pd.DataFrame({"image_id": ["a", "b"], "raw_path": ["ra.dcm", "rb.dcm"]})
    pretrain = pd.DataFrame({"image_id": ["pa", "pb"], "filename": ["fa.png", "fb.png"]})
    planted = pd.DataFrame({"filename": ["fa.png", "fb.png"], "kind": ["flipped", "cropped"],
                            "source_raw_path": ["ra.dcm", "rb.dcm"]})
    score = score_planted(planted, matches, severity, pretrain)
    assert score["planted"] == 2 and score["found"] == 1
    assert score["by_kind"] == {"cropped": {"planted": 1, "found": 0}, "flipped": {"planted": 1, "found": 1}}
    assert score["missed"] == [{"filename": "fb.png", "kind": "cropped", "severity_image_id": "b",
                                "pretrain_image_id": "pb"}]


def test_nearest_unmatched_distance_is_the_closest_pair_left_unmatched(images: dict) -> None:
    """Oracle: the minimum over every (severity hash, pretraining phash) distance of the pairs that
    did not match, by brute force with :func:`hamming`."""
    split, severity = severity_tables(images)
    pretrain = pretrain_table(images)
    result = audit(split, severity, pretrain, AuditSettings())
    matched_pairs = set(matched(result))
    expected = min(hamming(s[column], p["phash"])
                   for s in severity.to_dict("records") for p in pretrain.to_dict("records")
                   if (s["image_id"], p["image_id"]) not in matched_pairs
                   for column in ("phash", "phash_cropped", "phash_mirrored"))
    assert result.summary["nearest_unmatched_phash_distance"] == expected > 16


# --- the threshold at exactly its distance, on hashes built bit by bit (issue 20) -------------
BITS = 255  # stages.imaging.hashing.PHASH_BITS: 64 hex digits


def as_hex(value: int) -> str:
    return f"{value:064x}"


def flipped_bits(value: int, positions) -> int:
    for position in positions:
        value ^= 1 << position
    return value


def random_hash(seed: int) -> int:
    """255 random bits: two of them differ in about 128 bits, far beyond any threshold here."""
    return int("".join(str(b) for b in np.random.default_rng(seed).integers(0, 2, BITS)), 2)


def hashed_severity(rows) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(image_id, split, phash, phash_cropped, phash_mirrored) as ints -> (split, severity_images)."""
    split = pd.DataFrame([{"image_id": i, "patient_id": f"PAT-{i}", "split": s, "airspace_level": 1,
                           "image_path": f"severity/{i}.png"} for i, s, *_ in rows])
    images = pd.DataFrame([{"image_id": i, "patient_id": f"PAT-{i}", "pixel_sha256": fake_hash(i, "sha"),
                            "phash": as_hex(whole), "phash_cropped": as_hex(cropped), "phash_mirrored": as_hex(mirrored)}
                           for i, _, whole, cropped, mirrored in rows])
    return split, images


def hashed_pretrain(rows) -> pd.DataFrame:
    """(image_id, list, phash as int) -> a pretraining table."""
    return pd.DataFrame([pretrain_row(i, f"OTHER-{i}", f"{i}.png", {"pixel_sha256": fake_hash(i, "sha"),
                                                                     "phash": as_hex(h)}, list_name=lst)
                         for i, lst, h in rows])


def test_a_pair_at_exactly_the_threshold_matches_and_one_bit_more_does_not() -> None:
    a, b, c, d, e = (random_hash(s) for s in range(5))
    at, over = range(0, 24), range(100, 125)  # 24 and 25 bit positions
    split, severity = hashed_severity([
        ("s_at", "test", a, a, flipped_bits(a, [7])),
        ("s_over", "test", b, b, c),
        ("s_crop", "val", d, e, flipped_bits(d, [3, 4])),
    ])
    pretrain = hashed_pretrain([
        ("p_at", "train", flipped_bits(a, at)),        # whole hash 24 bits from s_at's whole hash
        ("p_over", "train", flipped_bits(b, over)),    # 25 bits from s_over
        ("p_crop", "train", flipped_bits(e, range(200, 224))),  # 24 bits from s_crop's cropped hash
    ])
    assert hamming(severity.phash[0], pretrain.phash[0]) == 24  # the oracle: bits counted by hand
    result = audit(split, severity, pretrain, AuditSettings(phash_max_distance=24))
    # s_at's mirrored hash differs from its whole one in bit 7, one of the 24: it is 23 bits from
    # p_at, so it matches too, and the distance reported is the smallest over the three hashes.
    assert matched(result) == {("s_at", "p_at"): "phash;phash_mirrored", ("s_crop", "p_crop"): "phash_cropped"}
    distances = result.matches.set_index("pretrain_image_id").phash_distance.to_dict()
    assert distances == {"p_at": 23, "p_crop": 24}
    assert result.summary["nearest_unmatched_phash_distance"] == 25
    assert result.summary["excluded"] == ["p_at", "p_crop"]
    # One bit less of room: only the 23-bit mirrored pair of s_at is left.
    tighter = audit(split, severity, pretrain, AuditSettings(phash_max_distance=23))
    assert matched(tighter) == {("s_at", "p_at"): "phash_mirrored"}
    assert tighter.summary["nearest_unmatched_phash_distance"] == 24
    wider = audit(split, severity, pretrain, AuditSettings(phash_max_distance=25))
    assert matched(wider)[("s_over", "p_over")] == "phash"


def test_a_variant_equal_to_the_whole_image_adds_no_match() -> None:
    """No crop box: phash_cropped is the whole image's hash, so a match within the threshold is
    phash's alone; a mirrored hash that is distinct matches by itself."""
    a, b, m = random_hash(10), random_hash(11), random_hash(12)
    split, severity = hashed_severity([("s0", "test", a, a, m), ("s1", "test", b, b, b)])
    pretrain = hashed_pretrain([("p0", "train", flipped_bits(a, range(10))), ("p_m", "train", flipped_bits(m, [0])),
                                ("p1", "train", b)])
    result = audit(split, severity, pretrain, AuditSettings())
    assert matched(result) == {("s0", "p0"): "phash", ("s0", "p_m"): "phash_mirrored", ("s1", "p1"): "phash"}
    distances = result.matches.set_index("pretrain_image_id").phash_distance.to_dict()
    assert distances == {"p0": 10, "p_m": 1, "p1": 0}
    assert result.summary["by_method"]["phash_cropped"] == {"pairs": 0, "severity_images": 0, "pretrain_images": 0}
    assert result.summary["by_method"]["phash"] == {"pairs": 2, "severity_images": 2, "pretrain_images": 2}


def test_the_summary_by_hand() -> None:
    a, b, c, d = (random_hash(s) for s in range(20, 24))
    split, severity = hashed_severity([("t1", "test", a, a, a), ("v1", "val", b, b, b), ("r1", "train", c, c, c),
                                       ("t2", "test", d, d, d)])
    pretrain = hashed_pretrain([("pa", "train", a), ("pa2", "train", a), ("pb", "test", b), ("pc", "train", c),
                                ("pz", "train", random_hash(99))])
    result = audit(split, severity, pretrain, AuditSettings())
    summary = result.summary
    assert {k: summary[k] for k in (
        "mode", "splits_guarded", "phash_max_distance", "severity_images_audited", "severity_images_audited_by_split",
        "pretrain_images_audited", "matched_pairs", "matched_severity_images", "matched_severity_images_by_split",
        "matched_guarded_severity_images", "matched_pretrain_images", "matched_guarded_pretrain_images_in_train_list",
        "excluded_pretrain_images", "pretrain_images_after_audit", "pretrain_train_images_after_audit",
        "excluded", "cross_split_pairs")} == {
        "mode": "exclude", "splits_guarded": ["test", "val"], "phash_max_distance": 24,
        "severity_images_audited": 4, "severity_images_audited_by_split": {"train": 1, "val": 1, "test": 2},
        "pretrain_images_audited": 5,
        "matched_pairs": 4,  # t1~pa, t1~pa2, v1~pb (test list), r1~pc (train image)
        "matched_severity_images": 3, "matched_severity_images_by_split": {"train": 1, "val": 1, "test": 1},
        "matched_guarded_severity_images": 2, "matched_pretrain_images": 4,
        "matched_guarded_pretrain_images_in_train_list": 2,
        "excluded_pretrain_images": 2, "pretrain_images_after_audit": 3, "pretrain_train_images_after_audit": 2,
        "excluded": ["pa", "pa2"], "cross_split_pairs": 0}
    assert summary["by_method"]["phash"] == {"pairs": 4, "severity_images": 3, "pretrain_images": 4}
    assert summary["by_method"]["pixel_sha256"] == {"pairs": 0, "severity_images": 0, "pretrain_images": 0}
    assert summary["matches"][0] == {"severity_image_id": "r1", "severity_split": "train", "pretrain_image_id": "pc",
                                     "pretrain_list": "train", "methods": "phash", "phash_distance": 0}
    assert sorted(result.audited_pretrain.image_id) == ["pb", "pc", "pz"]
    report = audit(split, severity, pretrain, AuditSettings(mode="report"))
    assert report.summary["excluded"] == [] and len(report.audited_pretrain) == 5
    assert failure_message(report) is None


def test_failure_message_lists_methods_and_both_kinds_of_leak() -> None:
    a, b = random_hash(30), random_hash(31)
    split, severity = hashed_severity([("t1", "test", a, a, a), ("r1", "train", b, b, b), ("v1", "val", b, b, b)])
    pretrain = hashed_pretrain([("pa", "train", a), ("pa_test", "test", a)])
    result = audit(split, severity, pretrain, AuditSettings(mode="fail"))
    message = failure_message(result)
    assert message == (
        "leakage audit: 1 severity test/val images are in the pretraining train list (phash 1); first: "
        "t1 (test) ~ pa [phash]. Set validate.leakage: exclude to drop them from pretraining, or report to only "
        "record them; leakage audit: 1 severity val/test images match a severity train image; first: "
        "v1 (val) ~ r1 [phash]")
    only_cross = audit(split, severity, pretrain.iloc[1:], AuditSettings(mode="fail"))
    assert failure_message(only_cross) == ("leakage audit: 1 severity val/test images match a severity train image; "
                                           "first: v1 (val) ~ r1 [phash]")


def test_settings_from_params_by_key() -> None:
    assert AuditSettings.from_params({"leakage": "fail", "leakage_splits": ["test"], "phash_max_distance": 0}) == \
        AuditSettings("fail", ("test",), 0)
    with pytest.raises(ValueError, match=r"validate.phash_max_distance must be >= 0, got -1"):
        AuditSettings.from_params({"phash_max_distance": -1})
    with pytest.raises(ValueError, match=r"validate.leakage must be one of \['fail', 'exclude', 'report'\], got 'x'"):
        AuditSettings.from_params({"leakage": "x"})


# --- inputs the audit must refuse or tolerate, messages, the planted score (issue 20) ---------
def test_blank_or_absent_hashes_are_missing() -> None:
    from stages.validation.leakage import require_hashes

    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "phash": ["  ", None, "0f"]})
    with pytest.raises(MissingHashes) as error:
        require_hashes(frame, ("phash", "pixel_sha256"), "t.csv")
    assert str(error.value) == ("leakage audit: t.csv: phash missing for 2 image(s), first: a, b; pixel_sha256 missing "
                                "for 3 image(s), first: a, b, c (re-run ingest, which hashes every image it decodes)")
    many = pd.DataFrame({"image_id": [f"i{k}" for k in range(7)], "phash": [None] * 7})
    with pytest.raises(MissingHashes, match=r"phash missing for 7 image\(s\), first: i0, i1, i2, i3, i4 \(re-run"):
        require_hashes(many, ("phash",), "t.csv")


def test_a_split_image_absent_from_the_image_table_has_no_hashes() -> None:
    a = random_hash(40)
    split, severity = hashed_severity([("s1", "test", a, a, a)])
    split = pd.concat([split, split.assign(image_id="ghost")], ignore_index=True)
    with pytest.raises(MissingHashes, match=r"severity_images.csv: pixel_sha256 missing for 1 image\(s\), first: ghost"):
        audit(split, severity, hashed_pretrain([("p", "train", a)]), AuditSettings())


def test_a_repeated_image_row_counts_once_with_its_first_hashes() -> None:
    a, b = random_hash(41), random_hash(42)
    split, severity = hashed_severity([("s1", "test", a, a, a)])
    _, second = hashed_severity([("s1", "test", b, b, b)])
    result = audit(split, pd.concat([severity, second], ignore_index=True),
                   hashed_pretrain([("pa", "train", a), ("pb", "train", b)]), AuditSettings())
    assert matched(result) == {("s1", "pa"): "phash"} and result.summary["severity_images_audited"] == 1


def test_a_pretraining_table_without_patient_ids_is_audited_by_content() -> None:
    a = random_hash(43)
    split, severity = hashed_severity([("s1", "test", a, a, a)])
    pretrain = hashed_pretrain([("pa", "train", a)]).drop(columns=["patient_id"])
    assert matched(audit(split, severity, pretrain, AuditSettings())) == {("s1", "pa"): "phash"}


def test_when_every_pair_matched_no_distance_is_left_unmatched() -> None:
    a = random_hash(44)
    split, severity = hashed_severity([("s1", "test", a, a, a)])
    result = audit(split, severity, hashed_pretrain([("pa", "train", a)]), AuditSettings())
    assert result.summary["nearest_unmatched_phash_distance"] is None


def test_records_turn_nan_into_null() -> None:
    from stages.validation.leakage import _records

    frame = pd.DataFrame({"a": ["x", None], "b": [1.5, float("nan")]})
    assert _records(frame) == [{"a": "x", "b": 1.5}, {"a": None, "b": None}]


def test_failure_message_names_the_first_five_pairs_of_each_kind() -> None:
    hashes = [random_hash(50 + i) for i in range(6)]
    split, severity = hashed_severity([(f"t{i}", "test", h, h, h) for i, h in enumerate(hashes)]
                                      + [(f"r{i}", "train", h, h, h) for i, h in enumerate(hashes)])
    split["split"] = [*["test"] * 6, *["train"] * 6]
    pretrain = hashed_pretrain([(f"p{i}", "train", h) for i, h in enumerate(hashes)])
    message = failure_message(audit(split, severity, pretrain, AuditSettings(mode="fail")))
    leaked = ", ".join(f"t{i} (test) ~ p{i} [phash]" for i in range(5))
    cross = ", ".join(f"t{i} (test) ~ r{i} [phash]" for i in range(5))
    assert message == (
        f"leakage audit: 6 severity test/val images are in the pretraining train list (phash 6); first: {leaked}. "
        "Set validate.leakage: exclude to drop them from pretraining, or report to only record them; "
        f"leakage audit: 6 severity val/test images match a severity train image; first: {cross}")


def test_failure_message_lists_each_method_that_found_something() -> None:
    a = random_hash(60)
    split, severity = hashed_severity([("t1", "test", a, a, a), ("t2", "test", random_hash(61), a, a)])
    severity.loc[1, "pixel_sha256"] = fake_hash("pa", "sha")  # t2: the exact pixels of pa
    result = audit(split, severity, hashed_pretrain([("pa", "train", a)]), AuditSettings(mode="fail"))
    # t1: phash (its mirrored hash equals its whole one: no extra match); t2: exact pixels, cropped, mirrored.
    assert "(pixel_sha256 1, phash 1, phash_cropped 1, phash_mirrored 1);" in failure_message(result)


def test_planted_copies_are_counted_and_ordered_by_kind() -> None:
    matches = pd.DataFrame({"severity_image_id": ["a", "b", "c"], "pretrain_image_id": ["pa", "pb", "pc"],
                            "methods": ["phash"] * 3})
    severity = pd.DataFrame({"image_id": ["a", "b", "c", "d", "e"], "raw_path": ["ra", "rb", "rc", "rd", "re"]})
    pretrain = pd.DataFrame({"image_id": ["pa", "pb", "pc", "pd", "pe"],
                             "filename": ["fa", "fb", "fc", "fd", "fe"]})
    planted = pd.DataFrame({"filename": ["fa", "fb", "fc", "fd", "fe"],
                            "kind": ["zoomed", "flipped", "copy", "copy", "blurred"],
                            "source_raw_path": ["ra", "rb", "rc", "rd", "re"]})
    score = score_planted(planted, matches, severity, pretrain)
    # The known kinds in PLANTED_KINDS_ORDER, then unknown ones by name.
    assert list(score["by_kind"].items()) == [("copy", {"planted": 2, "found": 1}),
                                              ("flipped", {"planted": 1, "found": 1}),
                                              ("blurred", {"planted": 1, "found": 0}),
                                              ("zoomed", {"planted": 1, "found": 1})]
    assert (score["planted"], score["found"]) == (5, 3)


def test_keys_of_missing_values_and_nested_paths() -> None:
    assert patient_key(float("nan")) is None and name_key(float("nan")) is None and name_key(None) is None
    assert name_key("covidx/train/sub/X-1.png") == "X-1" and name_key("C:\\data\\train\\X-2.jpg") == "X-2"
    assert name_key("  a/b/X-3.dcm ") == "X-3"


def test_the_audited_pretraining_table_keeps_its_columns() -> None:
    a = random_hash(70)
    split, severity = hashed_severity([("s1", "test", a, a, a)])
    pretrain = hashed_pretrain([("pz", "train", random_hash(71)), ("pa", "train", a), ("py", "test", random_hash(72))])
    audited = audit(split, severity, pretrain, AuditSettings()).audited_pretrain
    assert list(audited.columns) == list(pretrain.columns)
    assert audited.image_id.tolist() == ["pz", "py"] and audited.index.tolist() == [0, 1]
