import pandas as pd
import pytest

from stages import schema
from stages.group import cohort_summary, fleiss_kappa, group_labels, reader_agreement, resolve_study


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


def test_adjudicator_settles_a_tie_and_only_a_tie():
    grades, readers = ["mild", "moderate"], ["U1", "ADJ"]
    assert resolve_study(grades, "first", readers, {"ADJ"}) == (2, "moderate")
    assert resolve_study(grades, "first", readers, set()) == (1, "mild")
    # No tie: the majority stands even against the adjudicator.
    assert resolve_study(["mild", "mild", "severe"], "first", ["U1", "U2", "ADJ"], {"ADJ"}) == (1, "mild")
    # Adjudicator absent from the study: the stated tie_break applies.
    assert resolve_study(grades, "higher", ["U1", "U2"], {"ADJ"}) == (2, "moderate")


def test_group_labels_uses_adjudicators():
    images = pd.DataFrame({"image_id": ["a1"], "patient_id": ["P1"], "study_uid": ["S1"]})
    readers = _readers([("S1", "U1", schema.MILD), ("S1", "ADJ", schema.SEVERE)])
    assert group_labels(images, readers, "first")[0].airspace_level.tolist() == [1]
    assert group_labels(images, readers, "first", {"ADJ"})[0].airspace_level.tolist() == [2]


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) style worked example (10 subjects, 14 raters, 5 categories): kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa([[3, 0], [0, 2], [2, 0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 0]])


def test_reader_agreement_counts_each_reader_once():
    readers = _readers([
        ("S1", "U1", schema.MILD), ("S1", "U2", schema.MILD), ("S1", "U1", schema.SEVERE),
        ("S2", "U1", schema.SEVERE), ("S2", "U2", schema.MODERATE),
        ("S3", "U1", schema.MILD), ("S3", "U2", schema.SEVERE),
        ("S4", "U1", schema.MILD),  # one reader: not in the agreement statistics
    ])
    agreement = reader_agreement(readers)
    assert agreement["studies_with_two_or_more_readers"] == 3
    assert agreement["level_agreement_first_two_readers"] == pytest.approx(2 / 3, abs=1e-4)
    # levels: S1 (1,1), S2 (2,2), S3 (1,2): Cohen's kappa from sklearn on the same pairs
    assert agreement["cohen_kappa_level_first_two_readers"] == pytest.approx(0.4, abs=1e-4)
    assert agreement["fleiss_kappa_level"] < agreement["level_agreement_first_two_readers"]
