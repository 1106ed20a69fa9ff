"""The phantom's readers: who grades which study how, and the MD.ai export that records it.

Each study gets two or three readers from a small pool. A reader's airspace grade follows the
study's number of opacified zones, sometimes off by one zone (``reader_zone_noise``); a few
studies are marked invalid or left ungraded, as in RICORD.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages import schema
from stages.sources import mdai
from stages.sources.phantom.anatomy import N_ZONES
from stages.sources.phantom.ids import STREAM_READERS, digest, short_id

if TYPE_CHECKING:  # the cohort's plan type; ricord imports this module to grade its studies
    from stages.sources.phantom.ricord import RicordStudy

READER_POOL_SIZE = 7
READERS_PER_STUDY = (2, 3)
CLASSIFICATION_PROBABILITIES = (0.62, 0.18, 0.10, 0.10)  # order of schema.CLASSIFICATION_LABELS
ANNOTATION_START = datetime(2020, 11, 2, 9, 0, 0)


def _pick_studies(seed: int, n_studies: int, fraction: float, salt: int,
                  exclude: set[int]) -> set[int]:
    """Choose round(fraction * n_studies) study positions, outside ``exclude``."""
    count = int(round(float(fraction) * n_studies))
    candidates = [index for index in range(n_studies) if index not in exclude]
    if count > len(candidates):
        raise ValueError(f"cannot mark {count} of {n_studies} studies (fraction {fraction})")
    rng = np.random.default_rng([seed, STREAM_READERS, salt])
    return {int(index) for index in rng.choice(candidates, size=count, replace=False)} if count else set()


def _airspace_label(zone_count: int) -> str:
    """Reader grade from a zone count: 1-2 Mild, 3-4 Moderate, 5-6 Severe (RICORD's labels)."""
    if zone_count <= 2:
        return schema.MILD
    return schema.MODERATE if zone_count <= 4 else schema.SEVERE


def reader_labels(cfg: dict, studies: list[RicordStudy]) -> list[tuple[RicordStudy, str, str, str]]:
    """Plant every reader's labels: (study, reader_id, group name, label name) in file order."""
    seed = int(cfg["seed"])
    readers = [short_id("U", 6, seed, "reader", index) for index in range(READER_POOL_SIZE)]
    invalid = _pick_studies(seed, len(studies), cfg["invalid_study_fraction"], 1, set())
    ungraded = _pick_studies(seed, len(studies), cfg["ungraded_study_fraction"], 2, invalid)
    noise = float(cfg["reader_zone_noise"])
    planted = []
    for position, study in enumerate(studies):
        rng = np.random.default_rng([seed, STREAM_READERS, 100, position])
        n_readers = int(rng.integers(READERS_PER_STUDY[0], READERS_PER_STUDY[1] + 1))
        chosen = [readers[index] for index in rng.choice(READER_POOL_SIZE, n_readers, replace=False)]
        # Studies marked invalid: at least one reader, sometimes all, says "Invalid Study".
        n_invalid = int(rng.integers(1, n_readers + 1)) if position in invalid else 0
        for reader_number, reader in enumerate(chosen):
            labels = []
            if position not in ungraded:
                if reader_number < n_invalid:
                    labels.append((schema.AIRSPACE_GROUP, schema.INVALID))
                else:
                    count = len(study.zones)
                    if rng.random() < noise:  # a miscount by one zone, either way
                        count = int(np.clip(count + rng.choice((-1, 1)), 1, N_ZONES))
                    labels.append((schema.AIRSPACE_GROUP, _airspace_label(count)))
            classification = schema.CLASSIFICATION_LABELS[
                int(rng.choice(len(schema.CLASSIFICATION_LABELS), p=CLASSIFICATION_PROBABILITIES))
            ]
            labels.append((schema.CLASSIFICATION_GROUP, classification))
            if rng.random() < 0.5:
                labels.reverse()  # readers do not always grade airspace first
            planted.extend((study, reader, group, name) for group, name in labels)
    return planted


def write_mdai_export(path: Path, cfg: dict, studies: list[RicordStudy],
                      planted: list[tuple[RicordStudy, str, str, str]]) -> None:
    """Write the planted labels as one MD.ai export: both label groups, one dataset."""
    seed = int(cfg["seed"])
    label_ids: dict[tuple[str, str], str] = {}
    groups = []
    for group_name, names in ((schema.AIRSPACE_GROUP, schema.AIRSPACE_LABELS),
                              (schema.CLASSIFICATION_GROUP, schema.CLASSIFICATION_LABELS)):
        labels = []
        for name in names:
            label_id = short_id("L", 6, seed, "label", group_name, name)
            label_ids[(group_name, name)] = label_id
            labels.append(mdai.study_label(label_id, name, f"#{digest(label_id).hex()[:6]}"))
        groups.append(mdai.label_group(short_id("G", 6, seed, "group", group_name), group_name, labels))
    annotations = []
    for number, (study, reader, group_name, name) in enumerate(planted, start=1):
        created = (ANNOTATION_START + timedelta(minutes=7 * number + study.number % 5)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        annotations.append(mdai.study_annotation(short_id("A", 6, seed, "annotation", number), number,
                                                 study.study_uid, label_ids[(group_name, name)],
                                                 reader, created))
    dataset = mdai.dataset(short_id("D", 6, seed, "dataset"), "MIDRC-RICORD-1C (synthetic phantom)",
                           [(study.study_uid, study.number) for study in studies], annotations)
    mdai.write_export(path, short_id("P", 8, seed, "project"),
                      "RSNA RICORD 1c airspace grading (synthetic phantom)",
                      "Synthetic stand-in for the RICORD 1c MD.ai export; no patient data.",
                      groups, [dataset])
