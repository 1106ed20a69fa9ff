"""Shared fixtures: small DICOM files written in the tests, and the shared real data folder."""

from __future__ import annotations

from pathlib import Path

# Loads TensorFlow with the pipeline's own settings (quiet logs, oneDNN off) before any test does.
import stages.training.setup  # noqa: F401

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                window: tuple[float, float] | None = None, view: str | None = "AP",
                rescale: tuple[float, float] | None = None) -> Path:
    """Write an uncompressed single-frame radiograph with the given pixel values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(path), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(path), "series"])
    ds.PatientID = "TEST-0001"
    ds.Modality = "CR"
    if view:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    ds.PixelData = pixels.astype(dtype).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (the ../shared/data folder is absent)")
    return SHARED_DATA
