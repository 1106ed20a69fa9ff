"""TensorFlow set-up shared by the training stages: quiet logs, determinism, distribution.

Same weights on every machine (with the CPU pins of :mod:`stages.common.cpu`): x86 has two
*approximate* instructions, ``rcpps`` and ``rsqrtps``, whose last bits differ between CPU makers
(and emulators), and Eigen builds TensorFlow's ``Rsqrt`` and ``Reciprocal`` kernels on them. Keras'
batch normalisation calls ``tf.math.rsqrt``; here it divides by ``tf.sqrt`` instead (both
correctly rounded by IEEE 754), and Grappler, whose arithmetic rewrites would turn ``x / sqrt(y)``
back into ``x * rsqrt(y)`` and ``1 / x`` into ``Reciprocal``, is off.
``tests/test_numerics.py`` fails if a training graph still holds one of :data:`APPROXIMATE_OPS`.
"""

from __future__ import annotations

import os

# Before TensorFlow loads: keep its C++ log noise off the console. oneDNN's CPU kernels stay on
# (TensorFlow's default; stages.common.cpu caps them at AVX2): with one intra-op thread (below)
# their summation order is fixed, and they train ResNet-50 about 4x faster than TensorFlow's own
# kernels on this 2-core machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.backend.tensorflow import nn as _keras_tf_nn  # noqa: E402

STRATEGIES = ("default", "mirrored", "multi_worker")
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


def make_deterministic(seed: int) -> None:
    """Same params and code -> same weights: seed every generator and force deterministic ops."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    # Graphs run as written: Grappler would rewrite x / sqrt(y) to x * rsqrt(y) and 1 / x to
    # Reciprocal (see the module docstring), and its passes took 2-10 s of every stage's first
    # step for no measurable gain per step on these small graphs.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    # One thread per op: a multi-threaded CPU kernel (oneDNN's or Eigen's) may split a large
    # reduction (a convolution's filter gradient sums over batch x pixels) into shards whose
    # partial sums are added in completion order, so forced reruns gave other weights (seen with
    # oneDNN and the default thread count). Independent ops still run in parallel.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialised (e.g. in tests); the setting cannot change any more


def get_strategy(name: str) -> tf.distribute.Strategy:
    """``train.strategy``: the default (one device), mirrored (all local devices) or multi-worker.

    ``multi_worker`` reads the cluster from the ``TF_CONFIG`` environment variable, as
    ``tf.distribute.MultiWorkerMirroredStrategy`` documents.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("train.strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SystemExit(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
