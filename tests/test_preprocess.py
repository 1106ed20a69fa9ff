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
