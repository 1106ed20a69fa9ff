"""Every transfer syntax and pixel layout RSNA RICORD 1c uses decodes to the expected display image.

Fixtures are written here with pydicom (no binary files): a known 48 x 64 array (a gradient over
the full value range, flat blocks and a seeded noise patch) stored uncompressed, JPEG 2000, RLE,
JPEG Lossless (encoded by tests/ljpeg.py) and JPEG Baseline. The expected display is computed from
the known array with the DICOM rules written out in numpy (rescale, LINEAR window, VOI LUT lookup,
min-max stretch, MONOCHROME1 flip), not through read.py or pydicom's LUT functions.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

from stages.dicomio.read import UnreadableImage, read_dicom, read_dicom_header
from tests.conftest import cr_dataset
from tests.ljpeg import encode_lossless_jpeg, huffman_code_lengths

ROWS, COLUMNS = 48, 64  # non-square, so a transposed decode cannot pass
# One code value of 16-bit data is 1/65535 = 1.5e-5 in display units, so this tolerance only
# absorbs float rounding: a single wrong pixel value fails the lossless comparisons.
EXACT = 1e-6


def value_range(bits: int, signed: bool = False) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def known_pixels(bits: int, signed: bool = False) -> np.ndarray:
    """Gradient across the columns over the full range, flat blocks at both ends and the middle,
    and a noise patch (large differences for the predictive coders)."""
    low, high = value_range(bits, signed)
    pixels = np.tile(np.linspace(low, high, COLUMNS).round().astype(np.int64), (ROWS, 1))
    pixels[2:10, 4:14] = low
    pixels[2:10, 50:60] = high
    pixels[20:28, 28:36] = (low + high) // 2
    rng = np.random.default_rng(bits)
    pixels[34:44, 8:24] = rng.integers(low, high + 1, size=(10, 16))
    pixels[40, 40:44] = [low, high, low, high]  # full-range jumps between neighbours
    return pixels


def stretch(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return ((values - values.min()) / (values.max() - values.min())).astype(np.float32)


def expected_display(pixels: np.ndarray, monochrome1: bool = False, slope: float = 1.0,
                     intercept: float = 0.0) -> np.ndarray:
    display = stretch(pixels.astype(np.float64) * slope + intercept)
    return (1.0 - display).astype(np.float32) if monochrome1 else display


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR) with output range [0, 1]."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def dataset(pixels: np.ndarray, bits_stored: int, signed: bool = False, photometric: str = "MONOCHROME2",
            transfer_syntax: str = ExplicitVRLittleEndian) -> FileDataset:
    """An uncompressed single-frame CR dataset holding `pixels`."""
    return cr_dataset(pixels, bits_stored, photometric, signed, transfer_syntax, patient_id="CODEC-TEST")


def storage_dtype(bits_stored: int, signed: bool) -> type:
    if bits_stored <= 8:
        return np.int8 if signed else np.uint8
    return np.int16 if signed else np.uint16


def unsigned_pattern(pixels: np.ndarray, bits: int) -> np.ndarray:
    """The stored bit pattern of (possibly negative) values, as the JPEG codestream carries it."""
    return pixels.astype(np.int64) & ((1 << bits) - 1)


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


# --- encoders: each returns the dataset with its pixel data in the given transfer syntax ----------

def encode(ds: FileDataset, codec: str, pixels: np.ndarray) -> FileDataset:
    bits, signed = int(ds.BitsStored), bool(ds.PixelRepresentation)
    arr = pixels.astype(storage_dtype(bits, signed))
    if codec == "explicit":
        return ds
    if codec == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        return ds
    if codec == "j2k-lossless":
        ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
    elif codec == "j2k-lossy":
        ds.compress(JPEG2000, arr, encoding_plugin="pylibjpeg", j2k_psnr=[60])
    elif codec == "rle":
        ds.compress(RLELossless, arr, encoding_plugin="pydicom")
    elif codec in ("jpeg-ls-sv1", "jpeg-ls-p14"):
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1 if codec == "jpeg-ls-sv1" else JPEGLossless
        ds.PixelData = encapsulate([encode_lossless_jpeg(unsigned_pattern(pixels, bits), bits)])
        ds["PixelData"].VR = "OB"
    elif codec == "jpeg-baseline":
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format="JPEG", quality=95)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
    else:
        raise ValueError(codec)
    return ds


LOSSLESS_CASES = [
    # (codec, bits stored, signed)
    ("explicit", 8, False), ("explicit", 12, False), ("explicit", 15, False), ("explicit", 16, False),
    ("explicit", 16, True), ("implicit", 12, False),
    ("j2k-lossless", 8, False), ("j2k-lossless", 12, False), ("j2k-lossless", 16, False),
    ("j2k-lossless", 16, True),
    ("rle", 8, False), ("rle", 16, False), ("rle", 16, True),
    ("jpeg-ls-sv1", 8, False), ("jpeg-ls-sv1", 12, False), ("jpeg-ls-sv1", 15, False),
    ("jpeg-ls-sv1", 16, False), ("jpeg-ls-sv1", 16, True), ("jpeg-ls-p14", 12, False),
]


@pytest.mark.parametrize("codec,bits,signed", LOSSLESS_CASES, ids=lambda v: str(v))
def test_lossless_codec_decodes_exactly(tmp_path, codec, bits, signed):
    pixels = known_pixels(bits, signed)
    ds = encode(dataset(pixels, bits, signed), codec, pixels)
    path = save(ds, tmp_path / f"{codec}-{bits}.dcm")
    image, header = read_dicom(path)
    assert header.transfer_syntax == str(ds.file_meta.TransferSyntaxUID)
    assert header.bits_stored == bits
    assert image.dtype == np.float32 and image.shape == (ROWS, COLUMNS)
    np.testing.assert_allclose(image, expected_display(pixels), rtol=0, atol=EXACT)
    assert image.min() == 0.0 and image.max() == 1.0


@pytest.mark.parametrize("codec", ["explicit", "j2k-lossless", "rle", "jpeg-ls-sv1"])
def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path, codec):
    pixels = known_pixels(12)
    mono2 = read_dicom(save(encode(dataset(pixels, 12), codec, pixels), tmp_path / "m2.dcm"))[0]
    ds1 = encode(dataset(pixels, 12, photometric="MONOCHROME1"), codec, pixels)
    mono1 = read_dicom(save(ds1, tmp_path / "m1.dcm"))[0]
    np.testing.assert_allclose(mono1, expected_display(pixels, monochrome1=True), rtol=0, atol=EXACT)
    np.testing.assert_allclose(mono1, 1.0 - mono2, rtol=0, atol=EXACT)


def test_signed_16_bit_with_rescale(tmp_path):
    pixels = known_pixels(16, signed=True)
    ds = dataset(pixels, 16, signed=True)
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"
    image, _ = read_dicom(save(ds, tmp_path / "rescale.dcm"))
    np.testing.assert_allclose(image, expected_display(pixels, slope=0.5, intercept=-1024), rtol=0, atol=EXACT)
    # Read as unsigned, the negative half would land above the positive one: not what we expect.
    wrong = expected_display(pixels.astype(np.int16).view(np.uint16).astype(np.int64))
    assert not np.allclose(image, wrong, atol=0.01)


@pytest.mark.parametrize("codec", ["explicit", "rle"])
def test_window_is_applied_after_rescale(tmp_path, codec):
    pixels = known_pixels(16, signed=True)
    slope, intercept, center, width = 2.0, -1000.0, 500.0, 20000.0  # window in rescaled units
    ds = encode(dataset(pixels, 16, signed=True), codec, pixels)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = center, width
    image, _ = read_dicom(save(ds, tmp_path / "w.dcm"))
    rescaled = pixels * slope + intercept
    windowed = linear_window(rescaled, center, width)
    assert windowed.min() == 0.0 and windowed.max() == 1.0  # the window clips on both sides
    np.testing.assert_allclose(image, windowed, rtol=0, atol=EXACT)
    assert np.all(image[rescaled <= center - 0.5 - (width - 1) / 2] == 0.0)
    assert np.all(image[rescaled > center - 0.5 + (width - 1) / 2] == 1.0)


def test_multi_valued_window_uses_the_first(tmp_path):
    pixels = known_pixels(12)
    ds = dataset(pixels, 12)
    ds.WindowCenter, ds.WindowWidth = [1500, 3000], [1000, 400]
    image, _ = read_dicom(save(ds, tmp_path / "multi.dcm"))
    np.testing.assert_allclose(image, linear_window(pixels, 1500, 1000), rtol=0, atol=EXACT)
    assert not np.allclose(image, linear_window(pixels, 3000, 400), atol=0.01)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_voi_lut_sequence_maps_through_the_table(tmp_path, photometric):
    pixels = known_pixels(12)
    first, entries = 1000, 2048
    table = np.round(4095 * np.sqrt(np.arange(entries) / (entries - 1))).astype(np.int64)  # not linear
    ds = dataset(pixels, 12, photometric=photometric)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [entries, first, 12])
    item.add_new("LUTData", "OW", table.astype("<u2").tobytes())  # as scanners write it
    item.LUTExplanation = "square root"
    ds.VOILUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096  # also present, as in many CR files: the LUT wins
    image, _ = read_dicom(save(ds, tmp_path / "lut.dcm"))
    mapped = table[np.clip(pixels - first, 0, entries - 1)] / 4095.0
    assert mapped.min() == 0.0 and mapped.max() == 1.0
    expected = (1.0 - mapped) if photometric == "MONOCHROME1" else mapped
    np.testing.assert_allclose(image, expected, rtol=0, atol=EXACT)
    assert not np.allclose(image, expected_display(pixels, photometric == "MONOCHROME1"), atol=0.01)
    assert not np.allclose(image, linear_window(pixels, 2048, 4096), atol=0.01)


@pytest.mark.parametrize("codec,bits,max_error,mean_error", [
    ("jpeg-baseline", 8, 12 / 255, 1.5 / 255),
    ("j2k-lossy", 12, 0.02, 0.002),
])
def test_lossy_codec_decodes_close(tmp_path, codec, bits, max_error, mean_error):
    pixels = known_pixels(bits)
    ds = encode(dataset(pixels, bits), codec, pixels)
    image, header = read_dicom(save(ds, tmp_path / f"{codec}.dcm"))
    assert header.transfer_syntax == str(ds.file_meta.TransferSyntaxUID)
    assert image.shape == (ROWS, COLUMNS)
    error = np.abs(image - expected_display(pixels))
    assert error.max() <= max_error and error.mean() <= mean_error, (error.max(), error.mean())
    assert not np.array_equal(image, expected_display(pixels))  # it did go through a lossy codec


# --- decoding failures are UnreadableImage naming the file ------------------------------------------

def test_missing_decoder_plugin_names_file_and_syntax(tmp_path, monkeypatch):
    pixels = known_pixels(12)
    path = save(encode(dataset(pixels, 12), "j2k-lossless", pixels), tmp_path / "needs-openjpeg.dcm")
    decoder = get_decoder(JPEG2000Lossless)
    # As if neither pylibjpeg-openjpeg nor Pillow (nor gdcm) were installed.
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(UnreadableImage, match="needs-openjpeg.dcm") as err:
        read_dicom(path)
    message = str(err.value)
    assert "JPEG 2000 Image Compression (Lossless Only)" in message and JPEG2000Lossless in message
    assert "pylibjpeg-openjpeg" in message
    header = read_dicom_header(path)  # the header pass needs no decoder
    assert header.transfer_syntax == JPEG2000Lossless and (header.rows, header.columns) == (ROWS, COLUMNS)


def test_syntax_without_any_decoder_names_file_and_syntax(tmp_path):
    mpeg2 = UID("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile: pydicom has no image decoder for it
    with pytest.raises(NotImplementedError):
        get_decoder(mpeg2)
    ds = dataset(known_pixels(8), 8)
    ds.file_meta.TransferSyntaxUID = mpeg2
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    with pytest.raises(UnreadableImage, match=r"video\.dcm.*MPEG2 Main Profile"):
        read_dicom(save(ds, tmp_path / "video.dcm"))


def first_frame(ds: Dataset) -> bytes:
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.mark.parametrize("codec,bits", [
    ("j2k-lossless", 16), ("rle", 16), ("jpeg-ls-sv1", 8), ("jpeg-ls-sv1", 16), ("jpeg-baseline", 8),
])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_frame_is_unreadable(tmp_path, codec, bits, keep):
    pixels = known_pixels(bits)
    ds = encode(dataset(pixels, bits), codec, pixels)
    frame = first_frame(ds)
    ds.PixelData = encapsulate([frame[: int(len(frame) * keep)]])
    with pytest.raises(UnreadableImage, match="cut.dcm"):
        read_dicom(save(ds, tmp_path / "cut.dcm"))


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("codec", ["j2k-lossless", "jpeg-ls-sv1", "rle"])
def test_truncated_compressed_file_is_unreadable(tmp_path, codec):
    pixels = known_pixels(16)
    path = save(encode(dataset(pixels, 16), codec, pixels), tmp_path / "half.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(first_frame(pydicom.dcmread(path))) // 2])
    with pytest.raises(UnreadableImage, match="half.dcm"):
        read_dicom(path)


def test_corrupt_frame_is_unreadable(tmp_path):
    pixels = known_pixels(12)
    ds = encode(dataset(pixels, 12), "j2k-lossless", pixels)
    frame = bytearray(first_frame(ds))
    frame[40:] = bytes(len(frame) - 40)  # SOC/SIZ survive; the rest of the header and the data are zeros
    ds.PixelData = encapsulate([bytes(frame)])
    with pytest.raises(UnreadableImage, match=r"zeros\.dcm.*JPEG 2000"):
        read_dicom(save(ds, tmp_path / "zeros.dcm"))


def test_invalid_window_is_unreadable_not_a_crash(tmp_path):
    ds = dataset(known_pixels(12), 12)
    ds.WindowCenter, ds.WindowWidth = 1000, 0  # LINEAR needs a width >= 1
    with pytest.raises(UnreadableImage, match="badwindow.dcm"):
        read_dicom(save(ds, tmp_path / "badwindow.dcm"))


# --- the lossless JPEG test encoder itself ---------------------------------------------------------

def test_ljpeg_huffman_lengths_are_valid_even_when_skewed():
    for counts in ([0] * 17, [2 ** k for k in range(17)], [5000] + [0] * 16):
        lengths = huffman_code_lengths(counts)
        assert len(lengths) == 17 and 1 <= min(lengths) and max(lengths) <= 16
        kraft = sum(2.0 ** -length for length in lengths)
        assert kraft < 1.0  # room is left for the reserved all-ones code word


def test_ljpeg_stream_layout():
    stream = encode_lossless_jpeg(known_pixels(12), 12)
    assert stream[:4] == b"\xff\xd8\xff\xc3" and stream[-2:] == b"\xff\xd9"
    assert stream[6] == 12 and int.from_bytes(stream[7:9], "big") == ROWS
    assert int.from_bytes(stream[9:11], "big") == COLUMNS
