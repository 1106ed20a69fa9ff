"""Leakage audit: severity images that the backbone already saw in pretraining, and severity
images that appear in more than one split.

COVID-Net CXR-S pretrains on COVIDx, which includes RICORD: 91 of the 150 published CXR-S test
images are in ``train_COVIDx8B.txt`` by file name. A severity image and a pretraining image count
as one when any method of :data:`stages.schema.LEAKAGE_METHODS` matches them:

* ``patient_id``: the same patient (RICORD's ``MIDRC-RICORD-1C-`` prefix ignored, as COVIDx drops it);
* ``filename``: the same file name stem (COVID-Net names RICORD images ``MIDRC-RICORD-1C-...-{i}``);
* ``pixel_sha256``: the same decoded 8-bit pixels, whatever the file format;
* ``phash``: perceptual hashes within ``validate.phash_max_distance`` bits (a resized, re-encoded
  or re-windowed copy);
* ``phash_cropped``: the severity image cut to COVID-Net's crop box, against the other whole image
  (COVIDx's RICORD PNGs are cropped by those boxes, so the whole image's hash misses them);
* ``phash_mirrored``: the severity image mirrored left-right (a flipped copy).

Every severity image is matched; ``validate.leakage_splits`` (default test and val) names the splits
whose matches are leakage, and ``validate.leakage`` what such a match does: ``fail`` stops the
pipeline, ``exclude`` (default) drops the matched images from the pretraining *train* list (the
audited table the pretraining stage reads), ``report`` only records them. Matches of severity
train images and matches in COVIDx's test list (which scores the backbone, it does not train it)
are recorded, never excluded. The severity cohort is also audited against itself: a train image
matching a val/test image by patient or content is recorded, and fails the stage in ``fail`` mode.
Every audited image must carry every hash: a missing one is an error, not a skipped image.
When the synthetic source planted disguised copies, the audit scores itself against that truth
(:func:`score_planted`), after matching and without using it to match.
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
DEFAULT_PHASH_MAX_DISTANCE = 24  # measured: docs/leakage_threshold.md
RICORD_PREFIX = "MIDRC-RICORD-1C-"
MESSAGE_EXAMPLES = 5
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".gif", ".tif", ".tiff")
# Methods that match on equal keys (the others match hashes within a distance).
EQUALITY_KEYS = {"patient_id": "patient_key", "filename": "name_key", "pixel_sha256": "pixel_sha256"}
# Hash methods: the severity side's hash column, compared with the other side's whole-image phash.
HASH_METHODS = {"phash": "phash", "phash_cropped": "phash_cropped", "phash_mirrored": "phash_mirrored"}
PRETRAIN_HASH_COLUMNS = ("pixel_sha256", "phash")
PLANTED_KINDS_ORDER = ("copy", "rescaled", "rewindowed", "cropped", "flipped")


class MissingHashes(ValueError):
    """Audited images without a hash: the audit cannot vouch for them."""


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
    cross_split: pd.DataFrame | None = None  # severity val/test images matching a train image


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
    """Strings with blanks as None."""
    return column.map(lambda v: str(v).strip() if isinstance(v, str) and str(v).strip() else None)


def require_hashes(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    """Raise :class:`MissingHashes` naming the table, the column and the first images without it."""
    problems = []
    for column in columns:
        values = _text(frame[column]) if column in frame.columns else pd.Series([None] * len(frame))
        missing = frame["image_id"].astype(str)[values.isna().to_numpy()].tolist()
        if missing:
            problems.append(f"{column} missing for {len(missing)} image(s), first: "
                            f"{', '.join(missing[:MESSAGE_EXAMPLES])}")
    if problems:
        raise MissingHashes(f"leakage audit: {table}: " + "; ".join(problems)
                            + " (re-run ingest, which hashes every image it decodes)")


def _keyed(frame: pd.DataFrame, names: pd.Series, group: pd.Series, hashes: tuple[str, ...]) -> pd.DataFrame:
    """One side of the audit: ids, their split or list (``group``), the keys and the hashes."""
    keyed = pd.DataFrame({
        "id": frame["image_id"].astype(str).to_numpy(),
        "group": group.astype(str).to_numpy(),
        "patient_key": frame["patient_id"].map(patient_key).to_numpy(),
        "name_key": names.map(name_key).to_numpy(),
    })
    for column in hashes:
        keyed[column] = _text(frame[column]).to_numpy()
    return keyed


def severity_under_audit(split: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Every split severity image with its split, keys and hashes (missing hashes are an error)."""
    chosen = split[["image_id", "patient_id", "split"]]
    hashes = images.reindex(columns=["image_id", *schema.SEVERITY_HASH_COLUMNS]).drop_duplicates("image_id")
    frame = chosen.merge(hashes, on="image_id", how="left", validate="one_to_one")
    require_hashes(frame, schema.SEVERITY_HASH_COLUMNS, "severity_images.csv")
    return _keyed(frame, frame["image_id"], frame["split"], schema.SEVERITY_HASH_COLUMNS)


def pretrain_under_audit(pretrain: pd.DataFrame) -> pd.DataFrame:
    frame = pretrain.reindex(columns=["image_id", "patient_id", "filename", "list", *PRETRAIN_HASH_COLUMNS])
    require_hashes(frame, PRETRAIN_HASH_COLUMNS, "pretrain_images.csv")
    return _keyed(frame, frame["filename"], frame["list"], PRETRAIN_HASH_COLUMNS)


def _equal_pairs(left: pd.DataFrame, right: pd.DataFrame, key: str) -> pd.DataFrame:
    pairs = left[["id", key]].dropna().merge(right[["id", key]].dropna(), on=key, suffixes=("_left", "_right"))
    return pairs.rename(columns={"id_left": "left", "id_right": "right"})[["left", "right"]]


def _distances(left: pd.DataFrame, column: str, right: pd.DataFrame) -> np.ndarray:
    """Hamming distances, shape (len(left), len(right)): ``left[column]`` against ``right.phash``."""
    if not len(left) or not len(right):
        return np.zeros((len(left), len(right)), dtype=np.int32)
    return hamming_matrix(list(left[column]), list(right["phash"]))


def hash_distances(left: pd.DataFrame, right: pd.DataFrame) -> dict[str, np.ndarray]:
    """Hash method -> distances (len(left), len(right)) of the left side's hash to the right's phash;
    computed once per audit, read by the matching and by :func:`nearest_unmatched`."""
    return {method: _distances(left, column, right) for method, column in HASH_METHODS.items()
            if column in left.columns}


def find_pairs(left: pd.DataFrame, right: pd.DataFrame, max_distance: int,
               methods: tuple[str, ...] = schema.LEAKAGE_METHODS,
               distances_by_method: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per matched (left, right) pair: ``left``, ``left_group``, ``right``, ``right_group``,
    ``methods`` (every method that matched, ';'-joined in :data:`schema.LEAKAGE_METHODS` order) and
    ``phash_distance`` (the smallest over the left side's hashes), sorted by the two ids."""
    found = [_equal_pairs(left, right, key).assign(method=method)
             for method, key in EQUALITY_KEYS.items() if method in methods]
    if distances_by_method is None:
        distances_by_method = hash_distances(left, right)
    nearest = np.full((len(left), len(right)), np.iinfo(np.int32).max, dtype=np.int64)
    for method, distances in distances_by_method.items():
        column = HASH_METHODS[method]
        nearest = np.minimum(nearest, distances)
        if method in methods:
            within = distances <= max_distance
            if column != "phash":  # a variant equal to the whole image (no crop box) adds nothing
                within &= (left[column] != left["phash"]).to_numpy()[:, None]
            rows, columns = np.nonzero(within)
            found.append(pd.DataFrame({"left": left["id"].to_numpy()[rows],
                                       "right": right["id"].to_numpy()[columns], "method": method}))
    columns = ["left", "left_group", "right", "right_group", "methods", "phash_distance"]
    pairs = pd.concat(found, ignore_index=True)
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    order = {m: i for i, m in enumerate(schema.LEAKAGE_METHODS)}
    matched = (pairs.assign(rank=pairs["method"].map(order)).sort_values("rank", kind="stable")
               .groupby(["left", "right"], sort=True)["method"]
               .agg(lambda m: ";".join(dict.fromkeys(m))).rename("methods").reset_index())
    row = {image: i for i, image in enumerate(left["id"])}
    column = {image: j for j, image in enumerate(right["id"])}
    matched["phash_distance"] = [int(nearest[row[a], column[b]]) if len(nearest) and len(nearest[0]) else None
                                 for a, b in zip(matched["left"], matched["right"])]
    matched["left_group"] = matched["left"].map(dict(zip(left["id"], left["group"])))
    matched["right_group"] = matched["right"].map(dict(zip(right["id"], right["group"])))
    return matched.sort_values(["left", "right"], kind="stable")[columns].reset_index(drop=True)


def nearest_unmatched(severity: pd.DataFrame, pretrain: pd.DataFrame, matches: pd.DataFrame,
                      distances_by_method: dict[str, np.ndarray]) -> int | None:
    """The smallest perceptual-hash distance (over the severity image's hashes) between a severity
    and a pretraining image that did not match: how much room the threshold has on this data."""
    if not len(severity) or not len(pretrain):
        return None
    nearest = np.minimum.reduce(list(distances_by_method.values()))
    row = {image: i for i, image in enumerate(severity["id"])}
    column = {image: j for j, image in enumerate(pretrain["id"])}
    masked = nearest.astype(np.int64)
    for s, p in zip(matches["severity_image_id"], matches["pretrain_image_id"]):
        masked[row[s], column[p]] = np.iinfo(np.int64).max
    smallest = masked.min()
    return None if smallest == np.iinfo(np.int64).max else int(smallest)


def find_matches(severity: pd.DataFrame, pretrain: pd.DataFrame, max_distance: int,
                 distances_by_method: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Severity against pretraining: rows in :data:`schema.LEAKAGE_MATCH_COLUMNS`."""
    pairs = find_pairs(severity, pretrain, max_distance, distances_by_method=distances_by_method)
    return pairs.rename(columns={"left": "severity_image_id", "left_group": "severity_split",
                                 "right": "pretrain_image_id", "right_group": "pretrain_list"}
                        )[schema.LEAKAGE_MATCH_COLUMNS]


def find_cross_split(severity: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """Severity val/test images matching a severity train image by patient or content (file names
    are the image ids, unique by construction): rows in :data:`schema.CROSS_SPLIT_MATCH_COLUMNS`."""
    held_out = severity[severity["group"] != "train"]
    train = severity[severity["group"] == "train"]
    methods = tuple(m for m in schema.LEAKAGE_METHODS if m != "filename")
    pairs = find_pairs(held_out, train, max_distance, methods)
    return pairs.rename(columns={"left": "image_id", "left_group": "split", "right": "train_image_id"}
                        )[schema.CROSS_SPLIT_MATCH_COLUMNS]


def _method_counts(matches: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = {}
    for method in schema.LEAKAGE_METHODS:
        hit = matches[matches["methods"].str.split(";").map(lambda m, method=method: method in m)] \
            if len(matches) else matches
        counts[method] = {"pairs": int(len(hit)),
                          "severity_images": int(hit["severity_image_id"].nunique()),
                          "pretrain_images": int(hit["pretrain_image_id"].nunique())}
    return counts


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def audit(split: pd.DataFrame, severity_images: pd.DataFrame, pretrain_images: pd.DataFrame,
          settings: AuditSettings) -> AuditResult:
    """Match every severity image against the pretraining cohort and against the other splits,
    and apply the mode to the matches of the guarded splits."""
    severity = severity_under_audit(split, severity_images)
    pretrain = pretrain_under_audit(pretrain_images)
    distances = hash_distances(severity, pretrain)
    matches = find_matches(severity, pretrain, settings.phash_max_distance, distances)
    guarded = matches[matches["severity_split"].isin(settings.splits)]
    in_train = guarded[guarded["pretrain_list"] == "train"]
    excluded = sorted(set(in_train["pretrain_image_id"])) if settings.mode == "exclude" else []
    audited = pretrain_images[~pretrain_images["image_id"].astype(str).isin(set(excluded))]
    cross_split = find_cross_split(severity, settings.phash_max_distance)
    summary = {
        "mode": settings.mode,
        "splits_guarded": list(settings.splits),
        "phash_max_distance": settings.phash_max_distance,
        "severity_images_audited": int(len(severity)),
        "severity_images_audited_by_split": {s: int((severity["group"] == s).sum()) for s in schema.SPLITS},
        "pretrain_images_audited": int(len(pretrain)),
        "matched_pairs": int(len(matches)),
        "nearest_unmatched_phash_distance": nearest_unmatched(severity, pretrain, matches, distances),
        "matched_severity_images": int(matches["severity_image_id"].nunique()),
        "matched_severity_images_by_split": {
            s: int(matches.loc[matches["severity_split"] == s, "severity_image_id"].nunique())
            for s in schema.SPLITS},
        "matched_guarded_severity_images": int(guarded["severity_image_id"].nunique()),
        "matched_pretrain_images": int(matches["pretrain_image_id"].nunique()),
        "matched_guarded_pretrain_images_in_train_list": int(in_train["pretrain_image_id"].nunique()),
        "by_method": _method_counts(matches),
        "excluded_pretrain_images": len(excluded),
        "pretrain_images_after_audit": int(len(audited)),
        "pretrain_train_images_after_audit": int((audited["list"] == "train").sum()),
        "matches": _records(matches),
        "excluded": excluded,
        "cross_split_pairs": int(len(cross_split)),
        "cross_split_matches": _records(cross_split),
    }
    return AuditResult(matches, audited.reset_index(drop=True), summary, cross_split)


def score_planted(planted: pd.DataFrame, matches: pd.DataFrame, severity_images: pd.DataFrame,
                  pretrain_images: pd.DataFrame) -> dict[str, Any]:
    """How many of the copies the synthetic source planted (``synthetic_truth/planted_leaks.csv``:
    ``filename`` in COVIDx, ``source_raw_path`` of the severity DICOM, ``kind``) the audit matched
    to their source image, by kind. Only scores: the audit never reads the truth to match."""
    severity_id = dict(zip(severity_images["raw_path"].astype(str), severity_images["image_id"].astype(str)))
    pretrain_id = dict(zip(pretrain_images["filename"].astype(str), pretrain_images["image_id"].astype(str)))
    methods = {(s, p): m for s, p, m in zip(matches["severity_image_id"], matches["pretrain_image_id"],
                                            matches["methods"])}
    kinds: dict[str, dict[str, int]] = {}
    missed = []
    for plant in planted.itertuples():
        pair = (severity_id.get(str(plant.source_raw_path)), pretrain_id.get(str(plant.filename)))
        found = pair in methods
        counts = kinds.setdefault(str(plant.kind), {"planted": 0, "found": 0})
        counts["planted"] += 1
        counts["found"] += int(found)
        if not found:
            missed.append({"filename": str(plant.filename), "kind": str(plant.kind),
                           "severity_image_id": pair[0], "pretrain_image_id": pair[1]})
    order = {k: i for i, k in enumerate(PLANTED_KINDS_ORDER)}
    by_kind = dict(sorted(kinds.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    return {"planted": int(len(planted)), "found": int(sum(k["found"] for k in kinds.values())),
            "by_kind": by_kind, "missed": missed}


def failure_message(result: AuditResult) -> str | None:
    """For ``fail`` mode: what leaked, by method, with the first pairs; None when nothing leaked."""
    summary = result.summary
    if summary["mode"] != "fail":
        return None
    guarded = result.matches[result.matches["severity_split"].isin(summary["splits_guarded"])]
    train = guarded[guarded["pretrain_list"] == "train"]
    messages = []
    if len(train):
        # Per method, the leaked images only (summary["by_method"] also counts train-split matches).
        by_method = _method_counts(train)
        methods = ", ".join(f"{m} {c['severity_images']}" for m, c in by_method.items() if c["pairs"])
        first = ", ".join(f"{r.severity_image_id} ({r.severity_split}) ~ {r.pretrain_image_id} [{r.methods}]"
                          for r in train.head(MESSAGE_EXAMPLES).itertuples())
        messages.append(
            f"leakage audit: {train['severity_image_id'].nunique()} severity "
            f"{'/'.join(summary['splits_guarded'])} images are in the pretraining train list "
            f"({methods}); first: {first}. Set validate.leakage: exclude to drop them from "
            f"pretraining, or report to only record them")
    cross = result.cross_split
    if cross is not None and len(cross):
        first = ", ".join(f"{r.image_id} ({r.split}) ~ {r.train_image_id} [{r.methods}]"
                          for r in cross.head(MESSAGE_EXAMPLES).itertuples())
        messages.append(f"leakage audit: {cross['image_id'].nunique()} severity val/test images match a "
                        f"severity train image; first: {first}")
    return "; ".join(messages) or None
