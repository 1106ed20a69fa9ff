"""The leakage audit: each matching method, each mode, the published lists, and the stage's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import schema
from stages.dicomio.read import read_raster
from stages.ingest import content_hashes
from stages.sources.covidnet_files import read_severity_list
from stages.sources.covidx import read_covidx_list
from stages.sources.phantom import render_chest
from stages.validation.leakage import AuditSettings, audit, failure_message, name_key, patient_key


def written(display: np.ndarray, path: Path, scale: float = 1.0, quality: int | None = None) -> dict:
    """Save an 8-bit copy (optionally resized, optionally JPEG) and hash it as ingest would."""
    image = Image.fromarray(np.rint(display * 255).astype(np.uint8))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    image.save(path, **({"quality": quality} if quality else {}))
    return content_hashes(read_raster(path))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, dict]:
    """Hashes of four severity phantoms and of copies of them, as ingest computes them."""
    folder = tmp_path_factory.mktemp("leak")
    displays = {i: render_chest(np.random.default_rng(100 + i), (i % 6,), 400 + 10 * i, 380) for i in range(6)}
    hashes = {f"s{i}": written(displays[i], folder / f"s{i}.png") for i in displays}
    # The case: a test image re-encoded as JPEG and resized.
    hashes["jpeg_copy_of_s0"] = written(displays[0], folder / "copy0.jpg", scale=0.6, quality=75)
    hashes["png_copy_of_s1"] = written(displays[1], folder / "copy1.png")  # same pixels, new name
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
        pretrain_row("s2", "x4", "s2.png", images["s5"], list_name="test"),  # file name of s2, test list
        pretrain_row("p_train_copy", "x5", "p_train_copy.png", images["s3"]),  # s3 is a train image
        pretrain_row("p_clean", "x6", "p_clean.png", images["s4"]),
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
    }
    summary = result.summary
    assert summary["by_method"]["phash"] == {"pairs": 2, "severity_images": 2, "pretrain_images": 2}
    assert summary["by_method"]["pixel_sha256"]["pairs"] == 1
    assert summary["matched_severity_images_by_split"] == {"test": 2, "val": 1}
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
    assert report.summary["matched_pairs"] == 4
    fail = audit(split, severity, pretrain, AuditSettings(mode="fail"))
    message = failure_message(fail)
    assert message.startswith("leakage audit: 3 severity test/val images are in the pretraining train list")
    assert "s0 (test) ~ p_jpeg [phash]" in message and "s1 (test) ~ p_png [pixel_sha256;phash]" in message


def test_clean_cohort_passes_fail_mode(images: dict) -> None:
    split, severity = severity_tables(images)
    clean = pretrain_table(images).query("image_id in ['p_clean', 'p_train_copy']")
    result = audit(split, severity, clean, AuditSettings(mode="fail"))
    assert result.summary["matched_pairs"] == 0 and failure_message(result) is None


def test_audited_splits_are_a_setting(images: dict) -> None:
    split, severity = severity_tables(images)
    result = audit(split, severity, pretrain_table(images), AuditSettings(splits=("test",)))
    assert {s for s, _ in matched(result)} == {"s0", "s1"}


def test_settings_are_checked() -> None:
    assert AuditSettings.from_params({}) == AuditSettings("exclude", ("test", "val"), 16)
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


def test_published_lists_share_91_test_images_by_file_name(shared_data: Path) -> None:
    """COVID-Net CXR-S's 150 test images against COVIDx 8B's training list (no pixels needed)."""
    test = read_severity_list(shared_data / "ricord-covidnet" / "test_COVIDxSev.txt")
    split = pd.DataFrame({"image_id": test.image_id, "patient_id": "MIDRC-RICORD-1C-" + test.patient_id,
                          "split": "test"})
    covidx = read_covidx_list(shared_data / "covidx" / "train_COVIDx8B.txt").assign(list="train")
    covidx["image_id"] = covidx.filename.map(name_key)
    result = audit(split, split[["image_id"]], covidx, AuditSettings())
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
