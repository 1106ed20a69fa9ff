import numpy as np
import pandas as pd
import pytest

from stages.split import assign_splits, split_table


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
