"""Inference batch norms folded into the network, with exact arithmetic, for the exports.

An inference batch norm is the affine map ``y = (x - mean) * s + beta`` with
``s = gamma / sqrt(moving_variance + epsilon)``. Where it follows a convolution whose output
feeds nothing else, it folds into that convolution: ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``. Where it cannot fold (DenseNet-121's pre-activation batch norms
sit on a concatenation), it becomes an :class:`ChannelAffine` layer holding ``s`` and
``beta - mean * s``.

Why here and not in TensorFlow's converter (ours): the converter folds batch norms itself, but it
computes ``s`` with TensorFlow's ``Rsqrt`` kernel, which on x86 is the processor's approximate
reciprocal square root (``rsqrtps``) refined by one Newton step: off the correctly rounded value by
up to 2 units in the last place (1 in 4 of a million draws here), and the approximation tables
differ between processor makers (Intel, AMD). The folded weights, and so the ``.tflite`` file's
bytes, would depend on the host. Here ``s`` is computed in float64 with numpy's correctly rounded
``sqrt`` and division, then rounded once to float32, so the file is the same on every host.
``tests/test_folding.py`` checks the arithmetic by hand and the folded model against the original.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="covidnet")
class ChannelAffine(keras.layers.Layer):
    """``x * scale + offset`` over the last axis (a batch norm that could not fold)."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale", trainable=False)
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", name="offset", trainable=False)

    def call(self, inputs, training=None, mask=None):  # a batch norm's call signature
        return inputs * self.scale + self.offset


@keras.saving.register_keras_serializable(package="covidnet")
class FoldedAway(keras.layers.Layer):
    """Where a batch norm was: it now lives in the convolution before it (the identity)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def batch_norm_affine(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` in float64 with ``BN(x) = x * s + t`` for an inference ``BatchNormalization`` layer."""
    weights = {w.path.rsplit("/", 1)[-1].split(":")[0]: np.asarray(w.numpy(), np.float64) for w in layer.weights}
    variance, mean = weights["moving_variance"], weights["moving_mean"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + float(layer.epsilon))
    return scale, beta - mean * scale


def fold_kernel(kernel: np.ndarray, bias: np.ndarray | None, scale: np.ndarray, shift: np.ndarray,
                depthwise: bool) -> tuple[np.ndarray, np.ndarray]:
    """Float32 ``(W', b')`` of a convolution followed by the affine ``x * scale + shift`` (float64 inside).

    Conv2D kernels are (kh, kw, in, out): output channel ``o`` is the last axis. DepthwiseConv2D
    kernels are (kh, kw, in, multiplier): output channel ``i * multiplier + m``.
    """
    kernel = np.asarray(kernel, np.float64)
    per_output = scale.reshape(kernel.shape[2], kernel.shape[3]) if depthwise else scale
    folded = kernel * per_output
    base = np.zeros_like(shift) if bias is None else np.asarray(bias, np.float64)
    return folded.astype(np.float32), (base * scale + shift).astype(np.float32)


def _producer(layer):
    """The layer whose output is ``layer``'s only input, or None."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def fold_batch_norms(model):
    """A copy of the functional ``model`` with no batch norm: each folded into the convolution before
    it where that convolution feeds only it, else an exact per-channel affine. Layer names are kept
    (a folded batch norm becomes a pass-through of its name), so ``gradcam_layer`` still resolves."""
    folds: dict[str, str] = {}  # batch norm -> the convolution it folds into
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            producer = _producer(layer)
            if (isinstance(producer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
                    and len(producer._outbound_nodes) == 1 and int(layer.axis if isinstance(layer.axis, int)
                                                                   else layer.axis[0]) in (-1, 3)):
                folds[layer.name] = producer.name
    folded_convs = set(folds.values())

    def clone(layer):
        config = layer.get_config()
        if layer.name in folded_convs:
            return layer.__class__.from_config({**config, "use_bias": True})
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.name in folds:
                return FoldedAway(name=layer.name)
            return ChannelAffine(name=layer.name)
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = folded.get_layer(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.name not in folds:
                scale, shift = batch_norm_affine(layer)
                target.set_weights([scale.astype(np.float32), shift.astype(np.float32)])
        elif layer.name in folded_convs:
            norm = next(model.get_layer(bn) for bn, conv in folds.items() if conv == layer.name)
            scale, shift = batch_norm_affine(norm)
            bias = layer.bias.numpy() if layer.use_bias else None
            kernel, new_bias = fold_kernel(layer.kernel.numpy(), bias, scale, shift,
                                           isinstance(layer, keras.layers.DepthwiseConv2D))
            target.set_weights([kernel, new_bias])
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return folded
