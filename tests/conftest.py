"""Shared fixtures: small DICOM files written in the tests, and the shared real data folder."""

from __future__ import annotations

from pathlib import Path

# Loads TensorFlow with the pipeline's own settings (quiet logs, exact batch norm) before any test does.
import stages.training.setup  # noqa: F401

import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(session, config, items):
    # Longest first: the files with tests marked slow (the clean reproduction, about 10 minutes, is
    # the longest of all) start before the many short ones, which then fill both workers at the end.
    items.sort(key=lambda item: (item.get_closest_marker("reproduction") is None,
                                 item.get_closest_marker("slow") is None))


def cr_dataset(pixels: np.ndarray, bits_stored: int = 12, photometric: str = "MONOCHROME2",
               signed: bool = False, transfer_syntax: str = ExplicitVRLittleEndian,
               uid_seed: str | None = None, patient_id: str = "TEST-0001") -> FileDataset:
    """An uncompressed single-frame CR dataset holding ``pixels`` (UIDs derived from ``uid_seed``)."""
    def uid(*parts: str) -> str:
        return generate_uid(entropy_srcs=[uid_seed, *parts]) if uid_seed is not None else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(uid_seed or "fixture", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.PatientID = patient_id
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if bits_stored <= 8:
        dtype = np.int8 if signed else np.uint8
    else:
        dtype = np.int16 if signed else np.uint16
    ds.PixelData = pixels.astype(dtype).tobytes()
    return ds


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                window: tuple[float, float] | None = None, view: str | None = "AP",
                rescale: tuple[float, float] | None = None) -> Path:
    """Write an uncompressed single-frame radiograph with the given pixel values."""
    ds = cr_dataset(pixels, bits_stored, photometric, uid_seed=str(path))
    if view:
        ds.ViewPosition = view
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (the ../shared/data folder is absent)")
    return SHARED_DATA


# --- the real RICORD 1c index and COVID-Net's lists (tests skip without them) -----------------------

@pytest.fixture(scope="session")
def real_index() -> pd.DataFrame:
    """IDC's series index of RICORD 1c (the PyPI package idc-index-data, read with pyarrow)."""
    idc_index_data = pytest.importorskip("idc_index_data", reason="idc-index-data (test extra) is not installed")
    pytest.importorskip("pyarrow", reason="pyarrow (test extra) is needed to read idc_index.parquet")
    index = pd.read_parquet(idc_index_data.IDC_INDEX_PARQUET_FILEPATH,
                            filters=[("collection_id", "==", "midrc_ricord_1c")])
    return index.reset_index(drop=True)


@pytest.fixture(scope="session")
def usable_names(shared_covidnet) -> set[str]:
    """COVID-Net's 1,096 usable RICORD image names (ricord_data_set.txt)."""
    path = shared_covidnet / "ricord-covidnet" / "ricord_data_set.txt"
    return {line.split()[0].removesuffix(".png") for line in path.read_text().splitlines() if line.strip()}


@pytest.fixture(scope="session")
def listed_names(shared_covidnet) -> set[str]:
    """The 909 image names of COVID-Net's COVIDxSev train and test lists."""
    folder = shared_covidnet / "ricord-covidnet"
    return {line.split()[1].removesuffix(".png") for name in ("train", "test")
            for line in (folder / f"{name}_COVIDxSev.txt").read_text().splitlines() if line.strip()}



@pytest.fixture(scope="session")
def shared_covidnet() -> Path:
    """``SHARED_DATA`` with COVID-Net's RICORD files and the COVIDx lists (module-scoped fixtures
    can use it), or a skip."""
    if not (SHARED_DATA / "ricord-covidnet").is_dir() or not (SHARED_DATA / "covidx").is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the pinned COVID-Net files are served from there")
    return SHARED_DATA

def main_defaults(module, monkeypatch) -> dict:
    """What a stage's ``main([])`` passes to ``stage_arguments``: its description and its default
    paths (``stage_arguments`` replaced by a recorder that stops the stage)."""
    seen: dict = {}

    def capture(description, argv, **defaults):
        seen.update(description=description, **defaults)
        raise SystemExit(0)

    monkeypatch.setattr(module, "stage_arguments", capture)
    with pytest.raises(SystemExit):
        module.main([])
    monkeypatch.undo()
    return seen
