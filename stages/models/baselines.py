"""The architectures of the paper's baselines, DenseNet-121 (its CheXNet) and ResNet-50, from
``keras.applications``, randomly initialised and trained here.

References:
    P. Rajpurkar et al., "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep
    Learning", arXiv:1711.05225, 2017 (DenseNet-121: G. Huang et al., CVPR 2017).
    K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

Both are built with ``weights=None`` (nothing is downloaded; they train from scratch on the same
pretraining cohort as COVID-Net CXR-S) and take the same input scaling and the same head as
``stages.models.covidnet`` (and its batch-norm momentum), so the three rows of Table 3 differ
only in the backbone. The
keras.applications layer names (``conv1_conv``, ``conv5_block16_2_conv``, ...) are unique and
stable, which is what the by-name weight transfer needs. Neither has a width knob, so the
embedded default shrinks only their ``input_size``.
"""

from __future__ import annotations

import keras
from keras import layers

from stages.models.covidnet import BN_MOMENTUM, classification_head

# keras.applications refuses inputs below 32 px.
MIN_INPUT_SIZE = 32


def _with_head(application, model_name: str, input_size: int, n_classes: int, dense_units: int,
               head: str) -> keras.Model:
    if input_size < MIN_INPUT_SIZE:
        raise ValueError(f"{model_name}: input_size must be at least {MIN_INPUT_SIZE}, got {input_size}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="input_rescale")(inputs)
    # input_tensor splices the application's layers into this graph (flat, not a nested model),
    # so every backbone layer stays addressable by its own name.
    backbone = application(include_top=False, weights=None, input_tensor=scaled, pooling=None)
    outputs = classification_head(backbone.output, n_classes, dense_units, head)
    model = keras.Model(inputs, outputs, name=model_name)
    _name_padding_layers(model)
    for layer in model.layers:
        # Same batch-norm momentum as COVID-Net CXR-S: with keras.applications' 0.99 the moving
        # statistics had not caught up after the embedded default's 200 pretraining steps, and
        # both baselines scored 0.50 on the held-out list at 0.98 training accuracy.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def _name_padding_layers(model: keras.Model) -> None:
    """Give keras.applications' two unnamed DenseNet padding layers stable names.

    Auto names come from a process-wide counter (``zero_padding2d_3`` when a second model is
    built), so they are renamed in graph order to ResNet-50's names for the same layers.
    """
    unnamed = [layer for layer in model.layers
               if isinstance(layer, layers.ZeroPadding2D) and layer.name.startswith("zero_padding2d")]
    for layer, name in zip(unnamed, ("conv1_pad", "pool1_pad")):
        layer.name = name


def build_densenet121(input_size: int = 480, n_classes: int = 2, dense_units: int = 256,
                      head: str = "severity") -> keras.Model:
    """DenseNet-121 (the architecture of the paper's CheXNet baseline, randomly initialised) with the
    COVID-Net CXR-S head."""
    return _with_head(keras.applications.DenseNet121, "densenet121", input_size, n_classes, dense_units, head)


def build_resnet50(input_size: int = 480, n_classes: int = 2, dense_units: int = 256,
                   head: str = "severity") -> keras.Model:
    """ResNet-50 (v1) backbone with the COVID-Net CXR-S head."""
    return _with_head(keras.applications.ResNet50, "resnet50", input_size, n_classes, dense_units, head)


APPLICATIONS = {"densenet121": keras.applications.DenseNet121, "resnet50": keras.applications.ResNet50}


def imagenet_top_parameters(name: str) -> int:
    """Parameters of a keras.applications model with its 1000-class ImageNet classifier
    (DenseNet-121: 8,062,504, the paper's 8.1 M for CheXNet)."""
    return int(APPLICATIONS[name](include_top=True, weights=None, classes=1000).count_params())
