"""Tests for the ``validate`` stage: good tables pass, each kind of bad table fails by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from stages import schema
from stages.validate import as_int_column, main, wants_paper_cohort
from stages.validation.suites import (PAPER_COHORT_SUITE, SUITE_NAMES, Inputs, ValidationFailed,
                                     raise_if_failed, run_all)

PARAMS = {"min_images_per_level_per_split": 2, "min_image_size": 64}
# Patients 0-5 train, 6-8 val, 9-11 test: patient-disjoint by construction.
SPLIT_OF_PATIENT = ["train"] * 6 + ["val"] * 3 + ["test"] * 3

IN_SET = "expect_column_values_to_be_in_set"
UNIQUE = "expect_column_values_to_be_unique"


def image_id(patient: int, index: int) -> str:
    """Leading zeros on purpose: ids must survive CSV round trips as text (``00030``)."""
    return f"{patient:04d}{index}"


def content_hashes(key: str, columns: tuple[str, ...] = ("pixel_sha256", "phash")) -> dict[str, str]:
    """Distinct stand-in hashes (random 256-bit perceptual hashes lie ~128 bits apart)."""
    return {column: hashlib.sha256(f"{column} {key}".encode()).hexdigest() for column in columns}


def make_tables(n_patients: int = 12, images_per_patient: int = 2) -> dict[str, pd.DataFrame]:
    """Consistent small tables: each patient has a Level 1 study and a Level 2 study, one image each."""
    images, labels, split = [], [], []
    for p in range(n_patients):
        patient = f"P{p:04d}"
        for i in range(images_per_patient):
            iid = image_id(p, i)
            level = 1 if (p + i) % 2 == 0 else 2
            grade = "mild" if level == 1 else ("moderate" if p % 2 else "severe")
            images.append({
                "image_id": iid, "patient_id": patient, "study_uid": f"1.2.{p}.{i}",
                "series_uid": f"1.2.{p}.{i}.1", "sop_uid": f"1.2.{p}.{i}.1.1",
                "raw_path": f"ricord/images/{iid}.dcm", "image_path": f"{iid}.png", "modality": "DX",
                "view": "AP" if i == 0 else "PA", "rows": 512, "columns": 512,
                "photometric": "MONOCHROME2", "bits_stored": 12,
                "transfer_syntax": "1.2.840.10008.1.2.1", "source": "synthetic",
                **content_hashes(iid, schema.SEVERITY_HASH_COLUMNS),
                # Blank sex and age (unknown) on some patients; 90 (the HIPAA cap) on the last.
                "patient_age_years": None if p == 2 else min(35 + 5 * p, 90),
                "patient_sex": ("M", "F", "O", "")[p % 4],
            })
            labels.append({
                "image_id": iid, "patient_id": patient, "study_uid": f"1.2.{p}.{i}", "n_readers": 3,
                "reader_grades": ";".join([grade] * 3), "study_grade": grade, "airspace_level": level,
            })
            split.append({"image_id": iid, "patient_id": patient, "split": SPLIT_OF_PATIENT[p],
                          "airspace_level": level, "image_path": f"{iid}.png"})
    pretrain = [{
        "image_id": f"c{k:03d}", "patient_id": f"cp{k:03d}", "filename": f"c{k:03d}.png",
        "label": "positive" if k % 2 else "negative", "covidx_source": "synthetic",
        "list": "test" if k % 5 == 0 else "train", "raw_path": f"covidx/images/c{k:03d}.png",
        "image_path": f"c{k:03d}.png", "rows": 256, "columns": 256, "source": "synthetic",
        **content_hashes(f"c{k:03d}"),
    } for k in range(10)]
    return {
        "severity_images": pd.DataFrame(images)[schema.SEVERITY_IMAGE_COLUMNS],
        "pretrain_images": pd.DataFrame(pretrain)[schema.PRETRAIN_IMAGE_COLUMNS],
        "labels": pd.DataFrame(labels)[schema.LABEL_COLUMNS],
        "split": pd.DataFrame(split)[schema.SPLIT_COLUMNS],
    }


def failures(results: dict) -> set[tuple[str, str, str | None]]:
    """(suite, expectation, column) of every failed expectation."""
    return {(name, e["expectation"], e["column"])
            for name, suite in results.items() for e in suite["expectations"] if not e["success"]}


def failure_message(results: dict) -> str:
    with pytest.raises(ValidationFailed) as excinfo:
        raise_if_failed(results)
    return str(excinfo.value)


@pytest.fixture(scope="module")
def good_results() -> dict:
    return run_all(make_tables(), PARAMS)


def test_good_tables_pass(good_results: dict) -> None:
    assert list(good_results) == list(SUITE_NAMES)
    for name, suite in good_results.items():
        assert suite["suite"] == name
        assert suite["success"], [e for e in suite["expectations"] if not e["success"]]
        assert all(e["success"] and e["unexpected_count"] == 0 for e in suite["expectations"])
    assert good_results["severity_images"]["n_rows"] == 24
    assert good_results["pretrain_images"]["n_rows"] == 10
    raise_if_failed(good_results)  # no exception


def test_suites_hold_the_promised_expectations(good_results: dict) -> None:
    present = {(name, e["expectation"], e["column"])
               for name, suite in good_results.items() for e in suite["expectations"]}
    promised = {
        ("severity_images", "expect_table_columns_to_match_set", None),
        ("severity_images", UNIQUE, "image_id"),
        ("severity_images", "expect_column_values_to_not_be_null", "image_id"),
        ("severity_images", UNIQUE, "sop_uid"),
        ("severity_images", IN_SET, "view"),
        ("severity_images", "expect_column_values_to_be_between", "rows"),
        ("severity_images", "expect_column_values_to_be_between", "columns"),
        ("severity_images", "expect_column_values_to_not_be_in_set", "normalised_name"),
        ("severity_images", IN_SET, "patient_sex"),
        ("severity_images", "expect_column_values_to_be_between", "patient_age_years"),
        ("pretrain_images", IN_SET, "label"),
        ("pretrain_images", UNIQUE, "image_id"),
        ("pretrain_images", UNIQUE, "filename"),
        ("pretrain_images", IN_SET, "list"),
        ("labels", UNIQUE, "image_id"),
        ("labels", IN_SET, "airspace_level"),
        ("labels", IN_SET, "study_grade"),
        ("labels", IN_SET, "in_image_table"),
        ("split", UNIQUE, "image_id"),
        ("split", IN_SET, "split"),
        ("split", IN_SET, "airspace_level"),
        ("split", IN_SET, "in_labels"),
        ("split", IN_SET, "in_split"),
        ("split", IN_SET, "n_splits"),
        ("split", "expect_column_values_to_be_between", "n_images"),
        ("split", "expect_column_values_to_be_between", "deviation"),
        ("labels", IN_SET, "study_has_images"),
        ("labels", IN_SET, "n_levels"),
    }
    assert promised <= present, promised - present


def test_results_hold_no_run_specific_fields(good_results: dict) -> None:
    suite = good_results["split"]
    assert set(suite) == {"suite", "success", "n_rows", "expectations"}
    allowed = {"expectation", "column", "frame", "description", "kwargs", "success",
               "unexpected_count", "unexpected_examples", "unexpected_values", "error"}
    for exp in suite["expectations"]:
        assert set(exp) == allowed
        assert "batch_id" not in exp["kwargs"] and "id" not in exp["kwargs"]


# --- tampered tables: each fails exactly the expectation it breaks --------------------------
def move_patient_to_second_split(t: dict) -> None:
    t["split"].loc[t["split"].image_id == image_id(3, 1), "split"] = "val"  # P0003 is in train


def duplicate_sop_uid(t: dict) -> None:
    images = t["severity_images"]
    images.loc[1, "sop_uid"] = images.loc[0, "sop_uid"]


def duplicate_split_row(t: dict) -> None:
    t["split"] = pd.concat([t["split"], t["split"].iloc[[0]]], ignore_index=True)


def level_3_in_split(t: dict) -> None:
    t["split"].loc[0, "airspace_level"] = 3


def level_3_in_labels(t: dict) -> None:
    t["labels"].loc[0, "airspace_level"] = 3


def lateral_view(t: dict) -> None:
    t["severity_images"].loc[t["severity_images"].image_id == image_id(2, 1), "view"] = "LATERAL"


def patient_name_column(t: dict) -> None:
    t["severity_images"]["PatientName"] = "DOE^JOHN"


def snake_case_birth_date_column(t: dict) -> None:
    t["severity_images"]["patient_birth_date"] = "19700101"


def label_without_image(t: dict) -> None:
    images = t["severity_images"]
    t["severity_images"] = images[images.image_id != image_id(3, 0)].reset_index(drop=True)


def labelled_study_without_images(t: dict) -> None:
    t["labels"].loc[0, "study_uid"] = "9.9.9"


def study_with_two_levels(t: dict) -> None:
    # Image 00001 (Level 2) joins the study of image 00000 (Level 1).
    t["labels"].loc[t["labels"].image_id == image_id(0, 1), "study_uid"] = "1.2.0.0"


def too_few_level_1_in_val(t: dict) -> None:
    # Val holds patients 6-8, one Level 1 image each; drop two of them (labels and split alike).
    gone = {image_id(6, 0), image_id(7, 1)}
    for name in ("labels", "split"):
        t[name] = t[name][~t[name].image_id.isin(gone)].reset_index(drop=True)


def pretrain_label_covid(t: dict) -> None:
    t["pretrain_images"].loc[3, "label"] = "covid"


def labelled_image_missing_from_split(t: dict) -> None:
    t["split"] = t["split"][t["split"].image_id != image_id(0, 0)].reset_index(drop=True)


def split_image_without_label(t: dict) -> None:
    t["labels"] = t["labels"][t["labels"].image_id != image_id(0, 0)].reset_index(drop=True)


def small_image(t: dict) -> None:
    t["severity_images"].loc[t["severity_images"].image_id == image_id(4, 0), "rows"] = 32


def sex_spelled_out(t: dict) -> None:
    t["severity_images"].loc[t["severity_images"].image_id == image_id(1, 0), "patient_sex"] = "male"


def age_above_the_cap(t: dict) -> None:
    # 95 must have been stored as 90 ("90 or older"), or the table holds an identifying age.
    t["severity_images"].loc[t["severity_images"].image_id == image_id(5, 1), "patient_age_years"] = 95


def negative_age(t: dict) -> None:
    t["severity_images"].loc[t["severity_images"].image_id == image_id(6, 0), "patient_age_years"] = -1


def missing_view_column(t: dict) -> None:
    t["severity_images"] = t["severity_images"].drop(columns=["view"])


TAMPERS: list[tuple[Callable[[dict], None], set[tuple[str, str, str | None]], str]] = [
    (move_patient_to_second_split, {("split", IN_SET, "n_splits")}, "patient_id=P0003"),
    (duplicate_sop_uid, {("severity_images", UNIQUE, "sop_uid")}, "image_id=00001"),
    (duplicate_split_row, {("split", UNIQUE, "image_id")}, "image_id=00000"),
    (level_3_in_split, {("split", IN_SET, "airspace_level")}, "image_id=00000"),
    (level_3_in_labels, {("labels", IN_SET, "airspace_level"),
                         ("labels", "expect_column_pair_values_to_be_equal", "airspace_level,level_of_grade")},
     "image_id=00000"),
    (lateral_view, {("severity_images", IN_SET, "view")}, "image_id=00021"),
    (patient_name_column, {("severity_images", "expect_column_values_to_not_be_in_set", "normalised_name")},
     "column_name=PatientName"),
    (snake_case_birth_date_column,
     {("severity_images", "expect_column_values_to_not_be_in_set", "normalised_name")},
     "column_name=patient_birth_date"),
    # Each image is its own study here, so the study loses its images too.
    (label_without_image, {("labels", IN_SET, "in_image_table"), ("labels", IN_SET, "study_has_images")},
     "image_id=00030"),
    (labelled_study_without_images, {("labels", IN_SET, "study_has_images")}, "study_uid=9.9.9"),
    (study_with_two_levels, {("labels", IN_SET, "n_levels")}, "study_uid=1.2.0.0"),
    # Val keeps 1 of 4 images at Level 1: too few, and its Level 2 share (0.75) far from 0.5.
    (too_few_level_1_in_val, {("split", "expect_column_values_to_be_between", "n_images"),
                              ("split", "expect_column_values_to_be_between", "deviation")},
     "split=val,airspace_level=1"),
    (pretrain_label_covid, {("pretrain_images", IN_SET, "label")}, "image_id=c003"),
    (labelled_image_missing_from_split, {("split", IN_SET, "in_split")}, "image_id=00000"),
    (split_image_without_label, {("split", IN_SET, "in_labels")}, "image_id=00000"),
    (small_image, {("severity_images", "expect_column_values_to_be_between", "rows")}, "image_id=00040"),
    (sex_spelled_out, {("severity_images", IN_SET, "patient_sex")}, "image_id=00010"),
    (age_above_the_cap, {("severity_images", "expect_column_values_to_be_between", "patient_age_years")},
     "image_id=00051"),
    (negative_age, {("severity_images", "expect_column_values_to_be_between", "patient_age_years")},
     "image_id=00060"),
    (missing_view_column, {("severity_images", "expect_table_columns_to_match_set", None),
                           ("severity_images", "expect_column_values_to_not_be_null", "view"),
                           ("severity_images", IN_SET, "view")}, "missing_column=view"),
]


@pytest.mark.parametrize(("tamper", "expected", "offender"), TAMPERS, ids=[t[0].__name__ for t in TAMPERS])
def test_tampered_table_fails_its_expectation(tamper: Callable[[dict], None],
                                              expected: set, offender: str) -> None:
    tables = make_tables()
    tamper(tables)
    results = run_all(tables, PARAMS)
    assert failures(results) == expected
    message = failure_message(results)
    for suite, expectation, column in expected:
        assert f"suite '{suite}', expectation '{expectation}'" in message
        if column:
            assert f"on '{column}'" in message
    assert offender in message
    for suite in {s for s, _, _ in expected}:
        assert results[suite]["success"] is False


def test_level2_share_far_from_the_cohorts_fails() -> None:
    tables = make_tables()
    split = tables["split"]
    # One Level 2 test image relabelled Level 1: test share 2/6 against the cohort's 11/24.
    flip = split.index[(split.split == "test") & (split.airspace_level == 2)][0]
    split.loc[flip, "airspace_level"] = 1
    assert run_all(tables, PARAMS)["split"]["success"]  # 0.125 apart: within the default 0.15
    results = run_all(tables, {**PARAMS, "max_level2_share_deviation": 0.1})
    assert failures(results) == {("split", "expect_column_values_to_be_between", "deviation")}
    assert "split=test,level2_share=0.333333,cohort_level2_share=0.458333" in failure_message(results)


def materialise(folder: Path, tables: dict[str, pd.DataFrame]) -> Inputs:
    """The files the tables point at: processed images (empty files do) and the COVIDx lists."""
    images, raw = folder / "images", folder / "raw"
    for name in ("severity_images", "pretrain_images"):
        for image_path in tables[name].image_path:
            (images / image_path).parent.mkdir(parents=True, exist_ok=True)
            (images / image_path).write_bytes(b"png")
    pretrain = tables["pretrain_images"]
    for list_name, relative in schema.COVIDX_LISTS.items():
        rows = pretrain[pretrain.list == list_name]
        (raw / relative).parent.mkdir(parents=True, exist_ok=True)
        (raw / relative).write_text("".join(f"{r.patient_id} {r.filename} {r.label} {r.covidx_source}\n"
                                            for r in rows.itertuples()))
    return Inputs(images=images, raw=raw)


def test_files_on_disk_pass(tmp_path: Path) -> None:
    tables = make_tables()
    results = run_all(tables, PARAMS, materialise(tmp_path, tables))
    assert not failures(results)
    checked = {(name, e["column"]) for name, suite in results.items() for e in suite["expectations"]}
    assert {("severity_images", "image_file_present"), ("pretrain_images", "image_file_present"),
            ("pretrain_images", "status")} <= checked


def test_missing_processed_file_fails(tmp_path: Path) -> None:
    tables = make_tables()
    inputs = materialise(tmp_path, tables)
    (inputs.images / tables["severity_images"].image_path[5]).unlink()
    (inputs.images / "c008.png").unlink()
    results = run_all(tables, PARAMS, inputs)
    assert failures(results) == {("severity_images", IN_SET, "image_file_present"),
                                 ("pretrain_images", IN_SET, "image_file_present")}
    message = failure_message(results)
    assert "image_id=00021" in message and "image_id=c008" in message


def test_every_listed_file_is_ingested_or_reported(tmp_path: Path) -> None:
    tables = make_tables()
    inputs = materialise(tmp_path, tables)
    pretrain = tables["pretrain_images"]
    # c004 vanishes silently; c006 was rejected (rejects.csv) and c007 not acquired (missing.txt).
    tables["pretrain_images"] = pretrain[~pretrain.image_id.isin(["c004", "c006", "c007"])]
    tables["rejects"] = pd.DataFrame([{"raw_path": "covidx/images/c006.png", "cohort": "pretrain",
                                       "kind": "unreadable", "reason": "truncated"}])
    (inputs.raw / schema.COVIDX_MISSING).write_text("train c007.png\n")
    results = run_all(tables, PARAMS, inputs)
    assert failures(results) == {("pretrain_images", IN_SET, "status")}
    (status,) = [e for e in results["pretrain_images"]["expectations"] if e["column"] == "status"]
    assert status["unexpected_examples"] == ["list=train,filename=c004.png"]
    assert status["unexpected_values"] == ["absent"]


def reference_split_table(shared_data: Path) -> pd.DataFrame:
    """The published CXR-S split as a split table (train list -> train, test list -> test)."""
    from stages.sources.covidnet_files import read_severity_list

    frames = [read_severity_list(shared_data / "ricord-covidnet" / f"{name}_COVIDxSev.txt").assign(split=name)
              for name in ("train", "test")]
    table = pd.concat(frames, ignore_index=True)
    table["image_path"] = "severity/" + table.image_id + ".png"
    return table[schema.SPLIT_COLUMNS]


def test_paper_cohort_suite_passes_on_the_published_split(shared_data: Path) -> None:
    from stages.reference import paper

    tables = make_tables()
    tables["split"] = reference_split_table(shared_data)
    results = run_all(tables, PARAMS, Inputs(paper_cohort=paper()["cohort"]))
    assert results[PAPER_COHORT_SUITE]["success"], results[PAPER_COHORT_SUITE]
    # images, patients, images and patients per level, test images, test images per level
    assert results[PAPER_COHORT_SUITE]["n_rows"] == 9


def test_paper_cohort_suite_names_each_figure_that_differs(shared_data: Path) -> None:
    from stages.reference import paper

    tables = make_tables()
    split = reference_split_table(shared_data)
    level1_test = split.index[(split.split == "test") & (split.airspace_level == 1)]
    tables["split"] = split.drop(index=level1_test[:1])
    results = run_all(tables, PARAMS, Inputs(paper_cohort=paper()["cohort"]))
    (pair,) = [e for e in results[PAPER_COHORT_SUITE]["expectations"] if not e["success"]]
    assert pair["unexpected_examples"] == ["figure=images,observed=908,expected=909",
                                           "figure=level1.images,observed=226,expected=227",
                                           "figure=test_images,observed=149,expected=150",
                                           "figure=test_level1_images,observed=51,expected=52"]
    assert f"suite '{PAPER_COHORT_SUITE}'" in failure_message({PAPER_COHORT_SUITE: results[PAPER_COHORT_SUITE]})


def test_examples_are_sorted_ids_and_capped() -> None:
    tables = make_tables()
    # Every patient's first image in train, second in val: all 12 patients straddle two splits,
    # and test is left empty.
    tables["split"]["split"] = "train"
    tables["split"].loc[tables["split"].image_id.isin([image_id(p, 1) for p in range(12)]), "split"] = "val"
    results = run_all(tables, PARAMS)
    (patients,) = [e for e in results["split"]["expectations"] if e["column"] == "n_splits"]
    assert patients["unexpected_count"] == 12
    assert patients["unexpected_examples"] == [f"patient_id=P{p:04d}" for p in range(10)]
    (counts,) = [e for e in results["split"]["expectations"] if e["column"] == "n_images"]
    assert counts["unexpected_examples"] == ["split=test,airspace_level=1", "split=test,airspace_level=2"]


def test_blank_sop_uids_are_not_duplicates() -> None:
    tables = make_tables()
    tables["severity_images"].loc[[0, 1, 2], "sop_uid"] = ""
    assert run_all(tables, PARAMS)["severity_images"]["success"]


def test_missing_image_id_is_named_by_row() -> None:
    tables = make_tables()
    tables["severity_images"].loc[3, "image_id"] = ""
    results = run_all(tables, PARAMS)
    (null_check,) = [e for e in results["severity_images"]["expectations"]
                     if e["expectation"] == "expect_column_values_to_not_be_null" and e["column"] == "image_id"]
    assert not null_check["success"] and null_check["unexpected_examples"] == ["row=3"]


def test_min_images_per_level_per_split_is_a_parameter() -> None:
    results = run_all(make_tables(), {**PARAMS, "min_images_per_level_per_split": 4})
    # val and test hold 3 images of each level: all four combinations fall short.
    assert failures(results) == {("split", "expect_column_values_to_be_between", "n_images")}
    (counts,) = [e for e in results["split"]["expectations"] if e["column"] == "n_images"]
    assert counts["unexpected_count"] == 4


def test_validation_failed_lists_every_failure() -> None:
    tables = make_tables()
    move_patient_to_second_split(tables)
    pretrain_label_covid(tables)
    message = failure_message(run_all(tables, PARAMS))
    assert message.startswith("validation failed: 2 checks failed")
    assert "suite 'split'" in message and "suite 'pretrain_images'" in message


def test_as_int_column_keeps_bad_text_and_blanks() -> None:
    assert as_int_column(pd.Series(["1", "2"])).tolist() == [1, 2]
    assert as_int_column(pd.Series(["1", ""])).tolist() == [1, None]
    assert as_int_column(pd.Series(["1", "two"])).tolist() == ["1", "two"]


# --- the stage --------------------------------------------------------------------------------
def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture()
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("preset: embedded\npresets:\n  embedded: {}\ndata: {source: synthetic}\n"
                    "validate:\n  min_images_per_level_per_split: 2\n")
    return path


def run_stage(folder: Path, tables: dict[str, pd.DataFrame], out: str, params: Path) -> Path:
    """Write the tables and their files under ``folder`` and run the stage; outputs go to ``out``."""
    inputs = materialise(folder, tables)
    table_dir = write_tables(folder / "tables", tables)
    result = folder / out
    main(["--tables", str(table_dir), "--images", str(inputs.images), "--raw", str(inputs.raw),
          "--out", str(result / "validation"), "--leakage", str(result / "leakage.json"),
          "--report", str(result / "validation.md"), "--params", str(params)])
    return result


def test_stage_output_is_byte_identical_across_runs(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    tables["severity_images"].loc[[0, 1], "sop_uid"] = ""  # blanks survive the CSV round trip
    first = run_stage(tmp_path, tables, "a", params_file)
    second = run_stage(tmp_path, tables, "b", params_file)
    for name in [f"validation/{n}.json" for n in SUITE_NAMES] + ["leakage.json", "validation.md"]:
        content = (first / name).read_bytes()
        assert content == (second / name).read_bytes(), name
    for name in SUITE_NAMES:
        assert b'"success": true' in (first / "validation" / f"{name}.json").read_bytes()
    assert sorted(p.name for p in (first / "validation").iterdir()) == sorted(f"{n}.json" for n in SUITE_NAMES)
    report = (first / "validation.md").read_text()
    assert report.startswith("# Data validation - synthetic phantoms") and "All suites pass." in report
    audited = pd.read_csv(tmp_path / "tables" / schema.PRETRAIN_AUDITED_TABLE, dtype=str)
    assert list(audited.image_id) == list(tables["pretrain_images"].image_id)


def test_stage_exits_non_zero_on_tampered_table(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    duplicate_sop_uid(tables)
    stale = tmp_path / "tables" / schema.PRETRAIN_AUDITED_TABLE
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run\n")
    with pytest.raises(SystemExit) as excinfo:
        run_stage(tmp_path, tables, "out", params_file)
    code = excinfo.value.code
    assert code not in (0, None)
    # Leading zeros kept: ids are read as text.
    assert "suite 'severity_images'" in str(code) and "image_id=00001" in str(code)
    # Every result is written before the stage fails, so the failure can be inspected ...
    assert (tmp_path / "out" / "validation" / "split.json").exists()
    assert b'"success": false' in (tmp_path / "out" / "validation" / "severity_images.json").read_bytes()
    assert "**FAIL**" in (tmp_path / "out" / "validation.md").read_text()
    # ... but pretraining gets no table from a failed gate.
    assert not stale.exists()


def test_paper_cohort_is_checked_only_for_ricord_with_the_reference_split() -> None:
    assert wants_paper_cohort({"data": {"source": "ricord"}, "split": {"mode": "reference"}})
    assert not wants_paper_cohort({"data": {"source": "ricord"}, "split": {"mode": "patient_disjoint"}})
    assert not wants_paper_cohort({"data": {"source": "synthetic"}, "split": {"mode": "reference"}})


def test_stage_leakage_modes(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    pretrain, images = tables["pretrain_images"], tables["severity_images"]
    # c001 (train list) is a copy of test image 00090 (patient 9 is in test): same perceptual hash.
    pretrain.loc[pretrain.image_id == "c001", "phash"] = images.loc[images.image_id == image_id(9, 0), "phash"].item()
    failing = tmp_path / "fail.yaml"
    failing.write_text(params_file.read_text() + "  leakage: fail\n")
    with pytest.raises(SystemExit) as excinfo:
        run_stage(tmp_path / "a", tables, "out", failing)
    assert "leakage audit: 1 severity test/val images are in the pretraining train list" in str(excinfo.value.code)
    assert "00090 (test) ~ c001 [phash]" in str(excinfo.value.code)
    assert not (tmp_path / "a" / "tables" / schema.PRETRAIN_AUDITED_TABLE).exists()

    result = run_stage(tmp_path / "b", tables, "out", params_file)  # default: exclude
    audited = pd.read_csv(tmp_path / "b" / "tables" / schema.PRETRAIN_AUDITED_TABLE, dtype=str)
    assert "c001" not in set(audited.image_id) and len(audited) == len(pretrain) - 1
    assert (result / "leakage.json").read_text().count('"excluded_pretrain_images": 1') == 1


def test_stage_fails_on_a_missing_hash_naming_the_table(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    tables["severity_images"].loc[tables["severity_images"].image_id == image_id(3, 1), "phash_cropped"] = ""
    with pytest.raises(SystemExit) as excinfo:
        run_stage(tmp_path, tables, "out", params_file)
    message = str(excinfo.value.code)
    assert message.startswith("validate: leakage audit: severity_images.csv: phash_cropped missing for 1 image")
    assert image_id(3, 1) in message


def test_stage_scores_the_planted_copies(tmp_path: Path, params_file: Path) -> None:
    """With the synthetic source's truth beside the raw data, leakage.json says which plants were found."""
    tables = make_tables()
    pretrain, images = tables["pretrain_images"], tables["severity_images"]
    pretrain.loc[pretrain.image_id == "c001", "phash"] = images.loc[images.image_id == image_id(9, 0), "phash_mirrored"].item()
    inputs = materialise(tmp_path, tables)
    truth = inputs.raw / schema.PLANTED_LEAKS
    truth.parent.mkdir(parents=True, exist_ok=True)
    source_of = dict(zip(images.image_id, images.raw_path))
    truth.write_text("filename,patient_id,kind,source_raw_path,source_patient_id,detail\n"
                     f"c001.png,cp001,flipped,{source_of[image_id(9, 0)]},P0009,mirrored\n"
                     f"c002.png,cp002,cropped,{source_of[image_id(8, 0)]},P0008,box\n")
    result = run_stage(tmp_path, tables, "out", params_file)
    planted = json.loads((result / "leakage.json").read_text())["planted"]
    assert planted["planted"] == 2 and planted["found"] == 1
    assert planted["by_kind"] == {"cropped": {"planted": 1, "found": 0}, "flipped": {"planted": 1, "found": 1}}
    assert "Planted copies (synthetic source): 1 of 2 found." in (result / "validation.md").read_text()
