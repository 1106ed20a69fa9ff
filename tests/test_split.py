import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import schema
from stages.split import (_cut_strata, assign_splits, dominant_level, level_disagreements, main, read_reference_lists,
                          reference_table, run, split_counts, split_table)
from tests.conftest import main_defaults


def cohort(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        level = 1 if p % 3 == 0 else 2
        for i in range(int(rng.integers(1, 5))):
            rows.append({"image_id": f"P{p:03d}-{i}", "patient_id": f"P{p:03d}", "study_uid": f"S{p}",
                         "n_readers": 3, "reader_grades": "mild", "study_grade": "mild",
                         "airspace_level": level})
    labels = pd.DataFrame(rows)
    images = labels[["image_id"]].assign(image_path=lambda d: "severity/" + d.image_id + ".png")
    return labels, images


PARAMS = {"seed": 7, "val_fraction": 0.15, "test_fraction": 0.2}


def test_patient_disjoint_and_complete():
    labels, images = cohort()
    table = split_table(labels, images, PARAMS)
    assert len(table) == len(labels) and table.image_id.is_unique
    assert table.groupby("patient_id").split.nunique().max() == 1
    assert set(table.split) == {"train", "val", "test"}


def test_stratified_by_level():
    labels, images = cohort(120)
    table = split_table(labels, images, PARAMS)
    patients = table.drop_duplicates("patient_id")
    for split in ("train", "val", "test"):
        share = (patients[patients.split == split].airspace_level == 1).mean()
        assert share == pytest.approx(1 / 3, abs=0.08)
    test_share = (patients.split == "test").mean()
    assert test_share == pytest.approx(0.2, abs=0.03)


def test_seeded_and_deterministic():
    labels, images = cohort()
    a = split_table(labels, images, PARAMS)
    b = split_table(labels.sample(frac=1, random_state=3), images, PARAMS)
    pd.testing.assert_frame_equal(a, b)
    c = split_table(labels, images, {**PARAMS, "seed": 8})
    assert not a.split.equals(c.split)


def test_bad_fractions():
    labels, _ = cohort()
    with pytest.raises(ValueError):
        assign_splits(labels, 0, 0.5, 0.5)


# --- oracles (issue 20): exact counts, the tied patient, the error paths ----------------------
def _one_image_per_patient(levels: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"{p}-0" for p in levels], "patient_id": list(levels),
                         "airspace_level": list(levels.values())})


def test_a_patient_with_one_image_of_each_level_is_level_2():
    """dominant_level: the level of most images; a tie (one Level 1, one Level 2) goes to Level 2."""
    labels = pd.DataFrame({
        "patient_id": ["TIE", "TIE", "L1", "L1", "L1", "L2", "L2", "L2", "ONE1", "ONE2"],
        "airspace_level": [1, 2, 1, 1, 2, 2, 2, 1, 1, 2]})
    assert dominant_level(labels).to_dict() == {"L1": 1, "L2": 2, "ONE1": 1, "ONE2": 2, "TIE": 2}


def test_tied_patients_are_stratified_with_level_2():
    """10 Level 2 patients and 10 tied ones (one image of each level): one stratum of 20, so
    test_fraction 0.25 sends round(5.0) = 5 patients to test. Were the tied patients Level 1, the
    two strata of 10 would send round(2.5) + round(2.5) = 2 + 2 = 4."""
    tied = pd.DataFrame({"image_id": [f"T{i:02d}-{k}" for i in range(10) for k in (0, 1)],
                         "patient_id": [f"T{i:02d}" for i in range(10) for _ in (0, 1)],
                         "airspace_level": [1, 2] * 10})
    labels = pd.concat([_one_image_per_patient({f"P{i:02d}": 2 for i in range(10)}), tied], ignore_index=True)
    splits = assign_splits(labels, seed=0, val_fraction=0.0, test_fraction=0.25)
    assert splits.value_counts().to_dict() == {"train": 15, "test": 5}


@pytest.mark.parametrize("n1, n2, val, test, expected", [
    # By hand, per stratum: test = round(test * n), val = round(val * n), train the rest.
    (20, 40, 0.15, 0.2, {1: {"test": 4, "val": 3, "train": 13}, 2: {"test": 8, "val": 6, "train": 26}}),
    (10, 30, 0.1, 0.3, {1: {"test": 3, "val": 1, "train": 6}, 2: {"test": 9, "val": 3, "train": 18}}),
    (5, 7, 0.2, 0.2, {1: {"test": 1, "val": 1, "train": 3}, 2: {"test": 1, "val": 1, "train": 5}}),
    # No validation share: nothing goes to val.
    (4, 8, 0.0, 0.25, {1: {"test": 1, "val": 0, "train": 3}, 2: {"test": 2, "val": 0, "train": 6}}),
])
def test_each_stratum_is_cut_exactly(n1, n2, val, test, expected):
    levels = {**{f"A{i:03d}": 1 for i in range(n1)}, **{f"B{i:03d}": 2 for i in range(n2)}}
    labels = _one_image_per_patient(levels)
    splits = assign_splits(labels, seed=3, val_fraction=val, test_fraction=test)
    got = {level: {name: int(((splits == name) & splits.index.isin([p for p, v in levels.items() if v == level])).sum())
                   for name in ("test", "val", "train")} for level in (1, 2)}
    assert got == expected
    assert sorted(splits.index) == sorted(levels)


def test_cut_strata_puts_the_first_shuffled_patients_in_the_first_cut():
    """The shuffle is numpy's seeded permutation of the sorted patient ids, one stratum after the
    other (Level 1 first); the cuts take the shuffled patients in order."""
    levels = {f"A{i}": 1 for i in range(5)} | {f"B{i}": 2 for i in range(5)}
    labels = _one_image_per_patient(levels)
    rng = np.random.default_rng(11)
    expected = {}
    for prefix in ("A", "B"):
        shuffled = np.array(sorted(p for p in levels if p.startswith(prefix)))[rng.permutation(5)]
        expected.update({p: "test" if i < 2 else "val" if i < 3 else "train" for i, p in enumerate(shuffled)})
    assert _cut_strata(labels, 11, [("test", 0.4), ("val", 0.2)], "train").to_dict() == expected


@pytest.mark.parametrize("val, test", [(-0.1, 0.2), (1.0, 0.2), (0.2, 0.0), (0.2, 1.0), (0.5, 0.5), (0.7, 0.4)])
def test_fractions_that_leave_no_training_share_are_refused(val, test):
    labels, _ = cohort()
    with pytest.raises(ValueError, match=rf"split fractions must leave a training share: val={val}, test={test}"):
        assign_splits(labels, 0, val, test)


def test_smallest_accepted_fractions():
    labels, _ = cohort()
    assert set(assign_splits(labels, 0, 0.0, 0.01)) <= {"train", "test"}
    # val + test just under 1 is accepted (the rounding per stratum may then leave train small).
    assert len(assign_splits(labels, 0, 0.49, 0.5)) == labels.patient_id.nunique()


def test_split_table_names_labelled_images_missing_from_the_image_table():
    labels, images = cohort()
    with pytest.raises(SystemExit, match=r"labelled images missing from the image table: \['P000-0'\]"):
        split_table(labels, images[images.image_id != "P000-0"], PARAMS)


def test_split_table_columns_and_paths():
    labels, images = cohort(12)
    table = split_table(labels, images, PARAMS)
    assert list(table.columns) == schema.SPLIT_COLUMNS
    assert table.image_id.tolist() == sorted(labels.image_id)
    assert (table.image_path == "severity/" + table.image_id + ".png").all()


def test_split_counts_by_hand():
    table = pd.DataFrame({
        "image_id": ["a", "b", "c", "d", "e", "f"],
        "patient_id": ["P1", "P1", "P2", "P3", "P4", "P4"],
        "split": ["train", "train", "train", "val", "test", "train"],  # P4 in two splits
        "airspace_level": [1, 2, 2, 1, 2, 2]})
    counts = split_counts(table)
    assert counts == {
        "train": {"images": 4, "patients": 3, "level1": {"images": 1, "patients": 1},
                  "level2": {"images": 3, "patients": 3}},
        "val": {"images": 1, "patients": 1, "level1": {"images": 1, "patients": 1},
                "level2": {"images": 0, "patients": 0}},
        "test": {"images": 1, "patients": 1, "level1": {"images": 0, "patients": 0},
                 "level2": {"images": 1, "patients": 1}},
        "patients_in_two_splits": 1}


def test_level_disagreements_by_hand():
    table = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "airspace_level": [1, 2, 2, 1]})
    labels = pd.DataFrame({"image_id": ["a", "b", "c"], "airspace_level": [2, 2, 2]})  # d ungraded by us
    # a differs (1 listed, 2 ours); d is listed but not graded; no reader grades, so the cause is unknown.
    assert level_disagreements(table, labels) == {
        "images_graded_by_us": 3, "listed_images_not_graded_by_us": 1, "level_differs_from_our_grouping": 1,
        "level_differs_by_cause": {"tie": 0, "majority": 0, "unknown": 1}}


def _reference_lists(rows):
    frame = pd.DataFrame(rows, columns=["patient_id", "image_id", "airspace_level", "list_source", "list"])
    return {name: frame[frame.list == name].drop(columns="list").reset_index(drop=True)
            for name in ("train", "test")}


def test_reference_table_error_paths():
    lists = _reference_lists([("P1", "a", 1, "ricord", "train"), ("P2", "a", 2, "ricord", "test")])
    with pytest.raises(ValueError, match=r"name 1 image\(s\) in both train and test: \['a'\]"):
        reference_table(lists, 0, 0.2)
    lists = _reference_lists([("P1", "a", 1, "ricord", "train"), ("P1", "b", 2, "ricord", "test")])
    with pytest.raises(ValueError, match=r"share 1 patient\(s\) between train and test: \['P1'\]"):
        reference_table(lists, 0, 0.2)
    lists = _reference_lists([("P1", "a", 1, "ricord", "train"), ("P2", "b", 2, "ricord", "test")])
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=rf"split.val_fraction must be in \[0, 1\), got {bad}"):
            reference_table(lists, 0, bad)
    table, report = reference_table(lists, 0, 0.0)
    assert report == {"listed_images": 2}
    assert table.to_dict("list") == {"image_id": ["a", "b"], "patient_id": ["P1", "P2"], "split": ["train", "test"],
                                     "airspace_level": [1, 2], "image_path": ["", ""]}


def _stage_tables(tmp_path: Path, labels: pd.DataFrame, images: pd.DataFrame) -> Path:
    tables = tmp_path / "tables"
    tables.mkdir()
    labels.to_csv(tables / "labels.csv", index=False)
    images.assign(patient_id=images.image_id.str[:4]).to_csv(tables / "severity_images.csv", index=False)
    return tables


def test_run_refuses_an_unknown_mode(tmp_path):
    labels, images = cohort(6)
    tables = _stage_tables(tmp_path, labels, images)
    with pytest.raises(SystemExit, match=r"split.mode must be one of \('patient_disjoint', 'reference'\), got 'random'"):
        run(tmp_path / "raw", tables, {**PARAMS, "mode": "random"})


def test_main_writes_the_table_and_the_counts(tmp_path, capsys):
    labels, images = cohort(30)
    tables = _stage_tables(tmp_path, labels, images)
    params = tmp_path / "params.yaml"
    params.write_text("preset: embedded\npresets: {embedded: {}}\ndata: {source: synthetic}\n"
                      "split: {mode: patient_disjoint, seed: 7, val_fraction: 0.15, test_fraction: 0.2}\n")
    main(["--raw", str(tmp_path / "raw"), "--tables", str(tables), "--metrics", str(tmp_path / "split.json"),
          "--params", str(params)])
    written = pd.read_csv(tables / "split.csv", dtype={"airspace_level": int})
    pd.testing.assert_frame_equal(written, split_table(labels, images, PARAMS), check_dtype=False)
    summary = json.loads((tmp_path / "split.json").read_text())
    assert summary["data_source"] == "synthetic" and summary["mode"] == "patient_disjoint"
    assert summary["train"]["images"] + summary["val"]["images"] + summary["test"]["images"] == len(labels)
    assert summary["patients_in_two_splits"] == 0
    assert "split (patient_disjoint): images per split and level" in capsys.readouterr().out


def test_error_messages_name_the_first_five_and_the_first_twenty():
    labels, images = cohort(8)
    with pytest.raises(SystemExit, match=r"image table: \['P000-0', 'P001-0', 'P002-0', 'P003-0', 'P004-0'\]$"):
        split_table(labels, images[~images.image_id.str.endswith("-0")], PARAMS)
    shared = [(f"P{i}", f"tr{i}", 1, "ricord", "train") for i in range(6)] + \
        [(f"P{i}", f"te{i}", 2, "ricord", "test") for i in range(6)]
    with pytest.raises(ValueError, match=r"share 6 patient\(s\) between train and test: \['P0', 'P1', 'P2', 'P3', 'P4'\]$"):
        reference_table(_reference_lists(shared), 0, 0.2)
    both = [(f"A{i}", f"img{i}", 1, "ricord", "train") for i in range(6)] + \
        [(f"B{i}", f"img{i}", 2, "ricord", "test") for i in range(6)]
    with pytest.raises(ValueError, match=r"name 6 image\(s\) in both train and test: \['img0', 'img1', 'img2', 'img3', 'img4'\]$"):
        reference_table(_reference_lists(both), 0, 0.2)


def test_reference_table_joins_our_images_by_hand():
    """22 listed train images of 22 patients (level 1 for even ones), one test image; we have
    only the first image: 21 listed images missing, the first 20 named (sorted); the patient ids
    and paths are ours; the validation cut is _cut_strata's on the listed train patients."""
    rows = [(f"L{i:02d}", f"img{i:02d}", 1 + i % 2, "ricord", "train") for i in range(22)]
    lists = _reference_lists(rows + [("T0", "timg", 2, "ricord", "test")])
    images = pd.DataFrame({"image_id": ["img00", "timg"], "patient_id": ["OURS-0", "OURS-T"],
                           "image_path": ["severity/img00.png", "severity/timg.png"]})
    table, report = reference_table(lists, 4, 0.5, images)
    assert report == {"listed_images": 23, "listed_images_missing": 21,
                      "listed_images_missing_ids": [f"img{i:02d}" for i in range(1, 21)]}
    expected_split = _cut_strata(lists["train"], 4, [("val", 0.5)], "train")["L00"]
    assert table.to_dict("list") == {"image_id": ["img00", "timg"], "patient_id": ["OURS-0", "OURS-T"],
                                     "split": [expected_split, "test"], "airspace_level": [1, 2],
                                     "image_path": ["severity/img00.png", "severity/timg.png"]}
    # Seeded: the validation patients are the seeded cut of each level's patients, every time.
    full, _ = reference_table(lists, 4, 0.5)
    cut = _cut_strata(lists["train"], 4, [("val", 0.5)], "train")
    assert full[full.split != "test"].set_index("patient_id").split.to_dict() == cut.to_dict()
    assert sorted(cut.value_counts().to_dict().items()) == [("train", 10), ("val", 12)]  # round(5.5) = 6 per level


def test_run_defaults_to_patient_disjoint_and_the_reference_seed_comes_from_params(tmp_path):
    labels, images = cohort(20)
    tables = _stage_tables(tmp_path, labels, images)
    table, summary = run(tmp_path / "raw", tables, {"seed": 7, "val_fraction": 0.15, "test_fraction": 0.2})
    assert summary["mode"] == "patient_disjoint"
    pd.testing.assert_frame_equal(table, split_table(labels, images, PARAMS))
    raw = tmp_path / "raw"
    (raw / schema.COVIDNET_DIR).mkdir(parents=True)
    train = [f"{p} {p}-0.png level{1 + int(p[1:]) % 2} ricord" for p in sorted(labels.patient_id.unique())]
    (raw / schema.SEVERITY_REFERENCE_LISTS["train"]).write_text("\n".join(train[1:]) + "\n")
    (raw / schema.SEVERITY_REFERENCE_LISTS["test"]).write_text(train[0] + "\n")
    params = {"mode": "reference", "seed": 3, "val_fraction": 0.5}
    first, summary = run(raw, tables, params)
    expected, _ = reference_table(read_reference_lists(raw), 3, 0.5, pd.read_csv(tables / "severity_images.csv"))
    pd.testing.assert_frame_equal(first, expected)
    assert summary["reference"]["level_differs_from_our_grouping"] == int(
        (expected.airspace_level.to_numpy() != labels.set_index("image_id").loc[expected.image_id].airspace_level
         .to_numpy()).sum())


def test_reference_mode_error_message_is_exact(tmp_path):
    labels, images = cohort(6)
    tables = _stage_tables(tmp_path, labels, images)
    raw = tmp_path / "raw"
    (raw / schema.COVIDNET_DIR).mkdir(parents=True)
    (raw / schema.SEVERITY_REFERENCE_LISTS["train"]).write_text("X1 MIDRC-RICORD-1C-X1-00001-0.png level1 ricord\n")
    (raw / schema.SEVERITY_REFERENCE_LISTS["test"]).write_text("X2 MIDRC-RICORD-1C-X2-00002-0.png level2 ricord\n")
    with pytest.raises(SystemExit, match="^split: none of the reference lists' images is in the image table$"):
        run(raw, tables, {"mode": "reference", "seed": 1, "val_fraction": 0.2})


def test_main_defaults_and_printed_counts(tmp_path, monkeypatch, capsys):
    import stages.split as split

    seen = main_defaults(split, monkeypatch)
    assert seen == {"description": split.__doc__, "raw": Path("data/raw"), "tables": Path("data/tables"),
                    "metrics": Path("metrics/split.json")}
    # Reference mode through main: raw comes from --raw; a split without Level 1 prints a 0.
    labels, images = cohort(6)
    labels["airspace_level"] = [2] * len(labels)
    tables = _stage_tables(tmp_path, labels, images)
    raw = tmp_path / "raw"
    (raw / schema.COVIDNET_DIR).mkdir(parents=True)
    (raw / schema.SEVERITY_REFERENCE_LISTS["train"]).write_text(
        "P000 P000-0.png level1 ricord\nP001 P001-0.png level1 ricord\n")
    (raw / schema.SEVERITY_REFERENCE_LISTS["test"]).write_text("P002 P002-0.png level2 ricord\n")
    params = tmp_path / "params.yaml"
    params.write_text("preset: embedded\npresets: {embedded: {}}\ndata: {source: synthetic}\n"
                      "split: {mode: reference, seed: 7, val_fraction: 0.0}\n")
    capsys.readouterr()
    main(["--raw", str(raw), "--tables", str(tables), "--metrics", str(tmp_path / "split.json"), "--params", str(params)])
    counts = pd.DataFrame({1: [0, 2], 2: [1, 0]}, index=pd.Index(["test", "train"], name="split"))
    counts.columns.name = "airspace_level"
    assert capsys.readouterr().out == "split (reference): images per split and level\n" + counts.to_string() + "\n"
    assert json.loads((tmp_path / "split.json").read_text())["reference"]["level_differs_from_our_grouping"] == 2
