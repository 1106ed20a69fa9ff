import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from stages import ingest, schema
from stages.sources import phantom
from tests.conftest import write_dicom
from tests.test_phantom import TINY_CONFIG

PARAMS = {"data": {"source": "synthetic"},
          "ingest": {"image_size": 32, "crop_top_fraction": 0.08, "max_reject_fraction": 0.5}}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "raw"
    phantom.generate(out, {**TINY_CONFIG, "n_corrupt_files": 2})
    return out


def test_ingest_writes_tables_images_and_rejects(raw, tmp_path):
    summary = ingest.run(raw, tmp_path / "images", tmp_path / "tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str)
    truth = pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv", dtype=str)
    assert list(severity.columns) == schema.SEVERITY_IMAGE_COLUMNS
    assert summary["severity"] == len(truth) == len(severity)
    assert set(severity.sop_uid) == set(truth.sop_uid)
    assert severity.image_id.str.match(r"^MIDRC-RICORD-1C-[^-].*-\d+$").all()
    assert not severity.image_id.str.contains("MIDRC-RICORD-1C-MIDRC").any()
    image = np.asarray(Image.open(tmp_path / "images" / severity.image_path[0]))
    assert image.shape == (32, 32) and image.dtype == np.uint8
    rejects = pd.read_csv(tmp_path / "tables/rejects.csv")
    corrupt = pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv")
    assert sorted(rejects.raw_path) == sorted(corrupt.raw_path)
    assert rejects.reason.str.contains(".dcm").all()
    pretrain = pd.read_csv(tmp_path / "tables/pretrain_images.csv", dtype=str)
    assert len(pretrain) == TINY_CONFIG["n_pretrain"] and set(pretrain.label) <= {"positive", "negative"}


def test_ingest_keeps_capped_age_and_sex_from_the_headers(raw, tmp_path):
    ingest.run(raw, tmp_path / "images", tmp_path / "tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str, keep_default_na=False)
    headers = [pydicom.dcmread(raw / p, stop_before_pixels=True) for p in severity.raw_path]
    # The phantom writes "nnnY"; the table keeps whole years with 90 or older stored as 90.
    expected_ages = [str(min(int(ds.PatientAge[:3]), 90)) for ds in headers]
    assert severity.patient_age_years.tolist() == expected_ages
    assert severity.patient_sex.tolist() == [ds.PatientSex for ds in headers]
    assert set(severity.patient_sex) <= {"M", "F"}


def test_missing_or_malformed_age_leaves_the_age_blank_and_keeps_the_image(raw, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    for corrupt in pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv").raw_path:
        (copy / corrupt).unlink()
    files = sorted((copy / schema.RICORD_IMAGES_DIR).rglob("*.dcm"))
    edits = {files[0]: "45 years", files[1]: None}  # malformed; absent
    for path, age in edits.items():
        ds = pydicom.dcmread(path)
        del ds.PatientAge, ds.PatientSex
        if age is not None:
            with pytest.warns(UserWarning, match="AS"):  # pydicom only warns; real files hold such ages
                ds.add_new("PatientAge", "AS", age)
        ds.save_as(path)
    strict = {**PARAMS, "ingest": {**PARAMS["ingest"], "max_reject_fraction": 0.0}}
    summary = ingest.run(copy, tmp_path / "images", tmp_path / "tables", strict, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str, keep_default_na=False)
    assert summary["severity"] == len(files) == len(severity)
    edited = severity.raw_path.isin([p.relative_to(copy).as_posix() for p in edits])
    assert edited.sum() == 2
    assert (severity.patient_age_years[edited] == "").all() and (severity.patient_sex[edited] == "").all()
    # The other ages stay whole numbers, not floats turned "45.0" by the blanks.
    assert severity.patient_age_years[~edited].str.fullmatch(r"\d+").all()


def test_ingest_is_deterministic(raw, tmp_path):
    ingest.run(raw, tmp_path / "a", tmp_path / "ta", PARAMS, workers=2)
    ingest.run(raw, tmp_path / "b", tmp_path / "tb", PARAMS, workers=1)
    for name in ("severity_images.csv", "pretrain_images.csv", "rejects.csv"):
        assert (tmp_path / "ta" / name).read_bytes() == (tmp_path / "tb" / name).read_bytes()
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_too_many_rejects_fail_and_name_the_files(raw, tmp_path):
    strict = {**PARAMS, "ingest": {**PARAMS["ingest"], "max_reject_fraction": 0.0}}
    with pytest.raises(SystemExit, match=r"max_reject_fraction.*ricord/images/"):
        ingest.run(raw, tmp_path / "images", tmp_path / "tables", strict, workers=1)
    # The rejects table is still written for inspection; the raw folder is untouched.
    assert (tmp_path / "tables/rejects.csv").exists()
    assert not (tmp_path / "tables/severity_images.csv").exists()


def test_missing_listed_pretrain_image_is_rejected(raw, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    victim = sorted((copy / schema.COVIDX_IMAGES_DIR).iterdir())[0]
    victim.unlink()
    ingest.run(copy, tmp_path / "images", tmp_path / "tables", PARAMS, workers=1)
    rejects = pd.read_csv(tmp_path / "tables/rejects.csv")
    row = rejects[rejects.cohort == "pretrain"]
    assert list(row.raw_path) == [f"{schema.COVIDX_IMAGES_DIR}/{victim.name}"]
    assert "not found" in row.reason.iloc[0]


def _cli_params(tmp_path) -> str:
    """PARAMS' ingest settings as a params file for the single-file command line."""
    path = tmp_path / "cli_params.yaml"
    path.write_text("preset: embedded\npresets: {embedded: {}}\n"
                    "ingest: {image_size: 32, crop_top_fraction: 0.08, max_reject_fraction: 0.5}\n")
    return str(path)


def test_single_file_cli_matches_pipeline(raw, tmp_path):
    """The same DICOM through ``python -m stages.ingest INPUT --out`` and through the pipeline:
    the same pixels (with and without a crop box)."""
    ingest.run(raw, tmp_path / "images", tmp_path / "tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str)
    params = _cli_params(tmp_path)
    for row in severity.head(3).itertuples():
        out = tmp_path / "cli" / f"{row.image_id}.png"
        ingest.main([str(raw / row.raw_path), "--out", str(out), "--params", params])
        np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                      np.asarray(Image.open(tmp_path / "images" / row.image_path)))
    target = severity.iloc[0]
    box = (3, 9, int(target["columns"]) - 4, int(target["rows"]) - 2)
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / schema.RICORD_CROP_BOXES).parent.mkdir(parents=True)
    (copy / schema.RICORD_CROP_BOXES).write_text(f"{target.image_id}.png {' '.join(map(str, box))}\n")
    ingest.run(copy, tmp_path / "boxed", tmp_path / "boxed_tables", PARAMS, workers=1)
    out = tmp_path / "cli" / "boxed.png"
    ingest.main([str(copy / target.raw_path), "--out", str(out), "--params", params,
                 "--crop-box", *map(str, box)])
    pipeline = np.asarray(Image.open(tmp_path / "boxed" / target.image_path))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), pipeline)
    assert not np.array_equal(pipeline, np.asarray(Image.open(tmp_path / "images" / target.image_path)))


def test_a_crop_box_outside_the_image_rejects_that_image_naming_it(raw, tmp_path):
    ingest.run(raw, tmp_path / "a/images", tmp_path / "a/tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "a/tables/severity_images.csv", dtype=str)
    target = severity.iloc[0]
    columns, rows = int(target["columns"]), int(target["rows"])
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / schema.RICORD_CROP_BOXES).parent.mkdir(parents=True)
    (copy / schema.RICORD_CROP_BOXES).write_text(
        f"{target.image_id}.png {columns + 5} 0 {columns + 50} {rows}\n")
    ingest.run(copy, tmp_path / "b/images", tmp_path / "b/tables", PARAMS, workers=1)
    after = pd.read_csv(tmp_path / "b/tables/severity_images.csv", dtype=str)
    assert target.image_id not in set(after.image_id) and len(after) == len(severity) - 1
    rejects = pd.read_csv(tmp_path / "b/tables/rejects.csv", dtype=str)
    row = rejects[rejects.raw_path == target.raw_path]
    assert row.kind.tolist() == ["unreadable"]
    assert row.reason.iloc[0] == (f"{copy / target.raw_path}: crop box ({columns + 5}, 0, {columns + 50}, {rows}) "
                                  f"leaves nothing of a {columns}x{rows} image")
    with pytest.raises(SystemExit, match=rf"ingest: crop box \({columns + 5}, 0, {columns + 50}, {rows}\) leaves nothing"):
        ingest.main([str(copy / target.raw_path), "--out", str(tmp_path / "x.png"), "--params", _cli_params(tmp_path),
                     "--crop-box", str(columns + 5), "0", str(columns + 50), str(rows)])


def test_single_file_cli_inverts_monochrome1_and_names_a_bad_file(tmp_path):
    pixels = np.tile(np.linspace(0, 4095, 300).round(), (400, 1)).astype(np.int64)
    dicom = write_dicom(tmp_path / "one.dcm", pixels, "MONOCHROME1", 12)
    params_file = tmp_path / "params.yaml"
    params_file.write_text("preset: embedded\npresets: {embedded: {}}\n"
                           "ingest: {image_size: 48, crop_top_fraction: 0.08}\n")
    ingest.main([str(dicom), "--out", str(tmp_path / "one.png"), "--params", str(params_file)])
    out = np.asarray(Image.open(tmp_path / "one.png"))
    assert out.shape == (48, 48)
    assert out[:, 0].mean() > 250 and out[:, -1].mean() < 5  # MONOCHROME1: low stored value = bright
    bad = tmp_path / "bad.dcm"
    bad.write_text("not a dicom")
    with pytest.raises(SystemExit, match="bad.dcm"):
        ingest.main([str(bad), "--out", str(tmp_path / "bad.png"), "--params", str(params_file)])


def test_crop_box_from_reference_file_is_applied_first(raw, tmp_path):
    plain = ingest.run(raw, tmp_path / "a/images", tmp_path / "a/tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "a/tables/severity_images.csv", dtype=str)
    target = severity.iloc[0]
    box = (5, 7, int(target["columns"]) // 2, int(target["rows"]) // 2)
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / schema.RICORD_CROP_BOXES).parent.mkdir(parents=True)
    (copy / schema.RICORD_CROP_BOXES).write_text(
        f"{target.image_id}.png {' '.join(map(str, box))}\nsome-other-image.png\n")
    boxed = ingest.run(copy, tmp_path / "b/images", tmp_path / "b/tables", PARAMS, workers=1)
    assert boxed == plain
    from stages.dicomio.read import read_dicom
    from stages.imaging.preprocess import preprocess

    display, _ = read_dicom(copy / target.raw_path)
    # The box cut by hand (x: columns 5..columns/2, y: rows 7..rows/2), then the rest of the
    # preprocessing without a box: the oracle does not use crop_box.
    by_hand = display[7:int(target["rows"]) // 2, 5:int(target["columns"]) // 2]
    expected = preprocess(by_hand, 32, 0.08, None)
    got = np.asarray(Image.open(tmp_path / "b/images" / target.image_path))
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np.asarray(Image.open(tmp_path / "a/images" / target.image_path)))
    other = severity.iloc[1].image_path  # no box: unchanged
    assert (tmp_path / "a/images" / other).read_bytes() == (tmp_path / "b/images" / other).read_bytes()


def test_views_setting_leaves_images_out_without_failing(raw, tmp_path):
    params = {**PARAMS, "ingest": {**PARAMS["ingest"], "views": ["AP", "PA"], "max_reject_fraction": 0.0}}
    strict_raw = tmp_path / "raw"
    shutil.copytree(raw, strict_raw)
    for corrupt in pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv").raw_path:
        (strict_raw / corrupt).unlink()
    lateral = write_dicom(strict_raw / schema.RICORD_IMAGES_DIR / "lateral" / "1-1.dcm",
                          np.arange(64 * 64).reshape(64, 64) % 4096, view="LL")
    summary = ingest.run(strict_raw, tmp_path / "images", tmp_path / "tables", params, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str)
    rejects = pd.read_csv(tmp_path / "tables/rejects.csv", dtype=str)
    assert set(severity.view) <= {"AP", "PA"} and summary["severity"] == len(severity) > 0
    filtered = rejects[rejects.kind == "filtered"]
    assert len(filtered) > 1 and filtered.reason.str.contains(r"view (?:UNKNOWN|LATERAL) is not in ingest.views").all()
    assert filtered.raw_path.str.endswith("lateral/1-1.dcm").sum() == 1, lateral
    with pytest.raises(SystemExit, match="OBLIQUE"):
        ingest.run(strict_raw, tmp_path / "images", tmp_path / "t2",
                   {**params, "ingest": {**params["ingest"], "views": ["OBLIQUE"]}}, workers=1)


def test_covidx_images_acquire_reported_missing_are_left_out(raw, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    victim = sorted((copy / schema.COVIDX_IMAGES_DIR).iterdir())[0]
    victim.unlink()
    listed = pd.concat([ingest.read_covidx_list(copy / rel).assign(list=name)
                        for name, rel in schema.COVIDX_LISTS.items()])
    list_name = listed.set_index("filename").list[victim.name]
    (copy / schema.COVIDX_MISSING).write_text(f"{list_name} {victim.name}\n")
    strict = {**PARAMS, "ingest": {**PARAMS["ingest"], "max_reject_fraction": 0.0}}
    for corrupt in pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "corrupt_files.csv").raw_path:
        (copy / corrupt).unlink()
    ingest.run(copy, tmp_path / "images", tmp_path / "tables", strict, workers=1)
    rejects = pd.read_csv(tmp_path / "tables/rejects.csv")
    assert rejects.to_dict("records") == [{
        "raw_path": f"{schema.COVIDX_IMAGES_DIR}/{victim.name}", "cohort": "pretrain", "kind": "filtered",
        "reason": f"{schema.COVIDX_IMAGES_DIR}/{victim.name}: listed in COVIDx but not acquired"}]


def test_phantom_crop_boxes_name_the_images_ingest_numbers(tmp_path):
    """The phantom's ricord_data_set.txt is keyed by COVID-Net image ids; ingest must give each box
    to the file the phantom planned it for (a truncated file with a readable header is numbered too),
    and hash each image whole, in its box and mirrored."""
    from stages.dicomio.read import read_dicom
    from stages.imaging.hashing import perceptual_hash
    from stages.imaging.preprocess import crop_box
    from stages.sources.covidnet_files import read_crop_boxes
    from stages.sources.phantom.crop_boxes import plan_boxes
    from stages.sources.phantom.ricord import plan_ricord

    config = {**TINY_CONFIG, "n_corrupt_files": 2, "crop_box_fraction": 0.5}
    raw = tmp_path / "raw"
    phantom.generate(raw, config)
    ingest.run(raw, tmp_path / "images", tmp_path / "tables", PARAMS, workers=1)
    severity = pd.read_csv(tmp_path / "tables/severity_images.csv", dtype=str)
    _, studies = plan_ricord(config)
    planned = plan_boxes(config, [image for study in studies for image in study.images])
    written = {row.image_id: (row.xmin, row.ymin, row.xmax, row.ymax)
               for row in read_crop_boxes(raw / schema.RICORD_CROP_BOXES).itertuples()}
    assert written and len(written) == sum(box is not None for box in planned.values())
    for row in severity.itertuples():
        box = planned[row.raw_path]
        assert written.get(row.image_id) == box
        display, _ = read_dicom(raw / row.raw_path)
        assert row.phash_cropped == perceptual_hash(crop_box(display, box) if box else display)
        assert row.phash_mirrored == perceptual_hash(display[:, ::-1])
        assert (row.phash_cropped != row.phash) == (box is not None)
