"""COVID-Net's crop boxes, for the phantom: ``covidnet/ricord_data_set.txt``.

COVID-Net cut about a third of the RICORD 1c radiographs to a box before exporting them to PNG
(375 of the 1,096 names in its ``ricord_data_set.txt`` carry ``xmin ymin xmax ymax``); ingest
applies the same box, and the leakage audit hashes each image inside its box as well, because a
COVIDx copy of it is the cropped image. The phantom writes such a file for its own images so that
both paths run on the embedded cohort.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages import schema
from stages.sources.covidnet_files import ricord_image_id, write_crop_boxes
from stages.sources.phantom.ids import STREAM_CROP_BOX

if TYPE_CHECKING:  # ricord.py writes the boxes through this module
    from stages.sources.phantom.ricord import RicordImage

CROP_MARGIN_RANGE = (0.01, 0.08)  # share of the side a cut edge loses (real boxes cut up to ~10%)
UNCUT_EDGE_PROBABILITY = 0.3  # many real boxes keep an edge whole (xmin or ymin of 0)
Box = tuple[int, int, int, int]


def image_ids(headers: list["RicordImage"]) -> dict[str, str]:
    """raw_path -> COVID-Net image id, numbering each study's images as ingest does: in the order
    of (series UID, instance number, SOP UID) over every file with a readable header."""
    ordered = sorted(headers, key=lambda h: (h.study_uid, h.series_uid, h.instance_number, h.sop_uid))
    ids, index_in_study = {}, {}
    for header in ordered:
        index = index_in_study.get(header.study_uid, 0)
        index_in_study[header.study_uid] = index + 1
        ids[header.raw_path] = ricord_image_id(header.patient_id, header.study_uid, index)
    return ids


def plan_boxes(cfg: dict, images: list["RicordImage"]) -> dict[str, Box | None]:
    """raw_path -> crop box (or None) for each planned image; ``synthetic.crop_box_fraction`` of
    them get one, each edge cut by CROP_MARGIN_RANGE of its side or kept whole."""
    seed = int(cfg["seed"])
    fraction = float(cfg.get("crop_box_fraction", 0.0))
    boxes: dict[str, Box | None] = {}
    for image in images:
        rng = np.random.default_rng([seed, STREAM_CROP_BOX, image.patient_index, image.study_index,
                                     image.image_index])
        if rng.random() >= fraction:
            boxes[image.raw_path] = None
            continue
        cuts = [0 if rng.random() < UNCUT_EDGE_PROBABILITY else
                int(round(side * rng.uniform(*CROP_MARGIN_RANGE)))
                for side in (image.columns, image.rows, image.columns, image.rows)]
        boxes[image.raw_path] = (cuts[0], cuts[1], image.columns - cuts[2], image.rows - cuts[3])
    return boxes


def write_boxes(out_dir: Path, boxes: dict[str, Box | None], ids: dict[str, str]) -> None:
    """Write ``covidnet/ricord_data_set.txt`` (every image's name, its box when it has one)."""
    write_crop_boxes(out_dir / schema.RICORD_CROP_BOXES, {ids[path]: box for path, box in boxes.items()})
