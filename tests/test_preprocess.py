import numpy as np
import pytest

from stages.imaging.preprocess import crop_top, preprocess, resize_square


def test_crop_top_removes_top_rows():
    image = np.zeros((100, 50), np.float32)
    image[:8] = 1.0  # burned-in text band
    cropped = crop_top(image, 0.08)
    assert cropped.shape == (92, 50) and cropped.max() == 0.0


def test_crop_fraction_checked():
    with pytest.raises(ValueError):
        crop_top(np.zeros((10, 10)), 1.0)


def test_preprocess_square_uint8_and_drops_text():
    image = np.full((700, 500), 0.5, np.float32)
    image[:40] = 1.0  # text in the top 5.7%
    out = preprocess(image, 64, 0.08)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert out.max() == 128 and out.min() == 128


def test_resize_keeps_left_right_structure():
    image = np.zeros((300, 200), np.float32)
    image[:, 100:] = 1.0
    out = resize_square(image, 32)
    assert out[:, :14].max() < 0.05 and out[:, 18:].min() > 0.95


def test_center_crop_keeps_the_central_square_as_covidnet_does():
    """COVID-Net's data.py: crop_top, then central_crop (offsets int((side - size) / 2)), then
    resize; by hand on a 10 x 15 image: crop_top 0.2 drops 2 rows -> 8 x 15, the central square
    is columns 3..10 (offset int(7 / 2) = 3)."""
    from stages.imaging.preprocess import center_square, preprocess

    image = np.arange(150, dtype=np.float32).reshape(10, 15) / 149.0
    square = center_square(image[2:])
    np.testing.assert_array_equal(square, image[2:, 3:11])
    np.testing.assert_array_equal(preprocess(image, 8, 0.2, square="center_crop"),
                                  np.clip(np.rint(image[2:, 3:11] * 255), 0, 255).astype(np.uint8))
    stretched = preprocess(image, 8, 0.2, square="stretch")
    assert stretched.shape == (8, 8) and not np.array_equal(stretched, preprocess(image, 8, 0.2))
    with pytest.raises(ValueError, match="ingest.square must be one of"):
        preprocess(image, 8, square="pad")
