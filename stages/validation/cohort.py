"""Cross-table suites of the cohort: ``split`` (against ``labels``) and ``paper_cohort`` (against the paper).

``split`` checks that every labelled image is in exactly one split and every split image has a
label, that no patient is in two splits, that each split has enough images of each airspace level
and that no split's Level 2 share strays too far from the whole cohort's; each of these runs on a
small derived table (one row per patient, per split and level, per split). ``paper_cohort``, built
only when the run means to reproduce the paper's cohort, compares the cohort's figures counted on
the split table with ``stages/reference/paper.yaml``, which they must equal exactly.
"""

from __future__ import annotations

from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

from stages import schema
from stages.validation.expectations import (Check, Frame, SuiteSpec, at_least, has_columns, in_set,
                                            membership_frame, not_empty, not_null, prepare,
                                            required_columns, unique)

PAPER_COHORT_SUITE = "paper_cohort"
DEFAULT_MIN_IMAGES_PER_LEVEL_PER_SPLIT = 1
DEFAULT_MAX_LEVEL2_SHARE_DEVIATION = 0.15


def patients_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Per patient: in how many distinct splits their images are."""
    if not has_columns(split, "patient_id", "split"):
        return pd.DataFrame({"patient_id": [], "n_splits": []})
    known = split.dropna(subset=["patient_id", "split"])
    counts = known.groupby("patient_id", sort=True)["split"].nunique()
    return pd.DataFrame({"patient_id": counts.index.astype(str), "n_splits": counts.to_numpy(dtype="int64")})


def level_counts_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Images per (split, level) over every split and level, so a combination with none shows 0."""
    grid = pd.MultiIndex.from_product([schema.SPLITS, schema.LEVELS], names=["split", "airspace_level"])
    if has_columns(split, "split", "airspace_level"):
        counts = split.groupby(["split", "airspace_level"]).size()
        counts = counts.reindex(grid, fill_value=0)
    else:
        counts = pd.Series(0, index=grid)
    frame = counts.rename("n_images").reset_index()
    frame["n_images"] = frame["n_images"].astype("int64")
    return frame


def level2_share_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Per split: its Level 2 share, the whole cohort's, and how far apart they are."""
    columns = ["split", "n_images", "level2_share", "cohort_level2_share", "deviation"]
    if not has_columns(split, "split", "airspace_level") or split.empty:
        return pd.DataFrame(columns=columns)
    known = split.dropna(subset=["split", "airspace_level"])
    is_level2 = known["airspace_level"].map(lambda v: str(v) == "2")
    cohort = float(is_level2.mean())
    rows = []
    for name in schema.SPLITS:
        member = known["split"] == name
        if not member.any():
            continue  # an empty split is the level-count check's business
        share = float(is_level2[member].mean())
        rows.append({"split": name, "n_images": int(member.sum()), "level2_share": round(share, 6),
                     "cohort_level2_share": round(cohort, 6), "deviation": round(abs(share - cohort), 6)})
    return pd.DataFrame(rows, columns=columns)


def cohort_counts(split: pd.DataFrame) -> dict[str, int]:
    """The paper's cohort figures, counted on our split table."""
    levels = split["airspace_level"].map(lambda v: str(v))
    counts = {"images": len(split), "patients": split["patient_id"].nunique()}
    for level in schema.LEVELS:
        member = levels == str(level)
        counts[f"level{level}.images"] = int(member.sum())
        counts[f"level{level}.patients"] = int(split.loc[member, "patient_id"].nunique())
    test = split["split"] == "test"
    counts["test_images"] = int(test.sum())
    for level in schema.LEVELS:
        counts[f"test_level{level}_images"] = int((test & (levels == str(level))).sum())
    return {k: int(v) for k, v in counts.items()}


def flatten_counts(expected: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """``{level1: {images: 227}}`` -> ``{"level1.images": 227}``."""
    flat: dict[str, int] = {}
    for key, value in expected.items():
        if isinstance(value, dict):
            flat.update(flatten_counts(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = int(value)
    return flat


def paper_counts_frame(split: pd.DataFrame, expected: dict[str, Any]) -> pd.DataFrame:
    """One row per figure of the paper's cohort: ours beside the paper's."""
    wanted = flatten_counts(expected)
    observed = cohort_counts(split) if has_columns(split, "patient_id", "split", "airspace_level") else {}
    return pd.DataFrame({
        "figure": list(wanted),
        "observed": [observed.get(k) for k in wanted],
        "expected": list(wanted.values()),
    }).astype({"observed": object})


def split_suite(split: pd.DataFrame, labels: pd.DataFrame, params: dict[str, Any]) -> SuiteSpec:
    """Every labelled image in exactly one split, patient-disjoint, each level in each split."""
    table = prepare(split)
    label_table = prepare(labels)
    minimum = int(params.get("min_images_per_level_per_split", DEFAULT_MIN_IMAGES_PER_LEVEL_PER_SPLIT))
    tolerance = float(params.get("max_level2_share_deviation", DEFAULT_MAX_LEVEL2_SHARE_DEVIATION))
    return SuiteSpec("split", len(table), {
        "table": Frame(table, ("image_id",)),
        "label_join": Frame(membership_frame(table, label_table, "in_labels"), ("image_id",)),
        "split_join": Frame(membership_frame(label_table, table, "in_split"), ("image_id",)),
        "patients": Frame(patients_frame(table), ("patient_id",)),
        "level_counts": Frame(level_counts_frame(table), ("split", "airspace_level")),
        "level2_shares": Frame(level2_share_frame(table), ("split", "level2_share", "cohort_level2_share")),
    }, [
        required_columns(schema.SPLIT_COLUMNS),
        not_empty(),
        *not_null("image_id", "patient_id", "split", "airspace_level"),
        unique("image_id", "image in two split rows"),
        in_set("split", schema.SPLITS, "unknown split"),
        in_set("airspace_level", schema.LEVELS, "unknown airspace level"),
        in_set("in_labels", [True], "split image without a label", frame="label_join"),
        in_set("in_split", [True], "labelled image missing from the split", frame="split_join"),
        in_set("n_splits", [1], "patient in two splits", frame="patients"),
        at_least("n_images", minimum, f"fewer than {minimum} images of a level in a split",
                 frame="level_counts"),
        Check("level2_shares", gxe.ExpectColumnValuesToBeBetween,
              {"column": "deviation", "max_value": tolerance},
              f"Level 2 share of a split more than {tolerance} from the cohort's"),
    ])


def paper_cohort_suite(split: pd.DataFrame, expected: dict[str, Any]) -> SuiteSpec:
    """The cohort of the paper exactly: images, patients, per level, and the test set size."""
    counts = paper_counts_frame(prepare(split), expected)
    return SuiteSpec(PAPER_COHORT_SUITE, len(counts), {
        "counts": Frame(counts, ("figure", "observed", "expected")),
    }, [
        Check("counts", gxe.ExpectColumnValuesToNotBeNull, {"column": "observed"},
              "figure not countable on the split table"),
        Check("counts", gxe.ExpectColumnPairValuesToBeEqual,
              {"column_A": "observed", "column_B": "expected"},
              "cohort count differs from the paper's (stages/reference/paper.yaml)"),
    ])
