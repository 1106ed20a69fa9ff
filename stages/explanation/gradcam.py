"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017) of the severity head, with ``tf.GradientTape``.

The explained score is the Level 2 logit margin ``z2 - z1`` (the log-odds of Level 2), the
pre-softmax score Grad-CAM prescribes, computed from the ``{head}_dense`` activations and the
``{head}_output`` layer's kernel so that a saturated softmax does not zero the gradient. The
feature map is the layer the registry names for the model (``ModelSpec.gradcam_layer``): each
channel is weighted by the spatial mean of the score's gradient over it, the weighted sum goes
through a ReLU, and the map is upsampled bilinearly to the input size (the paper's recipe).
"""

from __future__ import annotations

import numpy as np

from stages.imaging.preprocess import resize_square


def level2_logit_margin(dense, output_layer):
    """``z2 - z1`` of a Dense softmax output layer, from its input activations (no softmax)."""
    import tensorflow as tf

    logits = tf.matmul(dense, output_layer.kernel) + output_layer.bias
    return logits[:, 1] - logits[:, 0], tf.nn.softmax(logits)


class GradCam:
    """Grad-CAM of one model at one layer; call it on a batch of network inputs."""

    def __init__(self, model, layer: str, head: str):
        import keras

        names = {item.name for item in model.layers}
        for name in (layer, f"{head}_dense", f"{head}_output"):
            if name not in names:
                raise SystemExit(f"Grad-CAM: {model.name} has no layer {name!r} (the registry's gradcam_layer "
                                 f"and the head's layers must exist)")
        self.output_layer = model.get_layer(f"{head}_output")
        self.probe = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer(f"{head}_dense").output])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, cams)``: (N, 2), and (N, h, w) non-negative maps at the layer's resolution."""
        import tensorflow as tf

        inputs = tf.convert_to_tensor(images, tf.float32)
        with tf.GradientTape() as tape:
            features, dense = self.probe(inputs, training=False)
            score, probabilities = level2_logit_margin(dense, self.output_layer)
        gradients = tape.gradient(score, features)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
        return probabilities.numpy().astype(np.float64), cams.numpy().astype(np.float32)

    def margins(self, images: np.ndarray) -> np.ndarray:
        """The explained score ``z2 - z1`` of each image (N,), float64, without the tape."""
        import tensorflow as tf

        _, dense = self.probe(tf.convert_to_tensor(images, tf.float32), training=False)
        score, _ = level2_logit_margin(dense, self.output_layer)
        return score.numpy().astype(np.float64)


def upsample(cam: np.ndarray, size: int) -> np.ndarray:
    """A CAM resized bilinearly to size x size (float32, still non-negative)."""
    return np.clip(resize_square(cam, size), 0.0, None)


def overlay(grey: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: the grey image (uint8) under the CAM (same size) in matplotlib's ``jet``, scaled to its max."""
    from matplotlib import colormaps

    peak = float(cam.max())
    scaled = cam / peak if peak > 0 else np.zeros_like(cam)
    colour = colormaps["jet"](scaled)[..., :3]
    base = np.repeat(grey.astype(np.float64)[..., None] / 255.0, 3, axis=2)
    return np.clip(np.rint(((1 - alpha) * base + alpha * colour) * 255.0), 0, 255).astype(np.uint8)


# Central-difference step for the LiteRT Grad-CAM, as a fraction of the feature map's mean |value|
# (ours, not tuned): small enough that the margin is nearly linear, large enough above float32
# rounding. On all 87 of the fine-tuned models' test images the worst map was 2-8.5% (of its maximum) off
# the tape's (metrics/export/<model>.json, litert_gradcam): ReLUs that switch within the step.
DIFFERENCE_STEP = 1e-2


def gradient_free_gradcam(model, layer: str, head: str, input_size: int):
    """A frozen TensorFlow function (1, size, size, 3) -> {"probabilities", "cam"} with no gradient op,
    for LiteRT: its builtin operators have no gradients (the converter needs TensorFlow's own kernels
    for ``ReluGrad`` and ``DepthwiseConv2dNativeBackpropInput``).

    Grad-CAM's channel weight is the spatial mean of the margin's gradient; the sum of a channel's
    gradient over all positions is the derivative of the margin along "add the same amount to the
    whole channel", estimated here by central differences: the network after ``layer`` runs once on
    a batch of 2C maps, each channel raised and lowered in turn. Exact up to the step's curvature
    and rounding error (see :data:`DIFFERENCE_STEP`); cheap at the embedded 32 px (maps of 2 x 2 to 8 x 8),
    costly at 480 px (2C passes of the later stages).
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    features = keras.Model(model.inputs, model.get_layer(layer).output)
    after = keras.Model(model.get_layer(layer).output, model.get_layer(f"{head}_dense").output)
    output_layer = model.get_layer(f"{head}_output")
    height, width, channels = features.output.shape[1:]
    directions = np.concatenate([np.eye(channels), -np.eye(channels)]).astype(np.float32)[:, None, None, :]

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.float32)])
    def explain(images):
        maps = features(images, training=False)
        step = DIFFERENCE_STEP * (tf.reduce_mean(tf.abs(maps)) + 1e-6)
        margins, _ = level2_logit_margin(after(maps + step * directions, training=False), output_layer)
        _, probabilities = level2_logit_margin(after(maps, training=False), output_layer)
        weights = (margins[:channels] - margins[channels:]) / (2.0 * step) / float(height * width)
        return {"probabilities": probabilities, "cam": tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1))}

    return convert_variables_to_constants_v2(explain.get_concrete_function())
