"""Tests for the ``validate`` stage: good tables pass, each kind of bad table fails by name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from stages import schema
from stages.validate import as_int_column, main
from stages.validation.suites import SUITE_NAMES, ValidationFailed, raise_if_failed, run_all

PARAMS = {"min_images_per_level_per_split": 2, "min_image_size": 64}
# Patients 0-5 train, 6-8 val, 9-11 test: patient-disjoint by construction.
SPLIT_OF_PATIENT = ["train"] * 6 + ["val"] * 3 + ["test"] * 3

IN_SET = "expect_column_values_to_be_in_set"
UNIQUE = "expect_column_values_to_be_unique"


def image_id(patient: int, index: int) -> str:
    """Leading zeros on purpose: ids must survive CSV round trips as text (``00030``)."""
    return f"{patient:04d}{index}"


def make_tables(n_patients: int = 12, images_per_patient: int = 2) -> dict[str, pd.DataFrame]:
    """Consistent small tables: each patient has one Level 1 and one Level 2 image."""
    images, labels, split = [], [], []
    for p in range(n_patients):
        patient = f"P{p:04d}"
        for i in range(images_per_patient):
            iid = image_id(p, i)
            level = 1 if (p + i) % 2 == 0 else 2
            grade = "mild" if level == 1 else ("moderate" if p % 2 else "severe")
            images.append({
                "image_id": iid, "patient_id": patient, "study_uid": f"1.2.{p}",
                "series_uid": f"1.2.{p}.1", "sop_uid": f"1.2.{p}.1.{i}",
                "raw_path": f"ricord/images/{iid}.dcm", "image_path": f"{iid}.png", "modality": "DX",
                "view": "AP" if i == 0 else "PA", "rows": 512, "columns": 512,
                "photometric": "MONOCHROME2", "bits_stored": 12,
                "transfer_syntax": "1.2.840.10008.1.2.1", "source": "synthetic",
            })
            labels.append({
                "image_id": iid, "patient_id": patient, "study_uid": f"1.2.{p}", "n_readers": 3,
                "reader_grades": ";".join([grade] * 3), "study_grade": grade, "airspace_level": level,
            })
            split.append({"image_id": iid, "patient_id": patient, "split": SPLIT_OF_PATIENT[p],
                          "airspace_level": level, "image_path": f"{iid}.png"})
    pretrain = [{
        "image_id": f"c{k:03d}", "patient_id": f"cp{k:03d}", "filename": f"c{k:03d}.png",
        "label": "positive" if k % 2 else "negative", "covidx_source": "synthetic",
        "list": "test" if k % 5 == 0 else "train", "raw_path": f"covidx/images/c{k:03d}.png",
        "image_path": f"c{k:03d}.png", "rows": 256, "columns": 256, "source": "synthetic",
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
    (label_without_image, {("labels", IN_SET, "in_image_table")}, "image_id=00030"),
    (too_few_level_1_in_val, {("split", "expect_column_values_to_be_between", "n_images")},
     "split=val,airspace_level=1"),
    (pretrain_label_covid, {("pretrain_images", IN_SET, "label")}, "image_id=c003"),
    (labelled_image_missing_from_split, {("split", IN_SET, "in_split")}, "image_id=00000"),
    (split_image_without_label, {("split", IN_SET, "in_labels")}, "image_id=00000"),
    (small_image, {("severity_images", "expect_column_values_to_be_between", "rows")}, "image_id=00040"),
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
    assert message.startswith("validation failed: 2 expectations failed")
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
    path.write_text("preset: embedded\npresets:\n  embedded: {}\n"
                    "validate:\n  min_images_per_level_per_split: 2\n")
    return path


def run_stage(tables: Path, out: Path, params: Path) -> None:
    main(["--tables", str(tables), "--out", str(out), "--params", str(params)])


def test_stage_output_is_byte_identical_across_runs(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    tables["severity_images"].loc[[0, 1], "sop_uid"] = ""  # blanks survive the CSV round trip
    folder = write_tables(tmp_path / "tables", tables)
    run_stage(folder, tmp_path / "a", params_file)
    run_stage(folder, tmp_path / "b", params_file)
    for name in SUITE_NAMES:
        first = (tmp_path / "a" / f"{name}.json").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.json").read_bytes()
        assert first.endswith(b"}\n") and b'"success": true' in first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(f"{n}.json" for n in SUITE_NAMES)


def test_stage_exits_non_zero_on_tampered_table(tmp_path: Path, params_file: Path) -> None:
    tables = make_tables()
    duplicate_sop_uid(tables)
    folder = write_tables(tmp_path / "tables", tables)
    with pytest.raises(SystemExit) as excinfo:
        run_stage(folder, tmp_path / "out", params_file)
    code = excinfo.value.code
    assert code not in (0, None)
    # Leading zeros kept: ids are read as text.
    assert "suite 'severity_images'" in str(code) and "image_id=00001" in str(code)
    # Every result is written before the stage fails, so the failure can be inspected.
    assert (tmp_path / "out" / "split.json").exists()
    assert b'"success": false' in (tmp_path / "out" / "severity_images.json").read_bytes()
