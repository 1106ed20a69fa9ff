"""stages.models.folding: batch norms folded with exact arithmetic, checked by hand and against Keras."""

from __future__ import annotations

import numpy as np
import pytest

from stages.models.folding import fold_kernel


def test_fold_kernel_by_hand():
    # A 1x1 convolution, 1 input channel, 2 outputs, kernel [2, 3], bias [1, -1], then a batch norm
    # with gamma [1, 2], beta [0.5, 0], mean [1, 2], variance [3, 0] (epsilon 1):
    # s = gamma / sqrt(variance + 1) = [1/2, 2]; t = beta - mean * s = [0, -4].
    # W' = W * s = [1, 6]; b' = b * s + t = [0.5, -6].
    scale = np.array([1 / 2, 2.0])
    shift = np.array([0.0, -4.0])
    kernel, bias = fold_kernel(np.array([2.0, 3.0]).reshape(1, 1, 1, 2), np.array([1.0, -1.0]), scale, shift,
                               depthwise=False)
    assert kernel.dtype == np.float32 and bias.dtype == np.float32
    np.testing.assert_array_equal(kernel.reshape(2), [1.0, 6.0])
    np.testing.assert_array_equal(bias, [0.5, -6.0])


def test_fold_depthwise_kernel_scales_channel_times_multiplier():
    # Depthwise kernel (1, 1, in=2, multiplier=2): output channel i * 2 + m takes scale[i * 2 + m].
    kernel = np.ones((1, 1, 2, 2))
    scale = np.array([1.0, 2.0, 3.0, 4.0])
    folded, bias = fold_kernel(kernel, None, scale, np.zeros(4), depthwise=True)
    np.testing.assert_array_equal(folded[0, 0], [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(bias, np.zeros(4))


@pytest.mark.parametrize("name", ["covidnet_cxr_s", "densenet121"])
def test_folded_model_computes_what_the_model_computes_with_no_batch_norm_left(name):
    import keras

    from stages.models import build_model
    from stages.models.folding import fold_batch_norms

    width = 0.125 if name == "covidnet_cxr_s" else 1.0  # the keras.applications baselines are full width only
    model = build_model({"name": name, "input_size": 32, "width": width, "dense_units": 8}, 2, "severity")
    rng = np.random.default_rng(0)
    # Non-trivial statistics everywhere (a fresh model has mean 0, variance 1, some gamma 0).
    model.set_weights([np.abs(rng.normal(1.0, 0.3, w.shape)).astype("float32") if "variance" in v.path
                       else rng.normal(0, 0.3, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])
    folded = fold_batch_norms(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(folded(images, training=False).numpy(), expected, atol=1e-5)


def test_folded_scale_is_the_correctly_rounded_one_not_tensorflows_rsqrt():
    """The reason for the module: TensorFlow's Rsqrt is approximate (rsqrtps + a Newton step on x86),
    the fold must not be. For these variances, float64 1/sqrt rounded once to float32 is exact."""
    import keras

    from stages.models.folding import batch_norm_affine

    variance = np.random.default_rng(3).uniform(1e-3, 10, 4096).astype(np.float32)
    layer = keras.layers.BatchNormalization(epsilon=0.0, center=False, scale=False)
    layer.build((None, 4096))
    layer.set_weights([np.zeros(4096, np.float32), variance])
    scale, shift = batch_norm_affine(layer)
    np.testing.assert_array_equal(scale.astype(np.float32),
                                  (1.0 / np.sqrt(variance.astype(np.float64))).astype(np.float32))
    np.testing.assert_array_equal(shift, np.zeros(4096))
