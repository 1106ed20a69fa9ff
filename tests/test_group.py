import pandas as pd
import pytest

from stages import schema
from stages.group import cohort_summary, group_labels, resolve_study


@pytest.mark.parametrize("grades, tie_break, expected", [
    (["mild", "mild", "moderate"], "first", (1, "mild")),
    (["moderate", "severe", "mild"], "first", (2, "moderate")),
    (["severe", "severe", "moderate"], "first", (2, "severe")),
    (["moderate", "mild"], "first", (2, "moderate")),
    (["mild", "moderate"], "first", (1, "mild")),
    (["mild", "moderate"], "higher", (2, "moderate")),
    (["moderate", "mild"], "lower", (1, "mild")),
    (["invalid", "invalid", "mild"], "first", ("invalid", "invalid")),
    (["invalid", "mild"], "first", ("invalid", "invalid")),
    (["invalid", "mild"], "higher", (1, "mild")),
])
def test_resolve_study(grades, tie_break, expected):
    assert resolve_study(grades, tie_break) == expected


def test_unknown_tie_break_rejected():
    with pytest.raises(ValueError, match="tie_break"):
        resolve_study(["mild"], "random")


def _readers(rows):
    return pd.DataFrame([
        {"study_uid": s, "reader_id": r, "label_group": "g", "label_name": n, "annotation_index": i}
        for i, (s, r, n) in enumerate(rows)])


def test_group_labels_levels_and_exclusions():
    images = pd.DataFrame({"image_id": ["a1", "a2", "b1", "c1", "d1"],
                           "patient_id": ["P1", "P1", "P2", "P3", "P4"],
                           "study_uid": ["S1", "S1", "S2", "S3", "S4"]})
    readers = _readers([
        ("S1", "U1", schema.MILD), ("S1", "U2", schema.MILD), ("S1", "U3", schema.SEVERE),
        ("S1", "U1", "Typical Appearance"),
        ("S2", "U1", schema.SEVERE), ("S2", "U2", schema.MODERATE),
        ("S3", "U1", schema.INVALID), ("S3", "U2", schema.INVALID),
        ("S4", "U1", "Typical Appearance"),  # no airspace grading
    ])
    labels, excluded = group_labels(images, readers, "first")
    assert list(labels.columns) == schema.LABEL_COLUMNS
    assert labels.set_index("image_id").airspace_level.to_dict() == {"a1": 1, "a2": 1, "b1": 2}
    assert labels.set_index("image_id").study_grade.to_dict()["b1"] == "severe"
    assert labels.set_index("image_id").n_readers.to_dict()["a1"] == 3
    assert excluded.set_index("study_uid").reason.to_dict() == {
        "S3": "invalid study (reader majority)", "S4": "no airspace grading"}
    summary = cohort_summary(labels, excluded)
    assert summary["level1"] == {"images": 2, "patients": 1}
    assert summary["level2"] == {"images": 1, "patients": 1}
    assert summary["readers_unanimous_fraction"] == 0.5
