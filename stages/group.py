"""Stage ``group``: readers' airspace labels -> one grade per study -> Level 1 / Level 2 per image.

The paper's grouping: Mild (1-2 zones) -> Level 1; Moderate (3-4) and Severe (>4) -> Level 2;
``Invalid Study`` or no airspace grading -> excluded.

Resolving reader disagreement, per study, deterministically:
1. Every airspace annotation is a vote for its level (an ``Invalid Study`` label is a vote too);
   the majority wins.
2. A tie goes to the adjudicator: when one of the readers listed in ``group.adjudicators``
   (MD.ai ``createdById``) voted on the study, their first vote among the tied candidates wins.
3. Otherwise ``group.tie_break`` settles it: ``first`` (the tied candidate whose first vote comes
   first in the export), ``covidnet`` (COVID-Net's rule as it ran in 2021, below), ``higher`` (the
   more severe level) or ``lower``.

COVID-Net (create_COVIDxSev.ipynb) took ``Counter(levels).most_common()[0][0]`` over the study's rows
of mdai-client-py's ``json_to_dataframe``, which inner-merges the annotations with the labels on
labelId (``sort=False``). pandas before 2.2 returned such a merge grouped by key, keys in the order
of their first appearance in the annotations (checked with pandas 1.5.3), so a tie went to the level
whose label id first appears earliest in the whole export, not to the study's first vote; from
pandas 2.2 on the merge keeps the annotations' order and the notebook gives ``first``. ``covidnet``
orders each study's votes by (first appearance of their label id, export position) and takes the
first tied level. Its first appearances are taken over the study-scoped annotations (RICORD's
grades are all study-scoped, so this is the export's order for them).

Reader agreement goes to ``metrics/cohort.json``: Fleiss' kappa (the form that allows a different
number of readers per study) over levels and over grades, and Cohen's kappa between each study's
first two readers.

Demographics (the paper's Table 1) go there too, over the labelled images: per patient, age
(from ``patient_age_years``; 90 means 90 or older), age bins and sex; per image, the view.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from stages import schema
from stages.common.cli import stage_arguments
from stages.common.io import read_table, write_csv, write_json
from stages.sources.mdai import read_export_labels

TIE_BREAKS = ("first", "covidnet", "higher", "lower")
INVALID_VOTE = "invalid"
# Columns group needs from severity_images.csv beyond the keys; an older ingest did not write them.
DEMOGRAPHIC_COLUMNS = ("patient_age_years", "patient_sex")
SEX_NAMES = {"M": "male", "F": "female", "O": "other"}  # anything else counts as "unknown"


def _vote(grade: str) -> int | str:
    return INVALID_VOTE if grade == "invalid" else schema.LEVEL_OF_GRADE[grade]


def resolve_study(grades: list[str], tie_break: str, readers: list[str] | None = None,
                  adjudicators: frozenset[str] | set[str] = frozenset()) -> tuple[int | str, str]:
    """Majority level over one study's reader grades (in export order) and its study grade.

    ``readers`` (same order as ``grades``) and ``adjudicators`` let an adjudicating reader settle
    a tie. Returns (level or "invalid", grade) where grade is the most common grade among the
    readers who voted for the winning level (ties: the earliest).
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"group.tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    votes = [_vote(g) for g in grades]
    counts = Counter(votes)
    best = max(counts.values())
    tied = [v for v in dict.fromkeys(votes) if counts[v] == best]  # in the given order, deduplicated
    adjudicated = [v for v, r in zip(votes, readers or []) if r in adjudicators and v in tied]
    if len(tied) > 1 and adjudicated:
        winner = adjudicated[0]
    elif len(tied) == 1 or tie_break in ("first", "covidnet"):  # covidnet: grades come in its order
        winner = tied[0]
    else:
        levels = [v for v in tied if v != INVALID_VOTE]
        # A tie between a grade and "invalid" keeps the grade: a reader did grade the study.
        winner = (max(levels) if tie_break == "higher" else min(levels)) if levels else INVALID_VOTE
    if winner == INVALID_VOTE:
        return winner, "invalid"
    grade_counts = Counter(g for g, v in zip(grades, votes) if v == winner)
    top = max(grade_counts.values())
    grade = next(g for g in grades if grade_counts.get(g) == top and _vote(g) == winner)
    return winner, grade


def airspace_votes(readers: pd.DataFrame) -> pd.DataFrame:
    """The airspace annotations in export order, with their grade."""
    airspace = readers[readers.label_name.isin(schema.AIRSPACE_LABELS)]
    airspace = airspace.sort_values("annotation_index", kind="stable")
    return airspace.assign(grade=airspace.label_name.map(schema.GRADE_OF_LABEL))


def covidnet_vote_order(readers: pd.DataFrame, airspace: pd.DataFrame) -> pd.DataFrame:
    """``airspace`` (votes) in COVID-Net's 2021 row order: by the first appearance of each vote's
    label id among ``readers`` (all annotations read), then by export position."""
    if "label_id" not in readers.columns:
        raise ValueError("group.tie_break 'covidnet' needs the annotations' label ids (column label_id)")
    first_seen = readers.groupby("label_id").annotation_index.min()
    ranked = airspace.assign(_label_rank=airspace.label_id.map(first_seen))
    return ranked.sort_values(["_label_rank", "annotation_index"], kind="stable").drop(columns="_label_rank")


def study_grades(readers: pd.DataFrame, tie_break: str,
                 adjudicators: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """One row per study that has airspace labels: n_readers, reader_grades (export order), level, grade."""
    airspace = airspace_votes(readers)
    # The order the tie rule reads the votes in: the export's, or COVID-Net's 2021 row order.
    ordered = covidnet_vote_order(readers, airspace) if tie_break == "covidnet" else airspace
    adjudicators = {str(a) for a in adjudicators}
    rows = []
    for (study_uid, group), (_, in_export_order) in zip(ordered.groupby("study_uid", sort=True),
                                                       airspace.groupby("study_uid", sort=True)):
        grades = list(group.grade)
        level, grade = resolve_study(grades, tie_break, [str(r) for r in group.reader_id], adjudicators)
        rows.append({
            "study_uid": study_uid,
            "n_readers": group.reader_id.nunique(),
            "reader_grades": ";".join(in_export_order.grade),
            "study_grade": grade,
            "level": level,
        })
    return pd.DataFrame(rows, columns=["study_uid", "n_readers", "reader_grades", "study_grade", "level"])


def group_labels(images: pd.DataFrame, readers: pd.DataFrame, tie_break: str,
                 adjudicators: frozenset[str] | set[str] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label every image of a validly graded study; list every excluded study with its reason."""
    studies = study_grades(readers, tie_break, adjudicators)
    merged = images.merge(studies, on="study_uid", how="left")
    graded = merged["level"].notna() & (merged["level"] != INVALID_VOTE)
    labels = merged[graded].copy()
    labels["airspace_level"] = labels["level"].astype(int)
    labels["n_readers"] = labels["n_readers"].astype(int)
    labels = labels.sort_values("image_id", kind="stable").reset_index(drop=True)

    excluded = merged[~graded].drop_duplicates("study_uid").copy()
    excluded["reason"] = excluded["level"].map(
        lambda v: "invalid study (reader majority)" if v == INVALID_VOTE else "no airspace grading")
    excluded = excluded.sort_values("study_uid", kind="stable").reset_index(drop=True)
    return labels[schema.LABEL_COLUMNS], excluded[schema.EXCLUDED_STUDY_COLUMNS]


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for a (subjects x categories) table of rating counts.

    Subjects may have different numbers of raters (each needs at least two): the per-subject
    agreement uses its own rater count and the chance agreement pools all ratings.
    """
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=-1)
    if counts.ndim != 2 or len(counts) == 0 or (raters < 2).any():
        raise ValueError("fleiss_kappa needs at least one subject and >= 2 ratings per subject")
    agreement = ((counts ** 2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / raters.sum()
    chance = float((shares ** 2).sum())
    if chance >= 1.0:
        return 1.0  # every rating falls in one category: nothing to disagree on
    return float((agreement.mean() - chance) / (1.0 - chance))


def reader_agreement(readers: pd.DataFrame) -> dict:
    """Agreement between readers on the airspace grading, over studies read by >= 2 readers.

    Each reader counts once per study (their first airspace annotation in the export).
    """
    votes = airspace_votes(readers).drop_duplicates(["study_uid", "reader_id"], keep="first")
    votes = votes.assign(level=votes.grade.map(lambda g: str(_vote(g))))
    n_per_study = votes.groupby("study_uid").reader_id.transform("size")
    multi = votes[n_per_study >= 2]
    result: dict = {"studies_with_two_or_more_readers": int(multi.study_uid.nunique())}
    if multi.empty:
        return result
    for column in ("level", "grade"):
        table = pd.crosstab(multi.study_uid, multi[column])
        result[f"fleiss_kappa_{column}"] = round(fleiss_kappa(table.to_numpy()), 4)
    pairs = multi.groupby("study_uid", sort=True)["level"].apply(lambda s: list(s[:2]))
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    labels = sorted(set(first) | set(second))
    kappa = cohen_kappa_score(first, second, labels=labels) if len(labels) > 1 else 1.0
    result["cohen_kappa_level_first_two_readers"] = round(float(kappa), 4)
    result["level_agreement_first_two_readers"] = round(float(np.mean(np.equal(first, second))), 4)
    return result


def cohort_summary(labels: pd.DataFrame, excluded: pd.DataFrame) -> dict:
    summary = {
        "images": int(len(labels)),
        "patients": int(labels.patient_id.nunique()),
        "studies": int(labels.study_uid.nunique()),
        "excluded_studies": {reason: int(n) for reason, n in excluded.reason.value_counts().sort_index().items()},
    }
    for level in schema.LEVELS:
        subset = labels[labels.airspace_level == level]
        summary[f"level{level}"] = {"images": int(len(subset)), "patients": int(subset.patient_id.nunique())}
    summary["readers_unanimous_fraction"] = round(float(
        labels.drop_duplicates("study_uid").reader_grades.map(
            lambda g: len({_vote(x) for x in g.split(";")}) == 1).mean()), 4) if len(labels) else 0.0
    return summary


def read_severity_images(path: Path) -> pd.DataFrame:
    """The image table, with ``patient_age_years`` as numbers (NaN where blank).

    Fails with a message naming the file when a demographic column is absent (a table written by
    an older ingest) or an age is not a number.
    """
    images = read_table(path)
    missing = [c for c in DEMOGRAPHIC_COLUMNS if c not in images.columns]
    if missing:
        raise SystemExit(f"group: {path} has no column {', '.join(missing)}; it was written by an "
                         f"older ingest, run the ingest stage again")
    text = images["patient_age_years"].astype(str).str.strip()
    ages = pd.to_numeric(text.mask(text == ""), errors="coerce")
    bad = sorted(set(text[ages.isna() & (text != "")]))
    if bad:
        raise SystemExit(f"group: {path}: patient_age_years holds values that are not numbers: {bad[:5]}")
    return images.assign(patient_age_years=ages)


def labelled_images(images: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The image table's rows for the labelled images (the cohort after exclusions)."""
    return images[images.image_id.isin(labels.image_id)]


def age_bin(age: int) -> str:
    """The Table 1 bin of a whole-years age; 90 (stored for 90 or older) falls in "90+"."""
    if age < 20:
        return schema.AGE_BINS[0]
    if age >= schema.AGE_CAP_YEARS:
        return schema.AGE_BINS[-1]
    decade = age // 10 * 10
    return f"{decade}-{decade + 9}"


def majority_sex(values: pd.Series) -> str:
    """The most common of M/F/O over one patient's images (ties: the first sorted); "" if none."""
    counts = Counter(v for v in values if v in SEX_NAMES)
    if not counts:
        return ""
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def patient_demographics(images: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (sorted by id): ``age`` (NaN if unknown) and ``sex`` ("" if unknown).

    Studies carry no date, so the age at the earliest study is taken as the smallest age over the
    patient's images (ages only grow).
    """
    ages = pd.to_numeric(images["patient_age_years"])
    grouped = images.assign(age=ages).groupby("patient_id", sort=True)
    return pd.DataFrame({"age": grouped["age"].min(), "sex": grouped["patient_sex"].agg(majority_sex)})


def cohort_demographics(images: pd.DataFrame) -> dict:
    """The paper's Table 1 over ``images`` (give it the labelled ones): age and sex per patient,
    view per image. Ages: mean and sample SD (ddof=1) to 2 decimals; null without ages (the SD
    also with a single age)."""
    patients = patient_demographics(images)
    ages = patients["age"].dropna()
    bins = Counter(age_bin(int(a)) for a in ages)
    sexes = Counter(SEX_NAMES.get(s, "unknown") for s in patients["sex"])
    # The table holds AP, PA or UNKNOWN (ingest leaves laterals out); all but AP/PA is "unknown".
    views = Counter(v if v in ("AP", "PA") else "unknown" for v in images["view"])
    return {
        "patients": int(len(patients)),
        "patients_with_age": int(len(ages)),
        "age_mean": round(float(ages.mean()), 2) if len(ages) else None,
        "age_sd": round(float(ages.std(ddof=1)), 2) if len(ages) > 1 else None,
        "age_bins": {name: int(bins[name]) for name in schema.AGE_BINS},
        "sex": {name: int(sexes[name]) for name in ("male", "female", "other", "unknown")},
        "view": {name: int(views[name]) for name in ("AP", "PA", "unknown")},
    }


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(__doc__, argv, raw=Path("data/raw"), tables=Path("data/tables"),
                                   metrics=Path("metrics/cohort.json"))
    images = read_severity_images(args.tables / "severity_images.csv")
    readers, orphans = read_export_labels(args.raw / schema.RICORD_ANNOTATIONS)
    if orphans:
        print(f"group: {sum(orphans.values())} annotations use a labelId no labelGroups entry defines; left "
              f"out (as COVID-Net's json_to_dataframe did): {orphans}", file=sys.stderr)
    adjudicators = set(params["group"].get("adjudicators") or [])
    labels, excluded = group_labels(images, readers, params["group"]["tie_break"], adjudicators)
    if labels.empty:
        raise SystemExit("group: no image has a valid airspace grade; nothing to train on")
    write_csv(args.tables / "labels.csv", labels, schema.LABEL_COLUMNS)
    write_csv(args.tables / "excluded_studies.csv", excluded, schema.EXCLUDED_STUDY_COLUMNS)
    summary = {"data_source": params["data"]["source"], **cohort_summary(labels, excluded),
               "reader_agreement": reader_agreement(readers),
               "demographics": cohort_demographics(labelled_images(images, labels))}
    if orphans:  # only when there are any, so an export without them keeps its metrics as they were
        summary["annotations_without_label"] = {"count": sum(orphans.values()), "label_ids": orphans}
    write_json(args.metrics, summary)
    print(f"group: {summary['images']} labelled images of {summary['patients']} patients; "
          f"level1 {summary['level1']}, level2 {summary['level2']}; excluded {summary['excluded_studies']}")


if __name__ == "__main__":
    main()
