import numpy as np
import pytest

from stages.imaging.preprocess import center_square, crop_box, crop_top, preprocess, resize_square, to_uint8


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


# --- crop boxes by hand (issue 20): (xmin, ymin, xmax, ymax), x along columns ----------------
# 4 rows x 6 columns; the value says where it sits: 10 * row + column.
GRID = np.array([[0, 1, 2, 3, 4, 5],
                 [10, 11, 12, 13, 14, 15],
                 [20, 21, 22, 23, 24, 25],
                 [30, 31, 32, 33, 34, 35]], dtype=np.float32)


def test_crop_box_keeps_columns_xmin_to_xmax_and_rows_ymin_to_ymax():
    # x 1..4 (columns 1, 2, 3), y 2..4 (rows 2, 3), written out by hand.
    np.testing.assert_array_equal(crop_box(GRID, (1, 2, 4, 4)), [[21, 22, 23], [31, 32, 33]])
    np.testing.assert_array_equal(crop_box(GRID, (4, 0, 6, 1)), [[4, 5]])
    assert crop_box(GRID, None) is GRID


def test_crop_box_partly_outside_the_image_is_clipped():
    np.testing.assert_array_equal(crop_box(GRID, (-3, 3, 2, 99)), [[30, 31]])
    np.testing.assert_array_equal(crop_box(GRID, (5, -1, 60, 1)), [[5]])


@pytest.mark.parametrize("box", [(6, 0, 9, 4), (0, 4, 6, 8), (-5, 0, 0, 4), (3, 1, 3, 2), (4, 2, 2, 3)])
def test_crop_box_outside_the_image_is_an_error_naming_box_and_size(box):
    with pytest.raises(ValueError, match=rf"crop box \({box[0]}, {box[1]}, {box[2]}, {box[3]}\) leaves nothing "
                                         r"of a 6x4 image"):
        crop_box(GRID, box)


def test_crop_top_rounds_the_rows_it_drops():
    image = np.arange(13 * 2, dtype=np.float32).reshape(13, 2)
    # 13 * 0.08 = 1.04 -> 1 row; 13 * 0.2 = 2.6 -> 3 rows; 0 keeps all.
    np.testing.assert_array_equal(crop_top(image, 0.08), image[1:])
    np.testing.assert_array_equal(crop_top(image, 0.2), image[3:])
    np.testing.assert_array_equal(crop_top(image, 0.0), image)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=rf"crop fraction must be in \[0, 1\), got {bad}"):
            crop_top(image, bad)


def test_center_square_of_a_tall_and_a_wide_image():
    np.testing.assert_array_equal(center_square(GRID), GRID[:, 1:5])  # offset int((6 - 4) / 2) = 1
    np.testing.assert_array_equal(center_square(GRID.T), GRID.T[1:5, :])
    odd = np.arange(15, dtype=np.float32).reshape(3, 5)
    np.testing.assert_array_equal(center_square(odd), odd[:, 1:4])


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-0.5, 0.0, 0.3 / 255, 0.7 / 255, 1.0, 1.7])),
                                  [0, 0, 0, 1, 255, 255])


def test_preprocess_applies_the_box_before_the_top_crop():
    """By hand: the box x 1..5, y 0..4 keeps a 4 x 4 block; the top 20% of it (0.8 -> 1 row) goes;
    the central square of the 3 x 4 rest is its columns 0..2; resizing to the same side (3) is
    the identity. Cropping the top of the whole image first would drop 2 rows instead."""
    image = np.arange(10 * 8, dtype=np.float32).reshape(10, 8) / 79.0
    boxed = image[0:4, 1:5]  # 4 x 4
    expected = to_uint8(boxed[1:, :][:, 0:3])  # 3 x 4 -> central square, columns 0..2 (offset int(1/2) = 0)
    np.testing.assert_array_equal(preprocess(image, 3, 0.2, box=(1, 0, 5, 4)), expected)


def test_resize_is_bilinear_with_pillows_reducing_gap_of_two():
    """Pillow's documented reducing_gap=2.0: an image at least 2 x 2 times the target is first
    reduced by whole factors (int(640 / 64 / 2) = 5, by box averaging, Image.reduce), then
    resampled bilinearly; Pillow's primitives are the oracle."""
    from PIL import Image

    image = np.random.default_rng(0).random((640, 640)).astype(np.float32)
    expected = np.asarray(Image.fromarray(image).reduce(5).resize((64, 64), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_square(image, 64), expected)
    assert resize_square(image, 64).dtype == np.float32


def test_resize_of_a_step_has_no_overshoot():
    """Bilinear weights are non-negative, so a 0/1 step stays within [0, 1] (bicubic, Pillow's
    default, rings below 0 and above 1) and has in-between values at the edge (nearest has none)."""
    step = np.zeros((40, 40), np.float32)
    step[:, 20:] = 1.0
    for size in (15, 64):
        out = resize_square(step, size)
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert ((out > 0.01) & (out < 0.99)).any()


def test_crop_box_and_center_square_keep_channels():
    colour = np.stack([GRID, GRID + 100, GRID + 200], axis=-1)  # 4 x 6 x 3
    np.testing.assert_array_equal(crop_box(colour, (1, 2, 4, 4)), colour[2:4, 1:4])
    np.testing.assert_array_equal(center_square(colour), colour[:, 1:5])


def test_preprocess_defaults_are_the_papers():
    """Top 8% cropped, no box, COVID-Net's central square."""
    image = np.random.default_rng(1).random((50, 40)).astype(np.float32)
    np.testing.assert_array_equal(preprocess(image, 16), preprocess(image, 16, 0.08, None, "center_crop"))
    np.testing.assert_array_equal(preprocess(image, 16), to_uint8(resize_square(center_square(image[4:]), 16)))
