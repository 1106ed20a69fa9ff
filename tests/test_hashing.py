"""Content hashes for the leakage audit: exact pixels and a perceptual hash that survives copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.dicomio.read import read_raster
from stages.imaging.hashing import (PHASH_BITS, hamming, hamming_matrix, perceptual_hash,
                                    pixel_sha256)
from stages.imaging.preprocess import to_uint8
from stages.sources.phantom import render_chest

THRESHOLD = 16  # validate.phash_max_distance in params.yaml


def phantom(seed: int, rows: int = 420, columns: int = 380) -> np.ndarray:
    return render_chest(np.random.default_rng(seed), (0, 4) if seed % 2 else (1,), rows, columns)


def saved(display: np.ndarray, path: Path, scale: float = 1.0, **save_args) -> np.ndarray:
    """Write the 8-bit display image (optionally resized) and read it back as ingest does."""
    image = Image.fromarray(np.rint(display * 255).astype(np.uint8))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR)
    image.save(path, **save_args)
    return read_raster(path)


def test_hash_shapes_and_determinism() -> None:
    display = phantom(1)
    assert len(pixel_sha256(display)) == 64
    assert len(perceptual_hash(display)) == (PHASH_BITS + 3) // 4
    assert perceptual_hash(display) == perceptual_hash(display.copy())


def test_pixel_hash_is_format_independent_but_exact(tmp_path: Path) -> None:
    display = phantom(2)
    png = saved(display, tmp_path / "a.png")
    tiff = saved(display, tmp_path / "a.tiff")
    assert pixel_sha256(png) == pixel_sha256(tiff)
    jpeg = saved(display, tmp_path / "a.jpg", quality=95)
    assert pixel_sha256(jpeg) != pixel_sha256(png)
    assert pixel_sha256(png.T) != pixel_sha256(png)  # same bytes, other shape


@pytest.mark.parametrize(("scale", "quality"), [(1.0, 90), (0.75, 85), (0.5, 70), (0.3, 50)])
def test_resized_jpeg_copy_stays_within_the_threshold(tmp_path: Path, scale: float, quality: int) -> None:
    display = phantom(3, 512, 500)
    copy = saved(display, tmp_path / "copy.jpg", scale=scale, quality=quality)
    assert copy.shape != display.shape or scale == 1.0
    assert hamming(perceptual_hash(display), perceptual_hash(copy)) <= THRESHOLD


def test_distinct_phantoms_are_far_apart() -> None:
    hashes = [perceptual_hash(phantom(seed)) for seed in range(12)]
    distances = hamming_matrix(hashes, hashes)
    off_diagonal = distances[~np.eye(len(hashes), dtype=bool)]
    assert off_diagonal.min() > THRESHOLD, off_diagonal.min()


def test_hamming_matrix_matches_pairwise_hamming() -> None:
    rng = np.random.default_rng(0)
    a = [f"{int(v):064x}"[-64:] for v in rng.integers(0, 2**62, size=4)]
    b = [perceptual_hash(phantom(s)) for s in range(3)] + ["0" * 64]
    a = [h.rjust(64, "0") for h in a]
    matrix = hamming_matrix(a, b)
    assert matrix.shape == (4, 4)
    assert all(matrix[i, j] == hamming(a[i], b[j]) for i in range(4) for j in range(4))
    with pytest.raises(ValueError, match="different lengths"):
        hamming("ab", "abc")
    with pytest.raises(ValueError, match="2-D"):
        perceptual_hash(np.zeros((4, 4, 3)))


def test_cohen_duplicate_is_found_and_nothing_else(shared_data: Path) -> None:
    """Real radiographs: the two SIRM uploads of case 34 (patient 51) are one image, re-encoded.

    Among the 93 cohen-severity images that is the only pair within the threshold (measured: 14
    bits apart; the next nearest pair is 64 bits apart).
    """
    folder = shared_data / "cohen-severity" / "images"
    names = sorted(p.name for p in folder.iterdir())
    hashes = [perceptual_hash(read_raster(folder / name)) for name in names]
    distances = hamming_matrix(hashes, hashes)
    pairs = {(names[i], names[j]) for i, j in zip(*np.nonzero(distances <= THRESHOLD)) if i < j}
    assert pairs == {("E63574A7-4188-4C8D-8D17-9D67A18A1AFA.jpeg", "F4341CE7-73C9-45C6-99C8-8567A5484B63.jpeg")}


def test_an_8_bit_export_of_a_display_has_its_exact_pixel_hash(tmp_path):
    """A PNG written from a float32 display (as ingest and any exporter write one) hashes like the
    display itself: the hash rounds to 8 bits the same way, also for pixels half-way between levels."""
    from PIL import Image

    from stages.dicomio.read import read_raster
    from stages.imaging.preprocess import to_uint8

    # Every float32 within 4 ulps of a half-way point (k + 0.5) / 255: where float32 and float64
    # arithmetic can round to different levels.
    halves = np.array([(k + 0.5) / 255 for k in range(255)], dtype=np.float32)
    near, up, down = [halves], halves, halves
    for _ in range(4):
        up, down = np.nextafter(up, np.float32(1)), np.nextafter(down, np.float32(0))
        near += [up, down]
    display = np.concatenate([np.float32([0.0, 1.0]), *near]).reshape(1, -1)  # full range: no stretch
    Image.fromarray(to_uint8(display)).save(tmp_path / "export.png")
    assert pixel_sha256(read_raster(tmp_path / "export.png")) == pixel_sha256(display)


# --- the hashes re-implemented independently (issue 20) --------------------------------------
def test_perceptual_hash_matches_a_scipy_reimplementation() -> None:
    """Zauner's DCT hash as documented: area-average to 64 x 64 (a 128 x 192 image: 2 x 3 block
    means), orthonormal 2-D DCT-II (scipy), the 16 x 16 low frequencies without the DC term, one
    bit per coefficient above their median, as 64 hex digits."""
    from scipy.fft import dctn

    rng = np.random.default_rng(4)
    image = rng.random((128, 192)).astype(np.float32)
    small = image.astype(np.float64).reshape(64, 2, 64, 3).mean(axis=(1, 3))
    coefficients = dctn(small, type=2, norm="ortho")[:16, :16].ravel()[1:]
    bits = "".join("1" if c > np.median(coefficients) else "0" for c in coefficients)
    assert len(bits) == PHASH_BITS == 255
    assert perceptual_hash(image) == f"{int(bits, 2):064x}"


def test_perceptual_hash_refuses_what_is_not_a_grey_image() -> None:
    for bad in (np.zeros(10), np.zeros((1, 10)), np.zeros((4, 4, 3))):
        with pytest.raises(ValueError, match=r"perceptual_hash needs a 2-D grey image, got shape"):
            perceptual_hash(bad)
    assert len(perceptual_hash(np.zeros((2, 2)))) == 64


def test_pixel_sha256_by_hand() -> None:
    import hashlib

    display = np.array([[0.0, 1.0, 0.5], [0.2, 0.002, 0.998]], dtype=np.float32)
    pixels = bytes([0, 255, 128, 51, 1, 254])  # rint(255 x): 127.5 -> 128, 51.0, 0.51 -> 1, 254.49 -> 254
    assert pixel_sha256(display) == hashlib.sha256(b"2x3:" + pixels).hexdigest()
    assert pixel_sha256(display.T) == hashlib.sha256(b"3x2:" + bytes([0, 51, 255, 1, 128, 254])).hexdigest()


def test_hamming_by_hand() -> None:
    assert hamming("00ff", "0f0f") == 8 and hamming("0", "0") == 0 and hamming("f1", "e0") == 2
    with pytest.raises(ValueError, match="hashes of different lengths: 2 and 3"):
        hamming("00", "000")
    from stages.imaging.hashing import hash_matrix

    np.testing.assert_array_equal(hash_matrix(["a5", "0f"]), [[1, 0, 1, 0, 0, 1, 0, 1], [0, 0, 0, 0, 1, 1, 1, 1]])
    # An odd number of hex digits is padded on the left: "abc" is 0x0abc.
    np.testing.assert_array_equal(hash_matrix(["abc"])[0], [0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0])
    assert hash_matrix([]).shape == (0, PHASH_BITS)
    with pytest.raises(ValueError, match=r"hashes of different lengths: \[2, 4\]"):
        hash_matrix(["00", "0000"])
    np.testing.assert_array_equal(hamming_matrix(["00ff", "ffff"], ["0f0f", "0000", "ffff"]),
                                  [[8, 8, 8], [8, 16, 0]])
    # An empty side (once a matmul of 255 by 256 columns: 64 hex digits hold 256 bits).
    assert hamming_matrix([], ["0" * 64]).shape == (0, 1) and hamming_matrix(["0" * 64], []).shape == (1, 0)
    with pytest.raises(ValueError, match="hashes of different lengths: 8 and 16 bits"):
        hamming_matrix(["00"], ["0000"])


def test_pixel_sha256_rounds_in_float32_whatever_the_input_type() -> None:
    """A float64 display hashes as its float32 copy (the precision every 8-bit export rounds in):
    near the half-way values (k + 0.5) / 255, x * 255 rounds differently in float64 for some k."""
    half = ((np.arange(255) + 0.5) / 255).astype(np.float32)
    near = np.concatenate([half, np.nextafter(half, 0, dtype=np.float32), np.nextafter(half, 1, dtype=np.float32)])
    display = near.reshape(3, 255).astype(np.float64)  # exactly the float32 values
    assert (to_uint8(display) != to_uint8(display.astype(np.float32))).any()  # the case exists
    assert pixel_sha256(display) == pixel_sha256(display.astype(np.float32))


def test_distances_are_integers() -> None:
    from stages.imaging.hashing import hash_matrix

    assert hamming_matrix(["0f"], ["ff", "00"]).dtype == np.int32
    assert hamming_matrix([], ["0" * 64]).dtype == np.int32
    assert hash_matrix([]).dtype == np.uint8 and hash_matrix(["0f"]).dtype == np.uint8
