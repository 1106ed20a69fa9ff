"""Stage ``split``: seeded, patient-disjoint train/val/test split, stratified by airspace level.

Images of one patient are correlated (same anatomy, often the same admission), so whole patients
go to one split. Patients are stratified by their dominant level (the level of most of their
images; ties -> Level 2) so each split keeps the cohort's Level 1/Level 2 mix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages import schema
from stages.common.io import read_table, write_csv
from stages.common.params import load_params


def dominant_level(labels: pd.DataFrame) -> pd.Series:
    """Per patient: the level of most of their images (a tie goes to Level 2)."""
    share_level2 = labels.groupby("patient_id", sort=True).airspace_level.apply(lambda s: (s == 2).mean())
    return (share_level2 >= 0.5).map({True: 2, False: 1})


def assign_splits(labels: pd.DataFrame, seed: int, val_fraction: float,
                  test_fraction: float) -> pd.Series:
    """patient_id -> split, a seeded shuffle of each level stratum cut at the given fractions."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must leave a training share: val={val_fraction}, test={test_fraction}")
    rng = np.random.default_rng(seed)
    assignment = {}
    strata = dominant_level(labels)
    for level in schema.LEVELS:
        patients = np.array(sorted(strata.index[strata == level]))
        patients = patients[rng.permutation(len(patients))]
        n_test = int(round(test_fraction * len(patients)))
        n_val = int(round(val_fraction * len(patients)))
        for i, patient in enumerate(patients):
            assignment[patient] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return pd.Series(assignment, name="split")


def split_table(labels: pd.DataFrame, images: pd.DataFrame, params: dict) -> pd.DataFrame:
    splits = assign_splits(labels, int(params["seed"]), float(params["val_fraction"]),
                           float(params["test_fraction"]))
    table = labels.merge(images[["image_id", "image_path"]], on="image_id", how="left")
    missing = table[table.image_path.isna()]
    if len(missing):
        raise SystemExit(f"split: labelled images missing from the image table: {list(missing.image_id[:5])}")
    table["split"] = table.patient_id.map(splits)
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)[schema.SPLIT_COLUMNS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=Path, default=Path("data/tables"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    labels = read_table(args.tables / "labels.csv")
    images = read_table(args.tables / "severity_images.csv")
    table = split_table(labels, images, params["split"])
    write_csv(args.tables / "split.csv", table, schema.SPLIT_COLUMNS)
    counts = table.groupby(["split", "airspace_level"]).size().unstack(fill_value=0)
    print("split: images per split and level\n" + counts.to_string())


if __name__ == "__main__":
    main()
