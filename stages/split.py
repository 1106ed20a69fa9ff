"""Stage ``split``: train/val/test by patient, in one of two modes (``split.mode``).

- ``patient_disjoint``: a seeded split of our own. Images of one patient are correlated (same
  anatomy, often the same admission), so whole patients go to one split. Patients are stratified
  by their dominant level (the level of most of their images; ties -> Level 2) so each split keeps
  the cohort's Level 1/Level 2 mix. ``val_fraction`` and ``test_fraction`` are shares of patients.
- ``reference``: COVID-Net's published lists (``data/raw/covidnet/*_COVIDxSev.txt``), so the test
  set is the paper's 150 images, with the lists' levels. The paper had no validation split (it
  selected on the test set); we hold out ``val_fraction`` of the training-list patients, seeded
  and stratified the same way, so model selection never sees the test set.

Counts per split and level (images and patients) go to ``metrics/split.json``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from stages import schema
from stages.common.cli import stage_arguments
from stages.common.io import read_table, write_csv, write_json
from stages.sources.covidnet_files import read_severity_list

MODES = ("patient_disjoint", "reference")


def dominant_level(labels: pd.DataFrame) -> pd.Series:
    """Per patient: the level of most of their images (a tie goes to Level 2)."""
    share_level2 = labels.groupby("patient_id", sort=True).airspace_level.apply(lambda s: (s == 2).mean())
    return (share_level2 >= 0.5).map({True: 2, False: 1})


def _cut_strata(labels: pd.DataFrame, seed: int, cuts: list[tuple[str, float]], rest: str) -> pd.Series:
    """patient_id -> split: each level stratum shuffled (seeded) and cut at the given shares."""
    rng = np.random.default_rng(seed)
    assignment = {}
    strata = dominant_level(labels)
    for level in schema.LEVELS:
        patients = np.array(sorted(strata.index[strata == level]))
        patients = patients[rng.permutation(len(patients))]
        bounds, start = [], 0
        for name, fraction in cuts:
            start += int(round(fraction * len(patients)))
            bounds.append((start, name))
        for i, patient in enumerate(patients):
            assignment[patient] = next((name for bound, name in bounds if i < bound), rest)
    return pd.Series(assignment, name="split", dtype=object)


def assign_splits(labels: pd.DataFrame, seed: int, val_fraction: float,
                  test_fraction: float) -> pd.Series:
    """patient_id -> split, a seeded shuffle of each level stratum cut at the given fractions."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must leave a training share: val={val_fraction}, test={test_fraction}")
    return _cut_strata(labels, seed, [("test", test_fraction), ("val", val_fraction)], "train")


def split_table(labels: pd.DataFrame, images: pd.DataFrame, params: dict) -> pd.DataFrame:
    splits = assign_splits(labels, int(params["seed"]), float(params["val_fraction"]),
                           float(params["test_fraction"]))
    table = labels.merge(images[["image_id", "image_path"]], on="image_id", how="left")
    missing = table[table.image_path.isna()]
    if len(missing):
        raise SystemExit(f"split: labelled images missing from the image table: {list(missing.image_id[:5])}")
    table["split"] = table.patient_id.map(splits)
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)[schema.SPLIT_COLUMNS]


def read_reference_lists(raw: str | Path) -> dict[str, pd.DataFrame]:
    """The COVIDxSev train and test lists under ``raw``; a clear error when they were not acquired."""
    lists = {}
    for name, rel in schema.SEVERITY_REFERENCE_LISTS.items():
        path = Path(raw) / rel
        if not path.exists():
            raise SystemExit(
                f"split: split.mode 'reference' needs COVID-Net's list {path}, which acquire writes "
                f"for data.source 'ricord'; use split.mode 'patient_disjoint' with other sources")
        lists[name] = read_severity_list(path)
    return lists


def reference_table(lists: dict[str, pd.DataFrame], seed: int, val_fraction: float,
                    images: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """The reference split as a split table, and what did not match our images.

    Without ``images`` the table holds every listed image (image_path empty): the paper's cohort.
    With them, listed images we do not have are dropped and reported, and patient ids and image
    paths come from our image table.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in [0, 1), got {val_fraction}")
    train, test = lists["train"], lists["test"]
    shared = sorted(set(train.patient_id) & set(test.patient_id))
    if shared:
        raise ValueError(f"reference lists share {len(shared)} patient(s) between train and test: {shared[:5]}")
    both = sorted(set(train.image_id) & set(test.image_id))
    if both:
        raise ValueError(f"reference lists name {len(both)} image(s) in both train and test: {both[:5]}")
    val = _cut_strata(train, seed, [("val", val_fraction)], "train")
    table = pd.concat([train.assign(split=train.patient_id.map(val)), test.assign(split="test")],
                      ignore_index=True)
    report = {"listed_images": int(len(table))}
    if images is None:
        table["image_path"] = ""
    else:
        known = images[["image_id", "patient_id", "image_path"]].rename(columns={"patient_id": "our_patient_id"})
        table = table.merge(known, on="image_id", how="left")
        missing = table[table.image_path.isna()]
        report["listed_images_missing"] = int(len(missing))
        report["listed_images_missing_ids"] = sorted(missing.image_id)[:20]
        table = table[table.image_path.notna()].copy()
        table["patient_id"] = table.our_patient_id
    table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
    return table[schema.SPLIT_COLUMNS], report


def split_counts(table: pd.DataFrame) -> dict:
    """Images and patients per split and level, and how many patients sit in two splits."""
    counts: dict = {}
    for split in schema.SPLITS:
        part = table[table.split == split]
        entry = {"images": int(len(part)), "patients": int(part.patient_id.nunique())}
        for level in schema.LEVELS:
            subset = part[part.airspace_level == level]
            entry[f"level{level}"] = {"images": int(len(subset)), "patients": int(subset.patient_id.nunique())}
        counts[split] = entry
    counts["patients_in_two_splits"] = int((table.groupby("patient_id").split.nunique() > 1).sum())
    return counts


def disagreement_cause(reader_grades: object) -> str:
    """Why our level can differ from the list's for one study: ``tie`` when the readers' levels are
    tied at the top (group.tie_break decided), ``majority`` when a majority decided, ``unknown``
    without the readers' grades."""
    if not isinstance(reader_grades, str) or not reader_grades:
        return "unknown"
    levels = Counter(schema.LEVEL_OF_GRADE.get(grade, grade) for grade in reader_grades.split(";"))
    top = max(levels.values())
    return "tie" if sum(n == top for n in levels.values()) > 1 else "majority"


def level_disagreements(table: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """Reference mode: how often the list's level differs from our grouping of the readers, by cause
    (:func:`disagreement_cause`), and how many listed images we hold but did not grade."""
    columns = ["image_id", "airspace_level"] + (["reader_grades"] if "reader_grades" in labels.columns else [])
    merged = table.merge(labels[columns], on="image_id", how="left", suffixes=("", "_grouped"))
    graded = merged[merged.airspace_level_grouped.notna()]
    differ = graded[graded.airspace_level != graded.airspace_level_grouped.astype(int)]
    causes = Counter(disagreement_cause(g) for g in differ.get("reader_grades", pd.Series([None] * len(differ))))
    return {"images_graded_by_us": int(len(graded)), "listed_images_not_graded_by_us": int(len(merged) - len(graded)),
            "level_differs_from_our_grouping": int(len(differ)),
            "level_differs_by_cause": {cause: int(causes[cause]) for cause in ("tie", "majority", "unknown")}}


def run(raw: Path, tables: Path, params: dict) -> tuple[pd.DataFrame, dict]:
    mode = params.get("mode", "patient_disjoint")
    if mode not in MODES:
        raise SystemExit(f"split: split.mode must be one of {MODES}, got {mode!r}")
    labels = read_table(tables / "labels.csv")
    images = read_table(tables / "severity_images.csv")
    summary: dict = {"mode": mode}
    if mode == "patient_disjoint":
        table = split_table(labels, images, params)
    else:
        table, report = reference_table(read_reference_lists(raw), int(params["seed"]),
                                        float(params["val_fraction"]), images)
        if table.empty:
            raise SystemExit("split: none of the reference lists' images is in the image table")
        summary["reference"] = {**report, **level_disagreements(table, labels)}
    summary.update(split_counts(table))
    return table, summary


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(__doc__, argv, raw=Path("data/raw"), tables=Path("data/tables"),
                                   metrics=Path("metrics/split.json"))
    table, summary = run(args.raw, args.tables, params["split"])
    write_csv(args.tables / "split.csv", table, schema.SPLIT_COLUMNS)
    write_json(args.metrics, {"data_source": params["data"]["source"], **summary})
    counts = table.groupby(["split", "airspace_level"]).size().unstack(fill_value=0)
    print(f"split ({summary['mode']}): images per split and level\n" + counts.to_string())


if __name__ == "__main__":
    main()
