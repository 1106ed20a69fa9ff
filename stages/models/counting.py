"""Parameters and FLOPs of a model, counted the way the paper's Table 2 counts them.

FLOPs come from TensorFlow's profiler (``float_operation``) on a frozen inference graph of one
image: variables become constants, so only the forward pass is counted, with 2 FLOPs per
multiply-add (convolutions, depthwise convolutions, matrix products, and the element-wise
batch-norm and sum operations the profiler knows). ``../shared/REFERENCE.md`` records what this
gives for the keras.applications baselines on TensorFlow 2.21: DenseNet-121 26.17 GFLOPs,
ResNet-50 35.59 GFLOPs at 480 x 480 x 3.

The graph counted is the one the pipeline runs, with :mod:`stages.models.numerics`' batch norm
(``scale / sqrt(var + eps)`` for ``rsqrt``): it counts 54,464 (CXR-S), 83,648 (DenseNet-121) and
53,120 (ResNet-50) fewer FLOPs than stock Keras' graph, under 8 parts per million.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


def profiler_flops(model: keras.Model, input_size: int) -> int:
    """Forward-pass FLOPs for one ``input_size`` x ``input_size`` x 3 image (TF profiler, frozen graph)."""
    forward = tf.function(lambda images: model(images, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec([1, input_size, input_size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        options = (tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="op", options=options)
    return int(profile.total_float_ops)


def parameter_counts(model: keras.Model, head: str) -> dict[str, int]:
    """All parameters (trainable and batch-norm statistics, as Keras counts them), split at the head."""
    head_params = sum(layer.count_params() for layer in model.layers if layer.name.startswith(f"{head}_"))
    total = int(model.count_params())
    return {"total": total, "backbone": total - int(head_params), "head": int(head_params)}
