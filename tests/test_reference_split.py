"""COVID-Net's reference files (COVIDxSev lists, crop boxes) and the ``reference`` split mode."""

import hashlib
import json

import pandas as pd
import pytest

from stages import schema
from stages.sources import covidnet_files as covidnet
from stages.split import disagreement_cause, level_disagreements, reference_table, run, split_counts


def _ricord(shared_data):
    folder = shared_data / "ricord-covidnet"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (COVID-Net's RICORD lists are test data outside the repository)")
    return folder


def _real_lists(shared_data):
    folder = _ricord(shared_data)
    return {"train": covidnet.read_severity_list(folder / "train_COVIDxSev.txt"),
            "test": covidnet.read_severity_list(folder / "test_COVIDxSev.txt")}


def test_reference_split_is_the_papers_cohort(shared_data):
    table, report = reference_table(_real_lists(shared_data), seed=2022, val_fraction=0.15)
    assert report == {"listed_images": 909}
    assert len(table) == 909 and table.patient_id.nunique() == 258
    for level, (images, patients) in {1: (227, 129), 2: (682, 184)}.items():
        subset = table[table.airspace_level == level]
        assert (len(subset), subset.patient_id.nunique()) == (images, patients)
    counts = split_counts(table)
    assert counts["test"]["images"] == 150
    assert (counts["test"]["level1"]["images"], counts["test"]["level2"]["images"]) == (52, 98)
    assert counts["test"]["patients"] == 68
    assert counts["patients_in_two_splits"] == 0
    # The validation split is carved from the training list only, by patient.
    assert counts["val"]["images"] > 0 and counts["train"]["images"] + counts["val"]["images"] == 759
    assert set(table[table.split == "test"].image_id) == set(_real_lists(shared_data)["test"].image_id)


def test_reference_files_match_the_pinned_checksums(shared_data):
    folder = _ricord(shared_data)
    for name, (_, sha256) in covidnet.REFERENCE_FILES.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256, name


def test_real_crop_boxes_and_patient_map(shared_data):
    folder = _ricord(shared_data)
    boxes = covidnet.read_crop_boxes(folder / "ricord_data_set.txt")
    assert len(boxes) == 375 and boxes.image_id.is_unique
    assert (boxes.xmax > boxes.xmin).all() and (boxes.ymax > boxes.ymin).all()
    first = boxes.iloc[0]
    assert first.image_id == "MIDRC-RICORD-1C-419639-000025-04760-0"
    assert [first.xmin, first.ymin, first.xmax, first.ymax] == [0, 0, 2721, 2449]
    mapping = covidnet.read_patient_studies(folder / "ricord_patientid_to_studyid_mapping.json")
    assert len(mapping) == 361 and sum(len(v) for v in mapping.values()) == 998


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "test_COVIDxSev.txt"
    bad.write_text("P1 a.png level1 ricord\nP2 b.png level3 ricord\n")
    with pytest.raises(ValueError, match=r"test_COVIDxSev.txt:2: level 'level3'"):
        covidnet.read_severity_list(bad)
    bad.write_text("P1 a.png level1\n")
    with pytest.raises(ValueError, match=r":1: expected"):
        covidnet.read_severity_list(bad)
    boxes = tmp_path / "ricord_data_set.txt"
    boxes.write_text("a.png\nb.png 10 0 5 20\n")
    with pytest.raises(ValueError, match=r"ricord_data_set.txt:2: empty or negative"):
        covidnet.read_crop_boxes(boxes)


def _lists(rows):
    frame = pd.DataFrame(rows, columns=["patient_id", "image_id", "airspace_level", "list_source", "list"])
    return {name: part.drop(columns="list").reset_index(drop=True) for name, part in frame.groupby("list")}


def test_reference_lists_sharing_a_patient_are_refused():
    lists = _lists([("P1", "a", 1, "ricord", "train"), ("P1", "b", 2, "ricord", "test")])
    with pytest.raises(ValueError, match="share 1 patient"):
        reference_table(lists, 0, 0.2)


def test_reference_stage_joins_our_images_and_reports_the_rest(tmp_path):
    raw, tables = tmp_path / "raw", tmp_path / "tables"
    (raw / schema.COVIDNET_DIR).mkdir(parents=True)
    tables.mkdir()
    train = [f"P{p} MIDRC-RICORD-1C-P{p}-0000{p}-0.png level{1 + p % 2} ricord" for p in range(10)]
    (raw / schema.SEVERITY_REFERENCE_LISTS["train"]).write_text("\n".join(train) + "\n")
    (raw / schema.SEVERITY_REFERENCE_LISTS["test"]).write_text(
        "P10 MIDRC-RICORD-1C-P10-00010-0.png level2 ricord\nP11 MIDRC-RICORD-1C-P11-00011-0.png level1 ricord\n")
    ids = [f"MIDRC-RICORD-1C-P{p}-{p:05d}-0" for p in range(11)]  # P11's image was not acquired
    images = pd.DataFrame({"image_id": ids, "patient_id": [f"MIDRC-RICORD-1C-P{p}" for p in range(11)],
                           "image_path": [f"severity/{i}.png" for i in ids]})
    images.to_csv(tables / "severity_images.csv", index=False)
    # Our grouping disagrees with the list on P0's image.
    labels = images.assign(airspace_level=[2] + [1 + p % 2 for p in range(1, 10)] + [2])
    labels.to_csv(tables / "labels.csv", index=False)
    table, summary = run(raw, tables, {"mode": "reference", "seed": 1, "val_fraction": 0.2})
    assert summary["reference"]["listed_images_missing"] == 1
    assert summary["reference"]["listed_images_missing_ids"] == ["MIDRC-RICORD-1C-P11-00011-0"]
    assert summary["reference"]["level_differs_from_our_grouping"] == 1
    assert summary["reference"]["level_differs_by_cause"] == {"tie": 0, "majority": 0, "unknown": 1}
    assert summary["reference"]["listed_images_not_graded_by_us"] == 0
    assert table.set_index("image_id").split["MIDRC-RICORD-1C-P10-00010-0"] == "test"
    assert table.patient_id.str.startswith("MIDRC-RICORD-1C-").all()  # our ids, not the list's
    assert summary["test"]["images"] == 1 and summary["val"]["images"] == 2
    assert json.dumps(summary)  # JSON-ready


def test_reference_mode_without_lists_says_what_is_missing(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame({"image_id": ["a"], "patient_id": ["P"], "airspace_level": [1]}).to_csv(tables / "labels.csv", index=False)
    pd.DataFrame({"image_id": ["a"], "patient_id": ["P"], "image_path": ["x"]}).to_csv(
        tables / "severity_images.csv", index=False)
    with pytest.raises(SystemExit, match="train_COVIDxSev.txt.*data.source 'ricord'"):
        run(tmp_path / "raw", tables, {"mode": "reference", "seed": 1, "val_fraction": 0.2})


def test_disagreements_are_counted_by_cause():
    """A tie (one Mild, one Moderate vote) and a majority (two Severe, one Mild) against the list."""
    table = pd.DataFrame({"image_id": ["t", "m", "same", "ungraded"], "airspace_level": [2, 1, 1, 1]})
    labels = pd.DataFrame({"image_id": ["t", "m", "same"], "airspace_level": [1, 2, 1],
                           "reader_grades": ["mild;moderate", "severe;mild;severe", "mild"]})
    assert level_disagreements(table, labels) == {
        "images_graded_by_us": 3, "listed_images_not_graded_by_us": 1, "level_differs_from_our_grouping": 2,
        "level_differs_by_cause": {"tie": 1, "majority": 1, "unknown": 0}}
    # Moderate and Severe are one level: 'moderate;severe;mild' is a Level 2 majority, not a tie.
    assert disagreement_cause("moderate;severe;mild") == "majority"
    assert disagreement_cause("moderate;mild;invalid;severe") == "majority"
    assert disagreement_cause("mild;invalid") == "tie"
    # Without the readers' grades (a blank cell reads back as NaN or ""), the cause is unknown.
    assert disagreement_cause(float("nan")) == disagreement_cause("") == disagreement_cause(None) == "unknown"
