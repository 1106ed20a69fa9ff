"""Leakage audit: severity test/validation images that the backbone already saw in pretraining.

COVID-Net CXR-S pretrains on COVIDx, which includes RICORD: 91 of the 150 published CXR-S test
images are in ``train_COVIDx8B.txt`` by file name. A severity image counts as leaked when a
pretraining image matches it by any of four methods (:data:`stages.schema.LEAKAGE_METHODS`):

* ``patient_id``: the same patient (RICORD's ``MIDRC-RICORD-1C-`` prefix ignored, as COVIDx drops it);
* ``filename``: the same file name stem (COVID-Net names RICORD images ``MIDRC-RICORD-1C-...-{i}``);
* ``pixel_sha256``: the same decoded 8-bit pixels, whatever the file format;
* ``phash``: perceptual hashes within ``validate.phash_max_distance`` bits (a resized or
  re-encoded copy).

``validate.leakage`` decides what a match does: ``fail`` stops the pipeline, ``exclude`` (default)
drops the matched images from the pretraining *train* list (the audited table the pretraining
stage reads), ``report`` only records them. Matches in COVIDx's test list are recorded but never
excluded: that list only scores the backbone, it does not train it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages import schema
from stages.imaging.hashing import hamming_matrix

MODES = ("fail", "exclude", "report")
DEFAULT_MODE = "exclude"
DEFAULT_SPLITS = ("test", "val")
DEFAULT_PHASH_MAX_DISTANCE = 16
RICORD_PREFIX = "MIDRC-RICORD-1C-"
MESSAGE_EXAMPLES = 5
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".gif", ".tif", ".tiff")
# Methods that match on equal keys (the fourth, phash, matches within a distance).
EQUALITY_KEYS = {"patient_id": "patient_key", "filename": "name_key", "pixel_sha256": "pixel_sha256"}


@dataclass(frozen=True)
class AuditSettings:
    mode: str = DEFAULT_MODE
    splits: tuple[str, ...] = DEFAULT_SPLITS
    phash_max_distance: int = DEFAULT_PHASH_MAX_DISTANCE

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "AuditSettings":
        """From the ``validate`` section; a bad setting is a clear error naming the key."""
        mode = str(params.get("leakage", DEFAULT_MODE))
        if mode not in MODES:
            raise ValueError(f"validate.leakage must be one of {list(MODES)}, got {mode!r}")
        splits = tuple(params.get("leakage_splits") or DEFAULT_SPLITS)
        unknown = sorted(set(splits) - set(schema.SPLITS))
        if unknown:
            raise ValueError(f"validate.leakage_splits: unknown splits {unknown}; "
                             f"choose among {list(schema.SPLITS)}")
        distance = int(params.get("phash_max_distance", DEFAULT_PHASH_MAX_DISTANCE))
        if distance < 0:
            raise ValueError(f"validate.phash_max_distance must be >= 0, got {distance}")
        return cls(mode, splits, distance)


@dataclass
class AuditResult:
    matches: pd.DataFrame  # schema.LEAKAGE_MATCH_COLUMNS, sorted
    audited_pretrain: pd.DataFrame  # what the pretraining stage may use
    summary: dict[str, Any]  # metrics/leakage.json


def patient_key(patient_id: Any) -> str | None:
    """A patient id comparable across sources: COVIDx writes RICORD ids without the prefix."""
    if patient_id is None or (isinstance(patient_id, float) and np.isnan(patient_id)):
        return None
    text = str(patient_id).strip()
    if text.upper().startswith(RICORD_PREFIX):
        text = text[len(RICORD_PREFIX):]
    return text or None


def name_key(filename: Any) -> str | None:
    """A file name without folder or image extension (``a/b/X-1.png`` -> ``X-1``).

    Only an image extension is dropped: RICORD ids end in the last five characters of a study
    UID, which may hold a dot (``...-000008-08.50-0``), so ``Path.stem`` would cut them short.
    """
    if filename is None or (isinstance(filename, float) and np.isnan(filename)):
        return None
    name = str(filename).strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    if dot and ("." + extension.lower()) in IMAGE_EXTENSIONS:
        name = stem
    return name or None


def _text(column: pd.Series) -> pd.Series:
    """Strings with blanks as None (hash columns may be empty for images read before hashing)."""
    return column.map(lambda v: str(v).strip() if isinstance(v, str) and str(v).strip() else None)


def _keyed(frame: pd.DataFrame, ids: pd.Series, group: pd.Series, names: pd.Series, side: str,
           group_name: str) -> pd.DataFrame:
    """One side of the audit: ids, their split or list, and the four matching keys."""
    return pd.DataFrame({
        f"{side}_image_id": ids.astype(str).to_numpy(),
        f"{side}_{group_name}": group.astype(str).to_numpy(),
        "patient_key": frame["patient_id"].map(patient_key).to_numpy(),
        "name_key": names.map(name_key).to_numpy(),
        "pixel_sha256": _text(frame["pixel_sha256"]).to_numpy(),
        "phash": _text(frame["phash"]).to_numpy(),
    })


def severity_under_audit(split: pd.DataFrame, images: pd.DataFrame,
                         splits: tuple[str, ...]) -> pd.DataFrame:
    """The severity images of the audited splits with their keys and hashes."""
    chosen = split[split["split"].isin(splits)][["image_id", "patient_id", "split"]]
    hashes = images.reindex(columns=["image_id", "pixel_sha256", "phash"]).drop_duplicates("image_id")
    frame = chosen.merge(hashes, on="image_id", how="left", validate="one_to_one")
    return _keyed(frame, frame["image_id"], frame["split"], frame["image_id"], "severity", "split")


def pretrain_under_audit(pretrain: pd.DataFrame) -> pd.DataFrame:
    frame = pretrain.reindex(columns=["image_id", "patient_id", "filename", "list", "pixel_sha256", "phash"])
    return _keyed(frame, frame["image_id"], frame["list"], frame["filename"], "pretrain", "list")


def _equal_pairs(severity: pd.DataFrame, pretrain: pd.DataFrame, key: str) -> pd.DataFrame:
    left = severity[["severity_image_id", key]].dropna()
    right = pretrain[["pretrain_image_id", key]].dropna()
    return left.merge(right, on=key)[["severity_image_id", "pretrain_image_id"]]


def _phash_distances(severity: pd.DataFrame, pretrain: pd.DataFrame) -> pd.DataFrame:
    """Hamming distances between every hashed severity image (rows) and pretraining image
    (columns), computed once: the threshold and the matched pairs' distances both read it."""
    left = severity[["severity_image_id", "phash"]].dropna()
    right = pretrain[["pretrain_image_id", "phash"]].dropna()
    distances = (hamming_matrix(list(left["phash"]), list(right["phash"]))
                 if len(left) and len(right) else np.zeros((len(left), len(right)), dtype=np.int32))
    return pd.DataFrame(distances, index=left["severity_image_id"].to_numpy(),
                        columns=right["pretrain_image_id"].to_numpy())


def _phash_pairs(distances: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """Pairs within ``max_distance`` bits."""
    rows, columns = np.nonzero(distances.to_numpy() <= max_distance)
    return pd.DataFrame({"severity_image_id": distances.index.to_numpy()[rows],
                         "pretrain_image_id": distances.columns.to_numpy()[columns]})


def find_matches(severity: pd.DataFrame, pretrain: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """One row per matched (severity, pretraining) pair, with every method that matched it."""
    found = [_equal_pairs(severity, pretrain, key).assign(method=method)
             for method, key in EQUALITY_KEYS.items()]
    distances = _phash_distances(severity, pretrain)
    found.append(_phash_pairs(distances, max_distance).assign(method="phash"))
    pairs = pd.concat(found, ignore_index=True)
    if pairs.empty:
        return pd.DataFrame(columns=schema.LEAKAGE_MATCH_COLUMNS)
    order = {m: i for i, m in enumerate(schema.LEAKAGE_METHODS)}
    methods = (pairs.assign(rank=pairs["method"].map(order))
               .sort_values("rank")
               .groupby(["severity_image_id", "pretrain_image_id"], sort=True)["method"]
               .agg(lambda m: ";".join(dict.fromkeys(m))))
    matches = methods.rename("methods").reset_index()
    matches = matches.merge(severity[["severity_image_id", "severity_split"]].drop_duplicates(),
                            on="severity_image_id", how="left")
    matches = matches.merge(pretrain[["pretrain_image_id", "pretrain_list"]].drop_duplicates("pretrain_image_id"),
                            on="pretrain_image_id", how="left")
    # The distance is worth showing for every pair with both hashes, matched by phash or not.
    row = {image: i for i, image in enumerate(distances.index)}
    column = {image: j for j, image in enumerate(distances.columns)}
    values = distances.to_numpy()
    matches["phash_distance"] = [
        int(values[row[s], column[p]]) if s in row and p in column else None
        for s, p in zip(matches["severity_image_id"], matches["pretrain_image_id"])]
    matches = matches.sort_values(["severity_image_id", "pretrain_image_id"], kind="stable")
    return matches[schema.LEAKAGE_MATCH_COLUMNS].reset_index(drop=True)


def _method_counts(matches: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = {}
    for method in schema.LEAKAGE_METHODS:
        hit = matches[matches["methods"].str.split(";").map(lambda m, method=method: method in m)] \
            if len(matches) else matches
        counts[method] = {"pairs": int(len(hit)),
                          "severity_images": int(hit["severity_image_id"].nunique()),
                          "pretrain_images": int(hit["pretrain_image_id"].nunique())}
    return counts


def audit(split: pd.DataFrame, severity_images: pd.DataFrame, pretrain_images: pd.DataFrame,
          settings: AuditSettings) -> AuditResult:
    """Match the audited severity splits against the pretraining cohort and apply the mode."""
    severity = severity_under_audit(split, severity_images, settings.splits)
    pretrain = pretrain_under_audit(pretrain_images)
    matches = find_matches(severity, pretrain, settings.phash_max_distance)
    in_train = matches[matches["pretrain_list"] == "train"]
    excluded = sorted(set(in_train["pretrain_image_id"])) if settings.mode == "exclude" else []
    audited = pretrain_images[~pretrain_images["image_id"].astype(str).isin(set(excluded))]
    hashed = {name: int(frame["phash"].notna().sum()) for name, frame in
              (("severity", severity), ("pretrain", pretrain))}
    summary = {
        "mode": settings.mode,
        "splits_audited": list(settings.splits),
        "phash_max_distance": settings.phash_max_distance,
        "severity_images_audited": int(len(severity)),
        "severity_images_with_hashes": hashed["severity"],
        "pretrain_images_audited": int(len(pretrain)),
        "pretrain_images_with_hashes": hashed["pretrain"],
        "matched_pairs": int(len(matches)),
        "matched_severity_images": int(matches["severity_image_id"].nunique()),
        "matched_severity_images_by_split": {
            s: int(matches.loc[matches["severity_split"] == s, "severity_image_id"].nunique())
            for s in settings.splits},
        "matched_pretrain_images": int(matches["pretrain_image_id"].nunique()),
        "matched_pretrain_images_in_train_list": int(in_train["pretrain_image_id"].nunique()),
        "by_method": _method_counts(matches),
        "excluded_pretrain_images": len(excluded),
        "pretrain_images_after_audit": int(len(audited)),
        "pretrain_train_images_after_audit": int((audited["list"] == "train").sum()),
        "matches": [{k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                     for k, v in row.items()} for row in matches.to_dict(orient="records")],
        "excluded": excluded,
    }
    return AuditResult(matches, audited.reset_index(drop=True), summary)


def failure_message(result: AuditResult) -> str | None:
    """For ``fail`` mode: what leaked, by method, with the first pairs; None when nothing leaked."""
    summary = result.summary
    if summary["mode"] != "fail" or not summary["matched_pretrain_images_in_train_list"]:
        return None
    train = result.matches[result.matches["pretrain_list"] == "train"]
    methods = ", ".join(f"{m} {c['severity_images']}" for m, c in summary["by_method"].items()
                        if c["pairs"])
    first = ", ".join(f"{r.severity_image_id} ({r.severity_split}) ~ {r.pretrain_image_id} [{r.methods}]"
                      for r in train.head(MESSAGE_EXAMPLES).itertuples())
    return (f"leakage audit: {train['severity_image_id'].nunique()} severity "
            f"{'/'.join(summary['splits_audited'])} images are in the pretraining train list "
            f"({methods}); first: {first}. Set validate.leakage: exclude to drop them from "
            f"pretraining, or report to only record them")
