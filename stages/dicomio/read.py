"""Decode a radiograph (DICOM, PNG or JPEG) into a float display image in [0, 1].

Convention: larger value = more attenuation = brighter, i.e. MONOCHROME2 display. DICOM pixels go
through the Modality LUT (rescale), then the VOI LUT or window when the file carries one (else a
min-max stretch), and MONOCHROME1 is inverted, so every source looks the same to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

DICOM_SUFFIXES = {".dcm", ".dicom", ""}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg"}


class UnreadableImage(ValueError):
    """A file that cannot be decoded into a radiograph; the message names the file and why."""


@dataclass(frozen=True)
class DicomHeader:
    """The non-identifying header fields the image table keeps (never names or birth dates)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    view: str
    photometric: str
    bits_stored: int
    rows: int
    columns: int
    transfer_syntax: str
    instance_number: int


def _view(ds: pydicom.Dataset) -> str:
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    return view if view in ("AP", "PA") else "UNKNOWN"


def read_header(ds: pydicom.Dataset) -> DicomHeader:
    return DicomHeader(
        patient_id=str(ds.get("PatientID", "")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        modality=str(ds.get("Modality", "")),
        view=_view(ds),
        photometric=str(ds.get("PhotometricInterpretation", "")),
        bits_stored=int(ds.get("BitsStored", 0) or 0),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        transfer_syntax=str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")),
        instance_number=int(ds.get("InstanceNumber", 0) or 0),
    )


def _stretch(values: np.ndarray, path: Path) -> np.ndarray:
    values = values.astype(np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if not np.isfinite(low) or not np.isfinite(high):
        raise UnreadableImage(f"{path}: pixel data holds non-finite values")
    if high <= low:
        raise UnreadableImage(f"{path}: blank image (every pixel is {low:g})")
    return ((values - low) / (high - low)).astype(np.float32)


def dicom_to_display(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixel data -> float32 [0, 1], MONOCHROME2 convention."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(f"{path}: unsupported PhotometricInterpretation {photometric!r}")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for truncated or undecodable data
        raise UnreadableImage(f"{path}: cannot decode pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise UnreadableImage(f"{path}: expected one 2-D frame, got pixel array of shape {pixels.shape}")
    values = apply_modality_lut(pixels, ds)
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    if has_voi:
        # apply_voi_lut keeps MONOCHROME1 polarity; the stretch below maps the window to [0, 1].
        values = apply_voi_lut(values, ds, index=0)
    display = _stretch(values, path)
    if photometric == "MONOCHROME1":
        display = 1.0 - display  # MONOCHROME1 stores air bright; flip to the common convention
    return display


def read_dicom(path: str | Path) -> tuple[np.ndarray, DicomHeader]:
    """Read one DICOM radiograph; raise UnreadableImage naming the file on any problem."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise UnreadableImage(f"{path}: not a DICOM file ({err})") from None
    except Exception as err:
        raise UnreadableImage(f"{path}: cannot parse DICOM ({type(err).__name__}: {err})") from None
    if "PixelData" not in ds:
        raise UnreadableImage(f"{path}: DICOM file has no pixel data")
    return dicom_to_display(ds, path), read_header(ds)


def read_raster(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG radiograph as grayscale float32 [0, 1] (8 or 16 bit)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I"):
                values = np.asarray(image, dtype=np.float64)
            else:
                values = np.asarray(image.convert("L"), dtype=np.float64)
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: file not found") from None
    except Exception as err:
        raise UnreadableImage(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
    return _stretch(values, path)


def read_any(path: str | Path) -> np.ndarray:
    """Decode any supported radiograph to a display image, choosing the reader by content."""
    path = Path(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_raster(path)
    return read_dicom(path)[0]
