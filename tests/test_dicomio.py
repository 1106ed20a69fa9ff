import numpy as np
import pytest

from stages.dicomio.read import (UnreadableImage, age_string_to_years, read_any, read_dicom,
                                 read_dicom_header, read_raster, sex_code)
from tests.conftest import cr_dataset, write_dicom


def gradient(bits: int, shape=(40, 30)) -> np.ndarray:
    top = 2 ** bits - 1
    return np.tile(np.linspace(0, top, shape[1]).round(), (shape[0], 1)).astype(np.int64)


@pytest.mark.parametrize("bits", [8, 12, 15, 16])
def test_monochrome2_stretches_to_unit_range(tmp_path, bits):
    path = write_dicom(tmp_path / "a.dcm", gradient(bits), bits_stored=bits)
    image, header = read_dicom(path)
    assert header.bits_stored == bits and header.photometric == "MONOCHROME2"
    assert image.dtype == np.float32 and image.shape == (40, 30)
    assert image[0, 0] == pytest.approx(0.0) and image[0, -1] == pytest.approx(1.0)


def test_monochrome1_is_inverted(tmp_path):
    pixels = gradient(12)
    mono2, _ = read_dicom(write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2"))
    mono1, _ = read_dicom(write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1"))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_window_clips_outside_values(tmp_path):
    pixels = gradient(12)  # 0..4095 across the columns
    image, _ = read_dicom(write_dicom(tmp_path / "w.dcm", pixels, window=(1000, 400)))
    columns = pixels[0]
    assert np.all(image[0, columns <= 800] == pytest.approx(0.0))
    assert np.all(image[0, columns >= 1200] == pytest.approx(1.0))
    inside = (columns > 820) & (columns < 1180)
    assert np.all(np.diff(image[0, inside]) > 0)


def test_header_keeps_view_and_no_identifying_fields(tmp_path):
    _, header = read_dicom(write_dicom(tmp_path / "v.dcm", gradient(8), bits_stored=8, view=None))
    assert header.view == "UNKNOWN"
    fields = set(header.__dataclass_fields__)
    assert not fields & {"patient_name", "birth_date", "PatientName", "PatientBirthDate"}


def test_non_dicom_file_is_named(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not a DICOM file")
    with pytest.raises(UnreadableImage, match="notes.dcm"):
        read_dicom(bad)


def test_truncated_dicom_is_named(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", gradient(12, (200, 200)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="t.dcm"):
        read_dicom(path)


def test_blank_image_rejected(tmp_path):
    with pytest.raises(UnreadableImage, match="blank"):
        read_dicom(write_dicom(tmp_path / "b.dcm", np.full((10, 10), 7)))


def test_raster_png_and_read_any(tmp_path):
    from PIL import Image

    pixels = (gradient(8)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_raster(tmp_path / "a.png")
    assert image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_allclose(read_any(tmp_path / "a.png"), image)
    with pytest.raises(UnreadableImage, match="missing.png"):
        read_raster(tmp_path / "missing.png")


@pytest.mark.parametrize("age, years", [
    ("045Y", 45), ("000Y", 0), ("089Y", 89),
    ("090Y", 90), ("095Y", 90), ("120Y", 90),  # 90 or older is stored as 90 (HIPAA)
    ("018M", 1), ("011M", 0), ("024M", 2),
    ("052W", 0), ("053W", 1), ("104W", 1), ("105W", 2),
    ("364D", 0), ("365D", 0), ("366D", 1), ("731D", 2),
    (" 045Y", 45), ("045Y ", 45),  # space padding
])
def test_age_string_to_years(age, years):
    assert age_string_to_years(age) == years


@pytest.mark.parametrize("age", [None, "", "45Y", "45", "0045Y", "045", "045X", "045y", "-45Y", "4.5Y",
                                 "Y045", "abcd", 45, ["045Y", "046Y"]])
def test_absent_or_malformed_age_is_none(age):
    assert age_string_to_years(age) is None


@pytest.mark.parametrize("sex, code", [("M", "M"), ("F", "F"), ("O", "O"), ("m", "M"), (" F ", "F"),
                                       ("", ""), (None, ""), ("U", ""), ("MALE", ""), ("X", "")])
def test_sex_code(sex, code):
    assert sex_code(sex) == code


def _write_with_demographics(path, age: str | None, sex: str | None):
    ds = cr_dataset(gradient(8), bits_stored=8, uid_seed=str(path))
    if age is not None:
        ds.add_new("PatientAge", "AS", age)
    if sex is not None:
        ds.PatientSex = sex
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("age, sex, years, code", [
    ("062Y", "F", 62, "F"), ("097Y", "M", 90, "M"), ("006M", "O", 0, "O"), (None, None, None, "")])
def test_header_keeps_capped_age_and_sex(tmp_path, age, sex, years, code):
    header = read_dicom_header(_write_with_demographics(tmp_path / "d.dcm", age, sex))
    assert (header.patient_age_years, header.patient_sex) == (years, code)


def test_malformed_age_in_a_file_leaves_the_image_readable(tmp_path):
    # pydicom only warns about an invalid Age String (real files hold them); the image must stay in.
    with pytest.warns(UserWarning, match="Age String|AS"):
        path = _write_with_demographics(tmp_path / "bad.dcm", "45 years", "UNKNOWN")
    image, header = read_dicom(path)
    assert image.shape == (40, 30)
    assert header.patient_age_years is None and header.patient_sex == ""
