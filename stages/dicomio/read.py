"""Decode a radiograph (DICOM, PNG or JPEG) into a float display image in [0, 1].

Convention: larger value = more attenuation = brighter, i.e. MONOCHROME2 display. DICOM pixels go
through the Modality LUT (rescale), then the VOI LUT or window when the file carries one (else a
min-max stretch), and MONOCHROME1 is inverted, so every source looks the same to the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    UID,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from stages import schema

DICOM_SUFFIXES = {".dcm", ".dicom", ""}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg"}

# JPEG (ISO 10918) and JPEG-LS codestreams end with an EOI marker (FF D9). libjpeg decodes a frame
# cut short without any error, filling the missing rows, so such a frame is caught by its missing
# marker instead. Entropy-coded data never holds FF D9 (every FF there is followed by 00 or RSTn),
# so the marker in the frame's last bytes (which may hold padding) means the codestream is whole.
_JPEG_EOI_SYNTAXES = {
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
}
_EOI_MARKER = b"\xff\xd9"
_EOI_SEARCH_BYTES = 16

# PIL modes that hold grey values wider than 8 bits; they are read as they are.
_WIDE_GREY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


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
    series_number: str  # as in the header ("" when absent); names COVID-Net's series folders
    series_description: str
    acquisition_number: int | None  # None when absent or not a number
    patient_age_years: int | None  # whole years, 90 = 90 or older; None when absent or malformed
    patient_sex: str  # M, F, O, or "" when absent or another value


LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")


def _view(ds: pydicom.Dataset) -> str:
    """AP, PA, LATERAL (any lateral decubitus or lateral code) or UNKNOWN (absent or other)."""
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view in ("AP", "PA"):
        return view
    return "LATERAL" if view in LATERAL_VIEWS else "UNKNOWN"


# PatientAge has the Age String VR: exactly three digits and a unit (Days, Weeks, Months, Years).
_AGE_STRING = re.compile(r"^([0-9]{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1, "W": 7}


def age_string_to_years(value: object) -> int | None:
    """Whole years (floored) from a DICOM Age String such as ``045Y``; None when absent or malformed.

    90 or more gives 90, meaning "90 or older": HIPAA Safe Harbor aggregates ages over 89
    (``schema.AGE_CAP_YEARS``). A malformed age leaves the image in, with its age unknown. Days
    and weeks convert with the mean Gregorian year (1461 days per 4 years).
    """
    if not isinstance(value, str):
        return None  # absent, or multi-valued (a single age is all AS allows here)
    match = _AGE_STRING.match(value.strip())
    if match is None:
        return None
    number, unit = int(match.group(1)), match.group(2)
    if unit == "Y":
        years = number
    elif unit == "M":
        years = number // 12
    else:
        years = number * _DAYS_PER_UNIT[unit] * 4 // 1461
    return min(years, schema.AGE_CAP_YEARS)


def sex_code(value: object) -> str:
    """M, F or O from DICOM PatientSex; "" when absent or any other value."""
    code = value.strip().upper() if isinstance(value, str) else ""
    return code if code in schema.PATIENT_SEXES else ""


def _integer_or_none(value: object) -> int | None:
    """An IS value as an int; None when absent, empty or not a number."""
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() else None
    except ValueError:
        return None


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
        series_number=str(ds.get("SeriesNumber", "") or "").strip(),
        series_description=str(ds.get("SeriesDescription", "") or "").strip(),
        acquisition_number=_integer_or_none(ds.get("AcquisitionNumber")),
        patient_age_years=age_string_to_years(ds.get("PatientAge")),
        patient_sex=sex_code(ds.get("PatientSex")),
    )


def _stretch(values: np.ndarray, path: Path) -> np.ndarray:
    values = values.astype(np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if not np.isfinite(low) or not np.isfinite(high):
        raise UnreadableImage(f"{path}: pixel data holds non-finite values")
    if high <= low:
        raise UnreadableImage(f"{path}: blank image (every pixel is {low:g})")
    return ((values - low) / (high - low)).astype(np.float32)


def _transfer_syntax(ds: pydicom.Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    value = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    return UID(str(value)) if value else None


def _describe(uid: UID) -> str:
    """'JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)', or the bare UID."""
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)


def _check_decodable(ds: pydicom.Dataset, path: Path) -> None:
    """Fail clearly, before decoding, when no installed plugin can decode the pixel data."""
    uid = _transfer_syntax(ds)
    if uid is None:
        return  # pydicom's own error, raised on decoding, says what is missing
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise UnreadableImage(
            f"{path}: no pixel data decoder exists for transfer syntax {_describe(uid)}"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise UnreadableImage(
            f"{path}: no decoder plugin is available for transfer syntax {_describe(uid)} (missing: {missing})"
        )
    if uid in _JPEG_EOI_SYNTAXES:
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            frame = next(generate_frames(ds.PixelData, number_of_frames=frames))
        except Exception as err:
            raise UnreadableImage(
                f"{path}: cannot read the encapsulated {_describe(uid)} pixel data ({type(err).__name__}: {err})"
            ) from None
        if _EOI_MARKER not in frame[-_EOI_SEARCH_BYTES:]:
            raise UnreadableImage(
                f"{path}: {_describe(uid)} frame is truncated (no end-of-image marker, {len(frame)} bytes)"
            )


def _has_values(ds: pydicom.Dataset, keyword: str) -> bool:
    """The element is present and holds a value (an empty Window Center is as good as none)."""
    value = ds.get(keyword)
    if value is None or isinstance(value, (str, bytes)) and not value.strip():
        return False
    try:
        return len(value) > 0  # a sequence or a multi-valued element
    except TypeError:
        return True  # a single number


def dicom_to_display(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixel data -> float32 [0, 1], MONOCHROME2 convention."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(f"{path}: unsupported PhotometricInterpretation {photometric!r}")
    _check_decodable(ds, path)
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for truncated or undecodable data
        uid = _transfer_syntax(ds)
        syntax = f" {_describe(uid)}" if uid is not None else ""
        raise UnreadableImage(f"{path}: cannot decode{syntax} pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise UnreadableImage(f"{path}: expected one 2-D frame, got pixel array of shape {pixels.shape}")
    has_window = _has_values(ds, "WindowCenter") and _has_values(ds, "WindowWidth")
    has_voi = _has_values(ds, "VOILUTSequence") or has_window
    try:
        values = apply_modality_lut(pixels, ds)
        if has_voi:
            # apply_voi_lut keeps MONOCHROME1 polarity; the stretch below maps the window to [0, 1].
            # A VOI LUT Sequence wins over a window; of several windows or LUTs the first is used.
            values = apply_voi_lut(values, ds, index=0)
    except Exception as err:  # malformed Modality LUT / VOI LUT / window attributes
        raise UnreadableImage(
            f"{path}: cannot apply the Modality or VOI LUT ({type(err).__name__}: {err})"
        ) from None
    display = _stretch(values, path)
    if photometric == "MONOCHROME1":
        display = 1.0 - display  # MONOCHROME1 stores air bright; flip to the common convention
    return display


def _dcmread(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as err:
        raise UnreadableImage(f"{path}: not a DICOM file ({err})") from None
    except Exception as err:
        raise UnreadableImage(f"{path}: cannot parse DICOM ({type(err).__name__}: {err})") from None


def read_dicom_header(path: str | Path) -> DicomHeader:
    """The header fields of one DICOM file, without reading or decoding its pixel data."""
    path = Path(path)
    return read_header(_dcmread(path, stop_before_pixels=True))


def read_dicom(path: str | Path) -> tuple[np.ndarray, DicomHeader]:
    """Read one DICOM radiograph; raise UnreadableImage naming the file on any problem."""
    path = Path(path)
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise UnreadableImage(f"{path}: DICOM file has no pixel data")
    return dicom_to_display(ds, path), read_header(ds)


def _grey_values(image: Image.Image) -> np.ndarray:
    """One grey channel: wide grey modes as they are, alpha dropped, colour and palette -> L."""
    if image.mode in _WIDE_GREY_MODES:  # 16-bit PNGs open as I;16 (or I in older Pillow)
        return np.asarray(image, dtype=np.float64)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.float64)  # drop alpha
    if image.mode == "PA":
        image = image.convert("RGBA")
    # RGB/RGBA/P/1/CMYK/YCbCr -> L with ITU-R 601-2 luma; RGBA -> L ignores the alpha channel.
    return np.asarray(image.convert("L"), dtype=np.float64)


def read_raster(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG radiograph as grayscale float32 [0, 1] (8 or 16 bit; grey, RGB(A) or palette)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            values = _grey_values(image)
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: file not found") from None
    except Exception as err:
        raise UnreadableImage(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
    if values.ndim != 2:
        raise UnreadableImage(f"{path}: expected one grey channel, got an array of shape {values.shape}")
    return _stretch(values, path)


def read_any(path: str | Path) -> np.ndarray:
    """Decode any supported radiograph to a display image, choosing the reader by content."""
    path = Path(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_raster(path)
    return read_dicom(path)[0]
