"""stages.model_input: the numpy input path ``predict`` uses matches the pipeline's TensorFlow one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stages.model_input import Preprocessing, area_resize, network_input


@pytest.mark.parametrize("source,size", [((64, 64), 32), ((64, 64), 30), ((50, 64), 32), ((20, 20), 32),
                                         ((480, 480), 240)])
def test_area_resize_matches_tensorflow(source, size):
    image = np.random.default_rng(0).integers(0, 256, source).astype(np.float32)
    expected = tf.image.resize(image[..., None], (size, size), method="area").numpy()[..., 0]
    # TensorFlow sums in float32 with float32 span ends: up to ~5e-4 of 255 apart where the ratio is not whole.
    tolerance = 1e-5 if source[0] % size == 0 and source[1] % size == 0 else 1e-3
    np.testing.assert_allclose(area_resize(image, size), expected, rtol=0, atol=tolerance)


def test_area_resize_by_two_is_the_mean_of_each_block():
    # Hand oracle: halving averages each 2 x 2 block.
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(area_resize(image, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_network_input_is_the_grey_image_three_times_in_0_255():
    stored = np.random.default_rng(1).integers(0, 256, (64, 64)).astype(np.uint8)
    batch = network_input(stored, 32)
    assert batch.shape == (32, 32, 3) and batch.dtype == np.float32
    assert np.array_equal(batch[..., 0], batch[..., 2]) and 0 <= batch.min() and batch.max() <= 255
    # The training decoder: PNG uint8 -> float -> area resize -> grayscale_to_rgb.
    expected = tf.image.grayscale_to_rgb(tf.image.resize(tf.cast(stored[..., None], tf.float32), (32, 32),
                                                         method="area")).numpy()
    np.testing.assert_allclose(batch, expected, atol=2e-4)
    assert np.array_equal(network_input(stored, 64)[..., 1], stored.astype(np.float32))


def test_preprocessing_settings_refuse_an_unknown_square_mode():
    with pytest.raises(SystemExit, match="ingest.square"):
        Preprocessing.from_params({"image_size": 64, "crop_top_fraction": 0.08, "square": "pad"})
