"""Correctly rounded batch normalisation, so another CPU computes the same bits (ours).

x86 has two *approximate* instructions, ``rcpps`` and ``rsqrtps``, whose last bits differ between
CPU makers (and emulators), and Eigen builds TensorFlow's ``Rsqrt`` and ``Reciprocal`` CPU kernels
on them. Keras' batch normalisation calls ``tf.math.rsqrt``; from the import of this module on it
divides by ``tf.sqrt`` instead (both correctly rounded by IEEE 754). :mod:`stages.models.covidnet`
imports it (and the baselines import that module), so every graph the zoo builds (training,
evaluation, Table 2's FLOP count, the benchmarks) is the same graph. ``stages.training.setup`` turns Grappler off, whose arithmetic rewrites would put
``Rsqrt`` back. ``tests/test_numerics.py`` fails if a graph still holds one of
:data:`APPROXIMATE_OPS`.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.backend.tensorflow import nn as _keras_tf_nn

# TensorFlow ops whose CPU kernels use x86's approximate rcpps/rsqrtps (vendor-dependent bits).
APPROXIMATE_OPS = frozenset({"Rsqrt", "Reciprocal", "Inv"})


def exact_batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """Keras' TensorFlow batch normalisation with ``scale / sqrt(variance + eps)`` for ``rsqrt``.

    The same algebra as ``tf.nn.batch_normalization`` (``x * inv + (offset - mean * inv)``).
    """
    if axis != -1:
        shape = [1] * len(x.shape)
        shape[axis] = mean.shape[0]
        mean, variance = tf.reshape(mean, shape), tf.reshape(variance, shape)
        offset = None if offset is None else tf.reshape(offset, shape)
        scale = None if scale is None else tf.reshape(scale, shape)
    inv = (tf.ones_like(variance) if scale is None else scale) / tf.sqrt(variance + epsilon)
    return x * tf.cast(inv, x.dtype) + tf.cast(-mean * inv if offset is None else offset - mean * inv, x.dtype)


# Keras looks the backend function up at call time, so every BatchNormalization layer (ours and
# keras.applications') uses the exact one from here on.
_keras_tf_nn.batch_normalization = exact_batch_normalization
