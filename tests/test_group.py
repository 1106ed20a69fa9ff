import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import ingest, schema
from stages.group import (age_bin, cohort_demographics, cohort_summary, fleiss_kappa, group_labels,
                          labelled_images, main, majority_sex, read_severity_images, reader_agreement,
                          resolve_study, study_grades)
from stages.sources import phantom
from tests.conftest import main_defaults
from tests.test_phantom import TINY_CONFIG


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


# --- demographics (the paper's Table 1) ------------------------------------------------------
def _images(rows):
    """(patient_id, view, patient_age_years, patient_sex) per image."""
    return pd.DataFrame(rows, columns=["patient_id", "view", "patient_age_years", "patient_sex"]).assign(
        image_id=lambda t: [f"i{k}" for k in range(len(t))])


@pytest.mark.parametrize("age, name", [(0, "<20"), (19, "<20"), (20, "20-29"), (29, "20-29"), (30, "30-39"),
                                       (59, "50-59"), (80, "80-89"), (89, "80-89"), (90, "90+")])
def test_age_bin_boundaries(age, name):
    assert age_bin(age) == name


@pytest.mark.parametrize("values, sex", [
    (["M", "M", "F"], "M"), (["F", "M"], "F"), (["O", "M"], "M"), (["", "", "F"], "F"),
    (["", None], ""), ([], ""), (["M", "F", "F", "M", "O"], "F")])
def test_majority_sex_ties_go_to_the_first_sorted(values, sex):
    assert majority_sex(pd.Series(values, dtype=object)) == sex


def test_cohort_demographics_known_answers():
    images = _images([
        ("P1", "AP", 19, "M"),
        ("P1", "AP", 21, "M"),  # a later study: the patient's age is the smallest, 19
        ("P2", "PA", 20, "F"),
        ("P3", "UNKNOWN", 89, "F"),
        ("P3", "AP", 89, ""),
        ("P4", "UNKNOWN", 90, "O"),
        ("P5", "AP", None, ""),  # no age, no sex
    ])
    demographics = cohort_demographics(images)
    ages = [19, 20, 89, 90]
    assert demographics == {
        "patients": 5,
        "patients_with_age": 4,
        "age_mean": round(float(np.mean(ages)), 2),
        "age_sd": round(float(np.std(ages, ddof=1)), 2),
        "age_bins": {"<20": 1, "20-29": 1, "30-39": 0, "40-49": 0, "50-59": 0, "60-69": 0, "70-79": 0,
                     "80-89": 1, "90+": 1},
        "sex": {"male": 1, "female": 2, "other": 1, "unknown": 1},
        "view": {"AP": 4, "PA": 1, "unknown": 2},
    }
    assert demographics["age_mean"] == 54.5 and demographics["age_sd"] == 40.42
    assert list(demographics["age_bins"]) == list(schema.AGE_BINS)


def test_cohort_demographics_without_ages_gives_nulls():
    demographics = cohort_demographics(_images([("P1", "AP", None, "M"), ("P2", "PA", None, "F")]))
    assert demographics["patients"] == 2 and demographics["patients_with_age"] == 0
    assert demographics["age_mean"] is None and demographics["age_sd"] is None
    assert set(demographics["age_bins"].values()) == {0}
    one = cohort_demographics(_images([("P1", "AP", 40, "M"), ("P1", "AP", 41, "M")]))
    assert (one["age_mean"], one["age_sd"]) == (40.0, None)  # one patient: no sample SD


def test_demographics_cover_only_the_labelled_images():
    images = _images([("P1", "AP", 30, "M"), ("P1", "PA", 70, "M"), ("P2", "AP", 50, "F")])
    labels = pd.DataFrame({"image_id": ["i1"]})  # P1's second image only
    demographics = cohort_demographics(labelled_images(images, labels))
    assert demographics["patients"] == 1 and demographics["age_mean"] == 70.0
    assert demographics["view"] == {"AP": 0, "PA": 1, "unknown": 0}
    assert demographics["sex"] == {"male": 1, "female": 0, "other": 0, "unknown": 0}


def test_read_severity_images_names_a_missing_column(tmp_path):
    path = tmp_path / "severity_images.csv"
    pd.DataFrame({"image_id": ["a"], "patient_id": ["P1"], "study_uid": ["S1"], "view": ["AP"],
                  "patient_sex": ["M"]}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match=r"severity_images\.csv has no column patient_age_years"):
        read_severity_images(path)


def test_read_severity_images_reads_blank_ages_as_missing_and_rejects_text(tmp_path):
    path = tmp_path / "severity_images.csv"
    path.write_text("image_id,patient_id,patient_age_years,patient_sex\na,007,45,M\nb,008,,\n")
    images = read_severity_images(path)
    assert images.patient_age_years.iloc[0] == 45 and np.isnan(images.patient_age_years.iloc[1])
    assert images.patient_sex.tolist() == ["M", ""] and images.patient_id.tolist() == ["007", "008"]
    path.write_text("image_id,patient_id,patient_age_years,patient_sex\na,007,045Y,M\n")
    with pytest.raises(SystemExit, match="045Y"):
        read_severity_images(path)


def test_stage_writes_demographics_deterministically(tmp_path):
    raw = tmp_path / "raw"
    phantom.generate(raw, TINY_CONFIG)
    params = tmp_path / "params.yaml"
    params.write_text("preset: embedded\npresets: {embedded: {}}\ndata: {source: synthetic}\n"
                      "ingest: {image_size: 32, crop_top_fraction: 0.08, max_reject_fraction: 0.5}\n"
                      "group: {tie_break: first}\n")
    ingest.main(["--raw", str(raw), "--images", str(tmp_path / "images"), "--tables", str(tmp_path / "tables"),
                 "--params", str(params), "--workers", "1"])
    outputs = []
    for name in ("a.json", "b.json"):
        main(["--raw", str(raw), "--tables", str(tmp_path / "tables"), "--metrics", str(tmp_path / name),
              "--params", str(params)])
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    demographics = json.loads(outputs[0])["demographics"]
    labels = pd.read_csv(tmp_path / "tables/labels.csv", dtype=str)
    assert demographics["patients"] == labels.patient_id.nunique() == demographics["patients_with_age"]
    assert sum(demographics["age_bins"].values()) == demographics["patients"]
    assert sum(demographics["sex"].values()) == demographics["patients"] and demographics["sex"]["unknown"] == 0
    assert sum(demographics["view"].values()) == len(labels)
    assert 18 <= demographics["age_mean"] <= 90
    assert "annotations_without_label" not in json.loads(outputs[0])  # the phantom has none: no key

    # An annotation with a labelId no group defines is counted and reported, not fatal.
    export_path = raw / schema.RICORD_ANNOTATIONS
    export = json.loads(export_path.read_text())
    export["datasets"][0]["annotations"][0]["labelId"] = "L_orphan"
    export_path.write_text(json.dumps(export))
    main(["--raw", str(raw), "--tables", str(tmp_path / "tables"), "--metrics", str(tmp_path / "c.json"),
          "--params", str(params)])
    assert json.loads((tmp_path / "c.json").read_text())["annotations_without_label"] == \
        {"count": 1, "label_ids": {"L_orphan": 1}}


def _readers_with_ids(rows):
    return pd.DataFrame([
        {"study_uid": s, "reader_id": r, "label_group": "g", "label_name": n, "annotation_index": i, "label_id": lid}
        for i, (s, r, n, lid) in enumerate(rows)])


def test_covidnet_tie_break_follows_the_label_ids_first_appearance():
    """COVID-Net's rows came grouped by label id in the order each id first appears in the export
    (pandas < 2.2 inner merge, checked with pandas 1.5.3 on json_to_dataframe's merge). Hand example:
    L_mod first appears in study S0, so in study S1's tie (Mild first, then Moderate) COVID-Net's
    Counter met level2 first; 'first' keeps the study's first vote."""
    readers = _readers_with_ids([
        ("S0", "U1", schema.MODERATE, "L_mod"), ("S0", "U2", schema.MODERATE, "L_mod"),
        ("S1", "U1", schema.MILD, "L_mild"), ("S1", "U2", schema.MODERATE, "L_mod"),
        ("S2", "U1", schema.MILD, "L_mild"), ("S2", "U2", schema.MILD, "L_mild"), ("S2", "U3", schema.SEVERE, "L_sev"),
    ])
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["P0", "P1", "P2"], "study_uid": ["S0", "S1", "S2"]})
    first, _ = group_labels(images, readers, "first")
    covidnet, _ = group_labels(images, readers, "covidnet")
    assert first.set_index("image_id").airspace_level.to_dict() == {"a": 2, "b": 1, "c": 1}
    assert covidnet.set_index("image_id").airspace_level.to_dict() == {"a": 2, "b": 2, "c": 1}
    assert covidnet.set_index("image_id").reader_grades["b"] == "mild;moderate"  # still export order
    # With Mild's id seen first in the export, both rules agree.
    swapped = readers.assign(annotation_index=readers.annotation_index.map({0: 10, 1: 11, 2: 0, 3: 3, 4: 4, 5: 5, 6: 6}))
    assert group_labels(images, swapped, "covidnet")[0].set_index("image_id").airspace_level["b"] == 1
    # The message starts with the setting to change, as the user sees it.
    with pytest.raises(ValueError, match=r"^group\.tie_break 'covidnet' needs the annotations' label ids \(column label_id\)$"):
        group_labels(images, readers.drop(columns="label_id"), "covidnet")



# --- oracles for the vote (issue 20): the majority is not the first vote --------------------
@pytest.mark.parametrize("grades, expected", [
    # Two Level 2 votes against one Level 1 vote that comes first: the majority (Level 2) wins;
    # its grade is the most common among the Level 2 voters, the earliest on a tie (moderate).
    (["mild", "moderate", "severe"], (2, "moderate")),
    (["mild", "severe", "severe"], (2, "severe")),
    # Two Level 1 votes after a Level 2 one.
    (["severe", "mild", "mild"], (1, "mild")),
    # Invalid twice after a grade: the study is invalid.
    (["moderate", "invalid", "invalid"], ("invalid", "invalid")),
    # Level 2 by three votes to two, the first two votes being Level 1.
    (["mild", "mild", "severe", "moderate", "severe"], (2, "severe")),
    # The grade is the most common among the winning level's voters, not their first.
    (["mild", "moderate", "severe", "severe"], (2, "severe")),
])
@pytest.mark.parametrize("tie_break", ["first", "higher", "lower"])
def test_the_majority_wins_even_when_it_is_not_the_first_vote(grades, expected, tie_break):
    """No tie here, so tie_break (and an adjudicator) must not matter."""
    assert resolve_study(grades, tie_break) == expected
    readers = [f"U{i}" for i in range(len(grades))]
    assert resolve_study(grades, tie_break, readers, {readers[0]}) == expected


@pytest.mark.parametrize("grades, tie_break, expected", [
    # Ties between levels: first = the tied level voted first; higher / lower by level.
    (["severe", "mild", "mild", "moderate"], "first", (2, "severe")),
    (["mild", "severe", "moderate", "mild"], "first", (1, "mild")),
    (["mild", "severe", "moderate", "mild"], "higher", (2, "severe")),
    (["severe", "mild", "mild", "moderate"], "lower", (1, "mild")),
    # A tie between "invalid" and a level keeps the level under higher and lower (a reader graded it).
    (["invalid", "moderate"], "lower", (2, "moderate")),
    (["invalid", "invalid"], "higher", ("invalid", "invalid")),
    # A tie among three: mild, moderate, invalid once each.
    (["invalid", "moderate", "mild"], "higher", (2, "moderate")),
    (["invalid", "moderate", "mild"], "lower", (1, "mild")),
])
def test_ties_by_hand(grades, tie_break, expected):
    assert resolve_study(grades, tie_break) == expected


def test_an_adjudicator_settles_a_tie_by_their_first_vote_among_the_tied():
    # Tie Level 1 (U1) vs Level 2 (U2); the adjudicator ADJ voted once: for Level 1, after U2.
    grades, readers = ["mild", "severe", "mild", "severe"], ["U1", "U2", "ADJ", "U3"]
    assert resolve_study(grades, "first", readers, {"ADJ"}) == (1, "mild")
    assert resolve_study(grades, "higher", readers, {"ADJ"}) == (1, "mild")
    assert resolve_study(grades, "lower", ["U1", "ADJ", "U2", "U3"], {"ADJ"}) == (2, "severe")


def test_group_labels_follow_the_majority_not_the_first_reader():
    images = pd.DataFrame({"image_id": ["a1", "b1"], "patient_id": ["P1", "P2"], "study_uid": ["S1", "S2"]})
    readers = _readers([
        ("S1", "U1", schema.MILD), ("S1", "U2", schema.MODERATE), ("S1", "U3", schema.SEVERE),
        ("S2", "U1", schema.SEVERE), ("S2", "U2", schema.MILD), ("S2", "U3", schema.MILD),
    ])
    labels, excluded = group_labels(images, readers, "first")
    assert labels.set_index("image_id")[["airspace_level", "study_grade", "n_readers"]].to_dict("index") == {
        "a1": {"airspace_level": 2, "study_grade": "moderate", "n_readers": 3},
        "b1": {"airspace_level": 1, "study_grade": "mild", "n_readers": 3}}
    assert labels.set_index("image_id").reader_grades.to_dict() == {"a1": "mild;moderate;severe",
                                                                    "b1": "severe;mild;mild"}
    assert excluded.empty


# --- the stage on a hand-made export: every number of cohort.json by hand (issue 20) ----------
def _export(rows) -> dict:
    """(study_uid, reader, label name) per annotation, in export order; one non-airspace group."""
    names = [*schema.AIRSPACE_LABELS, "Typical Appearance"]
    label_id = {name: f"L{i}" for i, name in enumerate(names)}
    groups = [{"id": "G1", "name": schema.AIRSPACE_GROUP,
               "labels": [{"id": label_id[n], "name": n, "scope": "STUDY"} for n in schema.AIRSPACE_LABELS]},
              {"id": "G2", "name": "Classification",
               "labels": [{"id": label_id["Typical Appearance"], "name": "Typical Appearance", "scope": "STUDY"}]}]
    annotations = [{"id": f"A{i}", "StudyInstanceUID": s, "labelId": label_id[n], "createdById": r}
                   for i, (s, r, n) in enumerate(rows)]
    studies = sorted({s for s, _, _ in rows})
    return {"id": "P", "name": "hand-made", "labelGroups": groups,
            "datasets": [{"id": "D", "name": "d", "annotations": annotations,
                          "studies": [{"StudyInstanceUID": s, "number": i} for i, s in enumerate(studies)]}]}


HAND_READERS = [
    ("S1", "U1", schema.MILD), ("S1", "U2", schema.MODERATE), ("S1", "U3", schema.MODERATE),
    ("S2", "U1", schema.MILD), ("S2", "ADJ", schema.SEVERE),
    ("S3", "U1", schema.INVALID), ("S3", "U2", schema.INVALID),
    ("S4", "U1", "Typical Appearance"),
    ("S5", "U1", schema.MILD), ("S5", "U2", schema.MILD),
]
HAND_IMAGES = pd.DataFrame({
    "image_id": ["a1", "a2", "b1", "c1", "c2", "d1", "e1"],
    "patient_id": ["P1", "P1", "P2", "P3", "P3", "P4", "P5"],
    "study_uid": ["S1", "S1", "S2", "S3", "S3", "S4", "S5"],
    "view": ["AP", "PA", "UNKNOWN", "AP", "AP", "AP", "AP"],
    "patient_age_years": [50, 52, 70, 33, 33, 44, 19],
    "patient_sex": ["M", "M", "F", "F", "F", "M", ""],
    "image_path": [f"severity/{i}.png" for i in ["a1", "a2", "b1", "c1", "c2", "d1", "e1"]],
})


def _hand_stage(tmp_path, readers=HAND_READERS, adjudicators="[ADJ]"):
    raw, tables = tmp_path / "raw", tmp_path / "tables"
    (raw / schema.RICORD_ANNOTATIONS).parent.mkdir(parents=True)
    tables.mkdir()
    (raw / schema.RICORD_ANNOTATIONS).write_text(json.dumps(_export(readers)))
    HAND_IMAGES.to_csv(tables / "severity_images.csv", index=False)
    params = tmp_path / "params.yaml"
    params.write_text("preset: embedded\npresets: {embedded: {}}\ndata: {source: synthetic}\n"
                      f"group: {{tie_break: first, adjudicators: {adjudicators}}}\n")
    return ["--raw", str(raw), "--tables", str(tables), "--metrics", str(tmp_path / "cohort.json"),
            "--params", str(params)]


def test_stage_outputs_by_hand(tmp_path, capsys):
    main(_hand_stage(tmp_path))
    cohort = json.loads((tmp_path / "cohort.json").read_text())
    # Fleiss' kappa by hand (levels 1 / 2 / invalid; S4 has no airspace vote): per-study agreement
    # S1 [1, 2, 0] -> (1 + 4 - 3) / 6, S2 [1, 1, 0] -> 0, S3 [0, 0, 2] -> 1, S5 [2, 0, 0] -> 1;
    # shares 4/9, 3/9, 2/9. By grade: mild 4/9, moderate 2/9, severe 1/9, invalid 2/9, same agreements.
    agreement = (2 / 6 + 0 + 1 + 1) / 4
    level_chance, grade_chance = (16 + 9 + 4) / 81, (16 + 4 + 1 + 4) / 81
    # Cohen's kappa, first two readers: (1, 2), (1, 2), (inv, inv), (1, 1): observed 2/4; chance
    # from the marginals (first: 1 x3, inv x1; second: 2 x2, 1 x1, inv x1) = 3/4 * 1/4 + 1/4 * 1/4.
    expected_cohen = (0.5 - 4 / 16) / (1 - 4 / 16)
    assert cohort == {
        "data_source": "synthetic", "images": 4, "patients": 3, "studies": 3,
        "excluded_studies": {"invalid study (reader majority)": 1, "no airspace grading": 1},
        "level1": {"images": 1, "patients": 1}, "level2": {"images": 3, "patients": 2},
        "readers_unanimous_fraction": round(1 / 3, 4),  # S5 only, of S1, S2, S5
        "reader_agreement": {
            "studies_with_two_or_more_readers": 4,
            "fleiss_kappa_level": round((agreement - level_chance) / (1 - level_chance), 4),
            "fleiss_kappa_grade": round((agreement - grade_chance) / (1 - grade_chance), 4),
            "cohen_kappa_level_first_two_readers": round(expected_cohen, 4),
            "level_agreement_first_two_readers": 0.5},
        "demographics": {
            "patients": 3, "patients_with_age": 3, "age_mean": round((50 + 70 + 19) / 3, 2),
            "age_sd": round(statistics.stdev([50, 70, 19]), 2),
            "age_bins": {"<20": 1, "20-29": 0, "30-39": 0, "40-49": 0, "50-59": 1, "60-69": 0, "70-79": 1,
                         "80-89": 0, "90+": 0},
            "sex": {"male": 1, "female": 1, "other": 0, "unknown": 1},
            "view": {"AP": 2, "PA": 1, "unknown": 1}},
    }
    labels = pd.read_csv(tmp_path / "tables/labels.csv", dtype=str, keep_default_na=False)
    assert list(labels.columns) == schema.LABEL_COLUMNS
    assert labels.values.tolist() == [
        ["a1", "P1", "S1", "3", "mild;moderate;moderate", "moderate", "2"],
        ["a2", "P1", "S1", "3", "mild;moderate;moderate", "moderate", "2"],
        ["b1", "P2", "S2", "2", "mild;severe", "severe", "2"],  # the tie goes to the adjudicator
        ["e1", "P5", "S5", "2", "mild;mild", "mild", "1"]]
    excluded = pd.read_csv(tmp_path / "tables/excluded_studies.csv", dtype=str)
    assert excluded.values.tolist() == [["S3", "P3", "invalid study (reader majority)"],
                                        ["S4", "P4", "no airspace grading"]]
    assert list(excluded.columns) == schema.EXCLUDED_STUDY_COLUMNS
    assert "group: 4 labelled images of 3 patients" in capsys.readouterr().out


def test_stage_without_adjudicators_breaks_the_tie_by_tie_break(tmp_path):
    main(_hand_stage(tmp_path, adjudicators="[]"))
    labels = pd.read_csv(tmp_path / "tables/labels.csv", dtype=str)
    assert labels.set_index("image_id").loc["b1", ["study_grade", "airspace_level"]].tolist() == ["mild", "1"]


def test_stage_with_no_valid_grade_stops(tmp_path):
    with pytest.raises(SystemExit, match="^group: no image has a valid airspace grade; nothing to train on$"):
        main(_hand_stage(tmp_path, readers=[("S1", "U1", schema.INVALID), ("S4", "U1", "Typical Appearance")]))
    assert not (tmp_path / "tables/labels.csv").exists()


def test_stage_defaults(monkeypatch):
    """main's paths default to the pipeline's layout, with the module docstring as --help."""
    import stages.group as group

    seen = main_defaults(group, monkeypatch)
    assert seen == {"description": group.__doc__, "raw": Path("data/raw"), "tables": Path("data/tables"),
                    "metrics": Path("metrics/cohort.json")}


def test_fleiss_kappa_edges_by_hand():
    # One category only: nothing to disagree on, kappa 1 by definition (chance agreement is 1).
    assert fleiss_kappa([[3, 0], [2, 0]]) == 1.0
    # Two subjects, two raters each, one agreeing and one not, shares 3/4 and 1/4:
    # (1/2 - 10/16) / (1 - 10/16) = -1/3.
    assert fleiss_kappa([[2, 0], [1, 1]]) == pytest.approx(-1 / 3)
    # One subject, three raters 2:1: agreement (4 + 1 - 3) / 6 = 1/3, chance 5/9 -> -1/2.
    assert fleiss_kappa([[2, 1]]) == pytest.approx(-0.5)
    for bad in ([], [[1, 0]], [[2, 0], [0, 1]], [2, 0]):
        with pytest.raises(ValueError, match=r"^fleiss_kappa needs at least one subject and >= 2 ratings per subject$"):
            fleiss_kappa(bad)


def test_reader_agreement_orders_studies_and_readers_by_hand():
    """Studies are taken in study-id order, readers in export order (a reader's first vote), the
    first two readers of each study compared; labels unseen in the pairs do not count."""
    readers = _readers([
        ("S2", "U2", schema.SEVERE), ("S1", "U1", schema.MILD), ("S2", "U1", schema.MILD),
        ("S1", "U2", schema.MILD), ("S1", "U3", schema.SEVERE), ("S2", "U2", schema.MILD),
    ])
    agreement = reader_agreement(readers)
    # S1: (1, 1); S2: U2's first vote (2) then U1 (1): (2, 1). Agreement 1/2; Cohen on the pairs
    # first = [1, 2], second = [1, 1]: p_o = 1/2, p_e = 1/2 * 1 + 1/2 * 0 = 1/2 -> 0.
    assert agreement["level_agreement_first_two_readers"] == 0.5
    assert agreement["cohen_kappa_level_first_two_readers"] == 0.0
    assert agreement["studies_with_two_or_more_readers"] == 2
    one_level = reader_agreement(_readers([("S1", "U1", schema.MILD), ("S1", "U2", schema.MILD)]))
    assert one_level["cohen_kappa_level_first_two_readers"] == 1.0  # one label only: perfect agreement
    assert reader_agreement(_readers([("S1", "U1", schema.MILD)])) == {"studies_with_two_or_more_readers": 0}


def test_studies_without_any_airspace_vote_are_all_excluded():
    images = pd.DataFrame({"image_id": ["a1", "b1"], "patient_id": ["P1", "P2"], "study_uid": ["S1", "S2"]})
    labels, excluded = group_labels(images, _readers([("S1", "U1", "Typical Appearance")]), "first")
    assert labels.empty and list(labels.columns) == schema.LABEL_COLUMNS
    assert excluded.to_dict("list") == {"study_uid": ["S1", "S2"], "patient_id": ["P1", "P2"],
                                        "reason": ["no airspace grading", "no airspace grading"]}


def test_agreement_is_rounded_to_four_decimals():
    readers = _readers([("S1", "U1", schema.MILD), ("S1", "U2", schema.MILD), ("S2", "U1", schema.SEVERE),
                        ("S2", "U2", schema.MODERATE), ("S3", "U1", schema.MILD), ("S3", "U2", schema.SEVERE)])
    assert reader_agreement(readers)["level_agreement_first_two_readers"] == 0.6667


def test_cohort_summary_on_an_empty_cohort():
    labels = pd.DataFrame(columns=schema.LABEL_COLUMNS)
    excluded = pd.DataFrame({"study_uid": ["S1"], "patient_id": ["P1"], "reason": ["no airspace grading"]})
    assert cohort_summary(labels, excluded) == {
        "images": 0, "patients": 0, "studies": 0, "excluded_studies": {"no airspace grading": 1},
        "level1": {"images": 0, "patients": 0}, "level2": {"images": 0, "patients": 0},
        "readers_unanimous_fraction": 0.0}


def test_demographics_round_to_two_decimals_and_need_two_ages_for_an_sd():
    demographics = cohort_demographics(_images([("P1", "AP", 20, "M"), ("P2", "AP", 21, "F"), ("P3", "AP", 23, "F")]))
    assert demographics["age_mean"] == 21.33 and demographics["age_sd"] == 1.53  # 64/3; sqrt(7/3)
    two = cohort_demographics(_images([("P1", "AP", 20, "M"), ("P2", "AP", 21, "F")]))
    assert two["age_sd"] == 0.71


def test_read_severity_images_names_every_missing_column_and_the_first_five_bad_ages(tmp_path):
    path = tmp_path / "severity_images.csv"
    pd.DataFrame({"image_id": ["a"], "patient_id": ["P1"]}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match=r"has no column patient_age_years, patient_sex; it was written by an"):
        read_severity_images(path)
    ages = ["x1", "x2", "x3", "x4", "x5", "x6", "", "7"]
    pd.DataFrame({"image_id": list("abcdefgh"), "patient_id": "P", "patient_age_years": ages,
                  "patient_sex": "M"}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match=r"not numbers: \['x1', 'x2', 'x3', 'x4', 'x5'\]$"):
        read_severity_images(path)


def test_a_reader_who_votes_twice_counts_once_even_before_the_next_reader():
    """U2 grades S2 twice (severe, then moderate) before U1 votes: the pair is U2's first vote
    against U1's, (2, 1); S3's only reader voting twice is still one reader."""
    readers = _readers([("S1", "U1", schema.MILD), ("S1", "U2", schema.MILD),
                        ("S2", "U2", schema.SEVERE), ("S2", "U2", schema.MODERATE), ("S2", "U1", schema.MILD),
                        ("S3", "U1", schema.MILD), ("S3", "U1", schema.SEVERE)])
    agreement = reader_agreement(readers)
    assert agreement["studies_with_two_or_more_readers"] == 2
    assert agreement["level_agreement_first_two_readers"] == 0.5


@pytest.mark.parametrize("tie_break", ["first", "covidnet"])
def test_each_study_keeps_its_own_grades_when_the_export_lists_studies_out_of_order(tie_break):
    """By hand: the export lists study S2 before S1; S1's readers said mild, mild (Level 1), S2's
    moderate, severe (Level 2). Each study's row must carry its own grades, whatever the order."""
    readers = _readers_with_ids([
        ("S2", "U1", schema.MODERATE, "L_mod"), ("S2", "U2", schema.SEVERE, "L_sev"),
        ("S1", "U1", schema.MILD, "L_mild"), ("S1", "U2", schema.MILD, "L_mild"),
    ])
    grades = study_grades(readers, tie_break).set_index("study_uid")
    assert grades.reader_grades.to_dict() == {"S1": "mild;mild", "S2": "moderate;severe"}
    assert grades.level.to_dict() == {"S1": 1, "S2": 2}
