"""``data.source: ricord`` end to end, offline: acquire -> ingest -> group -> split (reference mode)
against a local server that plays TCIA's NBIA API, GitHub (COVID-Net's pinned files, served from
../shared/data so their sha256 pins hold) and the MD.ai export URL.

The generated DICOMs carry the patient ids and StudyInstanceUID endings of real entries of the
COVIDxSev lists, so COVID-Net's file naming and the paper's reference split are exercised on them.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from stages import acquire, group, ingest, schema, split, validate
from stages.sources import SOURCES, http
from stages.sources import covidnet_files as covidnet
from stages.sources.covidx import read_covidx_list
from tests.conftest import write_dicom
from tests.fake_nbia import COLLECTION, FakeNBIA, serve_covidnet_files, serving

N_TEST_PATIENTS, N_TRAIN_PATIENTS = 2, 3
COHEN_IMAGES = 3  # COVIDx "cohen" images fetched through the URL template


def _pick(listing: pd.DataFrame, n_patients: int, boxed: set[str]) -> pd.DataFrame:
    """The first patients none of whose images has a crop box (boxes are in full-size pixels;
    the generated radiographs are small). Crop boxes are covered in tests/test_ingest.py."""
    has_box = listing.groupby("patient_id").image_id.apply(lambda ids: bool(set(ids) & boxed))
    patients = [p for p in dict.fromkeys(listing.patient_id) if not has_box[p]][:n_patients]
    return listing[listing.patient_id.isin(patients)]


def _study_key(image_id: str) -> tuple[str, str, int]:
    """MIDRC-RICORD-1C-{patient}-{study5}-{i} -> (patient, study5, i)."""
    stem = image_id[len("MIDRC-RICORD-1C-"):]
    patient, study5, index = stem.rsplit("-", 2)
    return patient, study5, int(index)


def _export(studies: dict[str, int]) -> dict:
    """An MD.ai export: two readers per study; the second disagrees on one study (a tie)."""
    names = {1: schema.MILD, 2: schema.SEVERE}
    labels = [{"id": f"L{n}", "name": name, "scope": "STUDY"} for n, name in enumerate(schema.AIRSPACE_LABELS)]
    label_of = {label["name"]: label["id"] for label in labels}
    annotations = []
    for number, (study_uid, level) in enumerate(sorted(studies.items())):
        second = names[3 - level] if number == 0 else names[level]
        for reader, name in (("R1", names[level]), ("R2", second)):
            annotations.append({"id": f"A{len(annotations)}", "StudyInstanceUID": study_uid,
                                "labelId": label_of[name], "createdById": reader})
    return {"id": "P", "name": "fake", "labelGroups": [{"id": "G", "name": schema.AIRSPACE_GROUP, "labels": labels}],
            "datasets": [{"id": "D", "name": "d", "annotations": annotations,
                          "studies": [{"StudyInstanceUID": s, "number": i} for i, s in enumerate(sorted(studies))]}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_covidnet):
    shared, folder = shared_covidnet, shared_covidnet / "ricord-covidnet"
    tmp = tmp_path_factory.mktemp("ricord")
    lists = {name: covidnet.read_severity_list(folder / f"{name}_COVIDxSev.txt") for name in ("train", "test")}
    boxes = set(covidnet.read_crop_boxes(folder / "ricord_data_set.txt").image_id)
    chosen = {"test": _pick(lists["test"], N_TEST_PATIENTS, boxes),
              "train": _pick(lists["train"], N_TRAIN_PATIENTS, boxes)}
    fake = FakeNBIA()
    rng = np.random.default_rng(0)
    studies: dict[str, int] = {}
    for listing in chosen.values():
        per_study: dict[tuple[str, str], list] = {}
        for image_id, level in zip(listing.image_id, listing.airspace_level):
            patient, study5, index = _study_key(image_id)
            per_study.setdefault((patient, study5), []).append((index, level))
        for (patient, study5), entries in sorted(per_study.items()):
            study_uid = f"1.2.826.0.1.3680043.10.474.7{len(studies):03d}{study5}"
            studies[study_uid] = entries[0][1]
            series_uid = study_uid + ".1"
            files = {}
            for index in range(max(i for i, _ in entries) + 1):
                pixels = rng.integers(0, 4096, (96, 80))
                path = write_dicom(tmp / "dicom" / series_uid / f"1-{index + 1:02d}.dcm", pixels, view="AP")
                ds = pydicom.dcmread(path)
                ds.PatientID = f"MIDRC-RICORD-1C-{patient}"
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study_uid, series_uid, index + 1
                ds.save_as(path)
                files[f"1-{index + 1:02d}.dcm"] = path.read_bytes()
            fake.add_series(series_uid, "CR", files)
            fake.series[series_uid]["meta"].update(StudyInstanceUID=study_uid, PatientID=f"MIDRC-RICORD-1C-{patient}")
    serve_covidnet_files(fake, shared)
    fake.static["/mdai/export.json"] = json.dumps(_export(studies)).encode()
    covidx_train = read_covidx_list(shared / "covidx" / "train_COVIDx8B.txt")
    cohen = sorted(set(covidx_train[covidx_train.covidx_source == "cohen"].filename)
                   & {p.name for p in (shared / "cohen-severity" / "images").iterdir()})[:COHEN_IMAGES]
    for name in cohen:
        fake.static[f"/cohen/images/{name}"] = (shared / "cohen-severity" / "images" / name).read_bytes()
    with serving(fake):
        yield {"fake": fake, "tmp": tmp, "chosen": chosen, "cohen": cohen, "studies": studies}


def _params(fake: FakeNBIA) -> dict:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["data"]["source"] = "ricord"
    params["ricord"].update({
        "service": "nbia", "nbia_base_url": fake.base_url, "modalities": ["CR", "DX"], "workers": 2, "retries": 1, "timeout_s": 5,
        "annotations": f"{fake.root_url}/mdai/export.json", "annotations_bytes": None, "covidnet_base_url": fake.root_url,
        "covidx_dir": None, "covidx_max_missing_fraction": 1.0,
        "covidx_image_urls": {"cohen": fake.root_url + "/cohen/images/{filename}"}})
    params["ingest"].update({"image_size": 32, "max_reject_fraction": 0.0})
    params["split"].update({"mode": "reference", "val_fraction": 0.34})
    return params


@pytest.fixture(scope="module")
def pipeline(world):
    fake, tmp = world["fake"], world["tmp"]
    params = _params(fake)
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    summary = acquire.acquire(tmp / "raw", params, tmp / "downloads")
    requests_first = len(fake.log)
    ingest.run(tmp / "raw", tmp / "images", tmp / "tables", params, workers=1)
    group.main(["--raw", str(tmp / "raw"), "--tables", str(tmp / "tables"),
                "--metrics", str(tmp / "cohort.json"), "--params", str(params_file)])
    split.main(["--raw", str(tmp / "raw"), "--tables", str(tmp / "tables"),
                "--metrics", str(tmp / "split.json"), "--params", str(params_file)])
    return {**world, "params": params, "summary": summary, "requests_first": requests_first}


def test_acquire_writes_the_raw_layout_with_checksums(pipeline):
    raw, summary = pipeline["tmp"] / "raw", pipeline["summary"]
    source = json.loads((raw / schema.SOURCE_MANIFEST).read_text())
    assert source["source"] == "ricord" and source["images"]["collection"] == COLLECTION
    assert source["images"]["service"] == "nbia"
    assert source["images"]["series"] == len(pipeline["fake"].series) == summary["images"]["series"]
    for rel, sha in source["sha256"].items():
        assert http.sha256_file(raw / rel) == sha, rel
    assert source["sha256"]["covidnet/test_COVIDxSev.txt"] == covidnet.REFERENCE_FILES["test_COVIDxSev.txt"][1]
    manifest = pd.read_csv(raw / schema.RICORD_DIR / "manifest.csv", dtype=str)
    assert len(manifest) == sum(len(s["files"]) for s in pipeline["fake"].series.values())
    for row in manifest.itertuples():
        assert http.md5_file(raw / schema.RICORD_IMAGES_DIR / row.file) == row.md5
    # COVIDx: the lists are complete; the cohen images came through the URL template, the rest is reported.
    assert http.sha256_file(raw / schema.COVIDX_LISTS["train"]) == covidnet.COVIDX_LIST_FILES["train"][1]
    assert sorted(p.name for p in (raw / schema.COVIDX_IMAGES_DIR).iterdir()) == pipeline["cohen"]
    n_missing = 15952 + 400 - len(pipeline["cohen"])
    assert source["covidx"] == {"images_found": len(pipeline["cohen"]), "images_downloaded": len(pipeline["cohen"]),
                                "images_missing": n_missing, "images_missing_by_reason": source["covidx"]["images_missing_by_reason"]}
    by_reason = source["covidx"]["images_missing_by_reason"]
    assert sum(by_reason.values()) == n_missing and by_reason["dropped in COVIDx 9B"] == 1
    missing = (raw / schema.COVIDX_MISSING).read_text().splitlines()
    assert len(missing) == source["covidx"]["images_missing"]
    assert all(line.split(" ", 1)[0] in ("train", "test") for line in missing)
    assert "train 242a639e.jpg dropped in COVIDx 9B: no Kaggle copy (9B, CXR-4) has it" in missing


def test_ingest_names_images_as_covidnet_does(pipeline):
    images = pd.read_csv(pipeline["tmp"] / "tables" / "severity_images.csv", dtype=str)
    listed = set(pd.concat(pipeline["chosen"].values()).image_id)
    assert listed <= set(images.image_id)
    assert (images.transfer_syntax != "").all() and set(images.view) == {"AP"}
    assert not any("name" in c.lower() or "birth" in c.lower() for c in images.columns)
    pretrain = pd.read_csv(pipeline["tmp"] / "tables" / "pretrain_images.csv", dtype=str)
    assert sorted(pretrain.filename) == pipeline["cohen"]
    rejects = pd.read_csv(pipeline["tmp"] / "tables" / "rejects.csv", dtype=str)
    assert set(rejects.kind) == {"filtered"}  # only the COVIDx images acquire reported missing


def test_group_and_reference_split(pipeline):
    tmp = pipeline["tmp"]
    cohort = json.loads((tmp / "cohort.json").read_text())
    assert cohort["data_source"] == "ricord"
    agreement = cohort["reader_agreement"]
    assert agreement["studies_with_two_or_more_readers"] == len(pipeline["studies"])
    assert agreement["level_agreement_first_two_readers"] < 1.0
    table = pd.read_csv(tmp / "tables" / "split.csv", dtype=str)
    assert set(table[table.split == "test"].image_id) == set(pipeline["chosen"]["test"].image_id)
    assert set(table[table.split != "test"].image_id) == set(pipeline["chosen"]["train"].image_id)
    assert table.groupby("patient_id").split.nunique().max() == 1
    assert table.patient_id.str.startswith("MIDRC-RICORD-1C-").all()
    summary = json.loads((tmp / "split.json").read_text())
    assert summary["mode"] == "reference"
    assert summary["reference"]["listed_images_missing"] == 909 - len(table)
    # The list's levels are kept; the one tied study went to the first reader, as the list says.
    listed = pd.concat(pipeline["chosen"].values()).set_index("image_id").airspace_level
    assert (table.set_index("image_id").airspace_level.astype(int) == listed.reindex(table.image_id).values).all()


def test_second_acquire_fetches_nothing_already_verified(pipeline):
    fake, tmp = pipeline["fake"], pipeline["tmp"]
    before = len(fake.log)
    acquire.acquire(tmp / "raw2", pipeline["params"], tmp / "downloads")
    again = fake.log[before:]
    # Only the series listing and the COVIDx images that were not found the first time.
    assert {r["endpoint"] for r in again if r.get("status") != 404} == {"getSeries"}, again
    assert not {r["key"] for r in again} & set(fake.series)
    assert not any(r["endpoint"] in pipeline["cohen"] for r in again)
    assert (tmp / "raw2" / schema.SOURCE_MANIFEST).read_bytes() == (tmp / "raw" / schema.SOURCE_MANIFEST).read_bytes()


def test_acquire_failure_keeps_finished_downloads_and_no_raw_folder(world, tmp_path):
    fake = world["fake"]
    params = _params(fake)
    uid = sorted(fake.series)[0]
    fake.fail("getImageWithMD5Hash", uid, forever="503")
    try:
        with pytest.raises(SystemExit, match=f"(?s){uid}.*HTTP 503.*rerun"):
            acquire.main(["--out", str(tmp_path / "raw"), "--downloads", str(tmp_path / "downloads"),
                          "--params", str(_write(tmp_path, params))])
    finally:
        fake.clear_faults()
    assert not (tmp_path / "raw").exists()
    finished = sorted(p.stem for p in (tmp_path / "downloads" / "nbia").glob("*.json"))
    assert finished == sorted(fake.series)[1:]


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_validate_holds_a_reference_run_to_the_papers_cohort(pipeline):
    """RICORD with the reference split must be the paper's cohort; this small fake one is not."""
    tmp = pipeline["tmp"]
    with pytest.raises(SystemExit) as excinfo:
        validate.main(["--tables", str(tmp / "tables"), "--images", str(tmp / "images"), "--raw", str(tmp / "raw"),
                       "--out", str(tmp / "validation"), "--leakage", str(tmp / "leakage.json"),
                       "--report", str(tmp / "validation.md"), "--params", str(tmp / "params.yaml")])
    n_images = len(pd.read_csv(tmp / "tables" / "split.csv"))
    message = str(excinfo.value.code)
    assert "suite 'paper_cohort', expectation 'expect_column_pair_values_to_be_equal'" in message
    assert f"figure=images,observed={n_images},expected=909" in message
    for suite in ("severity_images", "pretrain_images", "labels"):
        assert json.loads((tmp / "validation" / f"{suite}.json").read_text())["success"], suite
    # The pretraining list's thousands of images acquire reported missing are accounted for.
    listed = json.loads((tmp / "validation" / "pretrain_images.json").read_text())
    (status,) = [e for e in listed["expectations"] if e["column"] == "status"]
    assert status["success"] and status["unexpected_count"] == 0
    assert (tmp / "validation.md").read_text().startswith("# Data validation - RSNA RICORD 1c (real data)")
    assert not (tmp / "tables" / schema.PRETRAIN_AUDITED_TABLE).exists()


# ---------------------------------------------------------------------------------------------
# The source registry acquire dispatches through (stages.sources.SOURCES)
# ---------------------------------------------------------------------------------------------
def test_every_source_has_a_title_and_an_adapter_with_build():
    assert set(SOURCES) == set(schema.SOURCE_TITLES) == {"synthetic", "ricord"}
    for name, source in SOURCES.items():
        assert source.name == name and source.title == schema.SOURCE_TITLES[name]
        build = importlib.import_module(source.module).build
        assert list(inspect.signature(build).parameters) == ["staging", "downloads", "params"], name


def test_acquire_names_an_unknown_source_and_the_known_ones(tmp_path):
    with pytest.raises(SystemExit, match="unknown data.source 'mystery'; the known sources are synthetic, ricord$"):
        acquire.acquire(tmp_path / "raw", {"data": {"source": "mystery"}}, tmp_path / "downloads")
    assert list(tmp_path.iterdir()) == []


def test_ricord_source_without_its_params_section_leaves_no_raw_folder(tmp_path):
    with pytest.raises(SystemExit, match="needs a 'ricord' section"):
        acquire.acquire(tmp_path / "raw", {"data": {"source": "ricord"}}, tmp_path / "downloads")
    assert list(tmp_path.iterdir()) == []


def test_annotation_export_is_pinned_by_size_and_by_its_first_sha256(tmp_path):
    """The export is checked against ricord.annotations_bytes; the first verified download's sha256
    is pinned (trust on first use), so a different file at the same URL later fails."""
    from stages.sources import ricord
    from stages.sources.http import DownloadError
    fake = FakeNBIA()
    first = b'{"labelGroups": [], "datasets": []}\n'
    fake.static["/mdai/export.json"] = first
    with serving(fake):
        params = {"annotations": f"{fake.root_url}/mdai/export.json", "annotations_bytes": len(first),
                  "retries": 0, "timeout_s": 5}
        checksums = ricord.fetch_annotations(tmp_path / "dl", tmp_path / "raw", params)
        pin = json.loads((tmp_path / "dl" / "annotations" / "export.json.pin.json").read_text())
        assert pin["bytes"] == len(first) and pin["sha256"] == checksums[schema.RICORD_ANNOTATIONS]
        assert pin["sha256"] == http.sha256_file(tmp_path / "raw" / schema.RICORD_ANNOTATIONS)
        # TCIA re-exports a file of the same size: the sha256 pin catches it on a fresh download.
        fake.static["/mdai/export.json"] = first.replace(b"[]", b"{}", 1)
        (tmp_path / "dl" / "annotations" / "export.json").unlink()
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            ricord.fetch_annotations(tmp_path / "dl", tmp_path / "raw2", params)
        with pytest.raises(DownloadError, match=f"size mismatch: expected {len(first) + 1} bytes"):
            ricord.fetch_annotations(tmp_path / "dl3", tmp_path / "raw3", {**params, "annotations_bytes": len(first) + 1})
    local = tmp_path / "local.json"
    local.write_bytes(first)
    with pytest.raises(SystemExit, match=r"local\.json: \d+ bytes, but the annotation export is pinned at 1 "):
        ricord.fetch_annotations(tmp_path / "dl4", tmp_path / "raw4", {"annotations": str(local), "annotations_bytes": 1})


@pytest.mark.parametrize("layout", ["8B", "9B", "CXR-4", "flat"])
def test_covidx_copies_of_every_layout_are_found(tmp_path, layout):
    """Kaggle's 8B and 9B copies have train/ and test/; CXR-4 adds val/ (an 8B train image may sit
    there); a flat folder works too. Each listed name is found wherever its copy put it."""
    from stages.sources import ricord
    folders = {"8B": ("train", "test"), "9B": ("train", "test"), "CXR-4": ("val", "test"), "flat": ("", "")}[layout]
    for name, folder in zip(("a.png", "b.png"), folders):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"x")
    assert ricord.find_covidx_image(tmp_path, "train", "a.png") == tmp_path / folders[0] / "a.png"
    assert ricord.find_covidx_image(tmp_path, "test", "b.png") == tmp_path / folders[1] / "b.png"
    assert ricord.find_covidx_image(tmp_path, "train", "c.png") is None


def test_missing_covidx_images_say_why():
    from stages.sources import ricord
    folder, templates = Path("/copy"), {"cohen": "http://x/{filename}"}
    assert ricord.missing_reason("242a639e.jpg", "rsna", folder, {}).startswith("dropped in COVIDx 9B")
    assert ricord.missing_reason("x.png", "cohen", folder, templates) == "download failed (source cohen)"
    assert ricord.missing_reason("x.png", "rsna", None, templates) == \
        "no ricord.covidx_dir and no URL template for source rsna"
    assert ricord.missing_reason("x.png", "rsna", folder, templates).startswith("not in ricord.covidx_dir under train/, val/, test/")
