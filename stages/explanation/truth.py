"""Where the phantom put the disease: the opacified lung zones of a test image, in model-input pixels.

The phantom records each image's opacified zones (``synthetic_truth/ricord_images.csv``,
``opacity_zones``) but not their outlines. The outlines are derived here, deterministically, from
the ``synthetic`` params that drew the cohort: the cohort plan (patient anatomy, study zones, image
settings) is rebuilt without pixels (:func:`plan_ricord`) and the image is drawn again with the
same random streams as ``stages.sources.phantom.ricord.render_ricord_image``, this time asking the
renderer for its six warped zone masks as well. Nothing ``acquire`` or ``ingest`` wrote changes.

The derivation is checked on every image it serves: the redrawn radiograph, quantised as the
phantom stores it, must equal the DICOM's stored pixels exactly, and the plan's zones must equal
the truth table's; otherwise :class:`TruthMismatch` names the file (different params or phantom
code than the ones that drew ``data/raw``).

The masks then take the image's own geometry (:func:`stages.imaging.preprocess.preprocess`:
COVID-Net's crop box, the top crop, the square, the resize; then the area resize to the network's
input), and a pixel counts as inside an opacified zone where the union of those zones' soft masks
is at least 0.5, the phantom's own cut-off for "inside a zone" (``render._opacity_layer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from stages import schema
from stages.common.io import read_table
from stages.imaging.preprocess import preprocess
from stages.model_input import Preprocessing, area_resize
from stages.sources.covidnet_files import read_crop_boxes
from stages.sources.phantom.anatomy import sample_acquisition
from stages.sources.phantom.dicom import stored_pixels
from stages.sources.phantom.ids import STREAM_IMAGE, STREAM_STUDY, accession_number
from stages.sources.phantom.render import render_image
from stages.sources.phantom.ricord import RicordImage, RicordPatient, RicordStudy, plan_ricord

INSIDE = 0.5  # a zone mask's cut-off for "inside the zone" (the phantom's own, render._opacity_layer)


class TruthMismatch(SystemExit):
    """The redrawn phantom does not match the file on disk: the truth cannot be derived."""


@dataclass(frozen=True)
class PlannedImage:
    patient: RicordPatient
    study: RicordStudy
    image: RicordImage


def plan_by_path(cfg: dict) -> dict[str, PlannedImage]:
    """raw_path -> its planned patient, study and image (no pixels drawn)."""
    patients, studies = plan_ricord(cfg)
    return {image.raw_path: PlannedImage(patients[study.patient_index], study, image)
            for study in studies for image in study.images}


def redraw_with_zones(seed: int, planned: PlannedImage, zones: tuple[int, ...] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(display, zone masks (6, rows, columns))``: the streams of ``render_ricord_image``, plus masks.

    ``zones`` (default: the study's) opacifies other zones in the same radiograph: ``()`` draws it
    healthy. Anatomy, exposure, texture and noise come from their own streams, so they stay the same;
    the opacities have one stream per study, drawn zone by zone."""
    patient, study, image = planned.patient, planned.study, planned.image
    zones = tuple(study.zones) if zones is None else tuple(zones)
    image_rng = np.random.default_rng([seed, STREAM_IMAGE, image.patient_index, image.study_index, image.image_index])
    acquisition_rng, texture_rng, noise_rng = image_rng.spawn(3)
    opacity_rng = np.random.default_rng([seed, STREAM_STUDY, image.patient_index, image.study_index, 1])
    texts = ("R", f"ACC{accession_number(study.study_uid)}",
             f"{study.study_date[:4]}-{study.study_date[4:6]}-{study.study_date[6:]}",
             "PORTABLE" if image.view == "AP" else "CHEST")
    display, masks = render_image(patient.anatomy, sample_acquisition(acquisition_rng), zones, opacity_rng,
                                  texture_rng, noise_rng, image.rows, image.columns, texts, with_zones=True)
    return display, np.stack(masks)


def quantised(seed: int, planned: PlannedImage, display: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``stored_pixels`` of a redrawn image, with the phantom's own quantisation stream."""
    image = planned.image
    quantise_rng = np.random.default_rng([seed, STREAM_IMAGE, image.patient_index, image.study_index,
                                          image.image_index, 1])
    return stored_pixels(display, image, quantise_rng)


def check_against_file(seed: int, planned: PlannedImage, display: np.ndarray, path: Path) -> None:
    """The redrawn image, quantised as the phantom stores it, must be the file's stored pixels."""
    expected, _, _ = quantised(seed, planned, display)
    stored = pydicom.dcmread(path).pixel_array
    if stored.shape != expected.shape or not np.array_equal(stored, expected):
        raise TruthMismatch(f"explain: {path}: the phantom redrawn from params.yaml `synthetic` is not this file's "
                            f"pixels; the opacified zones cannot be derived (was data/raw drawn with other params "
                            f"or phantom code? run acquire)")


class PhantomTruth:
    """Opacified-zone masks of severity images of the embedded cohort under ``raw``."""

    def __init__(self, raw: Path, cfg: dict, settings: Preprocessing):
        self.raw, self.seed, self.settings = raw, int(cfg["seed"]), settings
        self.plan = plan_by_path(cfg)
        table = read_table(raw / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv")
        self.zones = {row.raw_path: tuple(int(z) for z in str(row.opacity_zones).split(";") if z != "")
                      for row in table.itertuples()}
        boxes_file = raw / schema.RICORD_CROP_BOXES
        boxes = read_crop_boxes(boxes_file) if boxes_file.exists() else None
        self.boxes = {} if boxes is None else {
            row.image_id: (row.xmin, row.ymin, row.xmax, row.ymax) for row in boxes.itertuples()}

    def _planned(self, raw_path: str) -> PlannedImage:
        if raw_path not in self.plan or raw_path not in self.zones:
            raise TruthMismatch(f"explain: {raw_path} is not an image of the phantom cohort params.yaml describes")
        planned = self.plan[raw_path]
        if tuple(planned.study.zones) != self.zones[raw_path]:
            raise TruthMismatch(f"explain: {raw_path}: planned zones {planned.study.zones} differ from the truth "
                                f"table's {self.zones[raw_path]}")
        return planned

    def zones_mask(self, raw_path: str, image_id: str) -> tuple[np.ndarray, tuple[int, ...]]:
        """``(mask, zones)``: the opacified zones' union in [0, 1] on the stored image's grid, and the zones."""
        planned = self._planned(raw_path)
        display, masks = redraw_with_zones(self.seed, planned)
        check_against_file(self.seed, planned, display, self.raw / raw_path)
        union = masks[list(planned.study.zones)].max(axis=0)
        # The image's own geometry, through the function that made the stored image (uint8: 1/255 steps).
        stored = preprocess(union, self.settings.image_size, self.settings.crop_top_fraction,
                            self.boxes.get(image_id), self.settings.square)
        return stored.astype(np.float32) / 255.0, tuple(planned.study.zones)

    def stored_with_zones(self, raw_path: str, image_id: str, zones: tuple[int, ...] = ()) -> np.ndarray:
        """The stored (uint8) image ``ingest`` would have written had the phantom opacified ``zones`` of
        this radiograph instead of its own (default none: the same radiograph without its disease).

        The counterfactual takes the file's whole path: redrawn, quantised and encoded as the phantom
        encodes it, then decoded and preprocessed by :func:`stages.model_input.prepare`, as ``ingest``
        read the real file. With the image's own zones it is that stored image, bit for bit (tested).
        """
        import tempfile

        from stages.model_input import prepare
        from stages.sources.phantom.dicom import dicom_bytes

        planned = self._planned(raw_path)
        display, _ = redraw_with_zones(self.seed, planned, zones)
        pixels, low, high = quantised(self.seed, planned, display)
        encoded = dicom_bytes(self.seed, planned.patient, planned.study, planned.image, pixels, low, high)
        with tempfile.TemporaryDirectory(prefix="counterfactual-") as folder:
            path = Path(folder) / Path(raw_path).name
            path.write_bytes(encoded)
            _, stored = prepare(path, self.settings, self.boxes.get(image_id))
        return stored


def inside(mask: np.ndarray, size: int) -> np.ndarray:
    """Boolean size x size: where the (area-resized) zone mask is at least :data:`INSIDE`."""
    return area_resize(mask, size) >= INSIDE
