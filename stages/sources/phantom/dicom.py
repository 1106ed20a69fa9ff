"""DICOM bytes of a planned phantom image: stored pixel values and a Part 10 file."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

from stages.sources.phantom.ids import accession_number, uid

if TYPE_CHECKING:  # the cohort's plan types; ricord imports this module to encode them
    from stages.sources.phantom.ricord import RicordImage, RicordPatient, RicordStudy

SOP_CLASS_OF_MODALITY = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}
# A fixed implementation UID keeps files identical across pydicom versions.
IMPLEMENTATION_VERSION = "PHANTOM_1"


def stored_pixels(display: np.ndarray, image: RicordImage,
                  rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Quantise to BitsStored; MONOCHROME1 stores inverted values. Returns (pixels, low, high).

    Real detectors rarely use their full range, so the used range [low, high] is a random part of
    0..2**BitsStored-1; a window (if any) is derived from it.
    """
    max_value = 2**image.bits_stored - 1
    low = int(rng.uniform(0.0, 0.08) * max_value)
    high = int(rng.uniform(0.85, 1.0) * max_value)
    scaled = np.float32(low) + display.astype(np.float32) * np.float32(high - low)
    if image.photometric == "MONOCHROME1":
        scaled = np.float32(high + low) - scaled  # high stored value = dark (little attenuation)
    stored = np.clip(np.rint(scaled), 0, max_value)
    dtype = np.uint8 if image.bits_stored == 8 else np.uint16
    return stored.astype(dtype), low, high


def dicom_bytes(seed: int, patient: RicordPatient, study: RicordStudy, image: RicordImage,
                pixels: np.ndarray, low: int, high: int) -> bytes:
    """Encode one image as a DICOM Part 10 file (explicit VR little endian, uncompressed)."""
    sop_class = SOP_CLASS_OF_MODALITY[image.modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(image.sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(uid("stages.sources.phantom", IMPLEMENTATION_VERSION))
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = image.sop_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.ContentDate = study.study_date
    ds.StudyTime = f"{8 + study.number % 10:02d}{(7 * study.number) % 60:02d}00"
    ds.AccessionNumber = accession_number(study.study_uid)
    ds.Modality = image.modality
    ds.Manufacturer = "Phantom Imaging"
    ds.PatientName = f"ANON^{patient.patient_id[-6:]}"
    ds.PatientID = patient.patient_id
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    if image.view:
        ds.ViewPosition = image.view
    ds.StudyInstanceUID = image.study_uid
    ds.SeriesInstanceUID = image.series_uid
    ds.StudyID = str(study.number)
    ds.SeriesNumber = str(image.series_number)
    ds.InstanceNumber = str(image.instance_number)
    ds.PatientOrientation = ["L", "F"]  # frontal chest: image right = patient's left, down = feet
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric
    ds.Rows = image.rows
    ds.Columns = image.columns
    ds.ImagerPixelSpacing = [f"{380.0 / max(image.rows, image.columns):.6f}"] * 2
    ds.BitsAllocated = 8 if image.bits_stored == 8 else 16
    ds.BitsStored = image.bits_stored
    ds.HighBit = image.bits_stored - 1
    ds.PixelRepresentation = 0
    if image.window:
        ds.WindowCenter = str((low + high) // 2)
        ds.WindowWidth = str(max(1, high - low))
    vr = "OB" if ds.BitsAllocated == 8 else "OW"
    ds.add_new(0x7FE00010, vr, pixels.astype(f"<u{ds.BitsAllocated // 8}").tobytes())

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

