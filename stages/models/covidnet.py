"""COVID-Net CXR-S style network built from PEPX modules (Keras 3).

Reference:
    H. Aboutalebi, M. Pavlova, M. J. Shafiee, A. Sabri, A. Alaref, A. Wong,
    "COVID-Net CXR-S: Deep Convolutional Neural Network for Severity Assessment of COVID-19 Cases
    from Chest X-ray Images", Diagnostics 12(1):25, 2022.
    L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network design
    for detection of COVID-19 cases from chest X-ray images", Scientific Reports 10, 19549, 2020.

The paper's backbone came from a machine-driven design tool (GenSynth) and only TF1 checkpoints
were released, so this is an open reconstruction from the published description: a strided stem,
then stages of PEPX modules (1x1 first-stage Projection, 1x1 Expansion, 3x3 depthwise
convolution, 1x1 second-stage Projection, 1x1 eXtension), densely connected inside each stage and
fed by a 1x1 long-range projection of the stage input (COVID-Net's "selective long-range
connectivity"), mostly depthwise and pointwise convolutions. Every layer is named, so weights
move between models by name (see ``stages.models.transfer``).

Design at 480 x 480 x 3 and width 1.0 (the paper's Table 2 row: 8.8 M parameters, 11.1 GFLOPs
with 2 FLOPs per multiply-add; measured by ``stages.complexity`` with TensorFlow's profiler on a
frozen graph: 8,704,034 parameters with the 256-unit head, 11.24 GFLOPs):

- Stem: a 7 x 7 stride-2 convolution with 32 filters, then a 3 x 3 stride-2 max pool (to 120 x 120).
  A 7 x 7 convolution at 240 x 240 costs 0.14 GFLOPs per filter, so the stem stays narrow; the
  PEPX stages that follow widen the representation cheaply.
- Four stages at 120, 60, 30 and 15 px with 3, 4, 6 and 3 PEPX modules (COVID-Net's layout) and
  128, 256, 640 and 1536 output channels. A 1 x 1 weight at 120 x 120 costs 64 times the FLOPs of
  one at 15 x 15, so channels grow faster than the usual doubling in the late stages: the
  parameters sit where they are cheap (the last stage holds about 70% of them and about 30% of the
  FLOPs), which is how a GenSynth-style design reaches a parameter/FLOP ratio of 8.8 M / 11.1 G.
- PEPX widths: projection to 1/4 of the stage's channels, expansion to 1/2, a 3 x 3 depthwise
  convolution on the expanded map (the only spatial operator after the stem, carrying each
  stage's stride), projection back to 1/4 and a linear extension to the full width. Depthwise
  convolutions hold ~1% of the FLOPs; pointwise convolutions do almost all the work.
- Selective long-range connectivity: inside a stage every module reads the sum of all earlier
  module outputs plus a 1 x 1 projection of the stage input (dense summation rather than
  DenseNet's concatenation, so widths stay fixed and no long concat chains cost memory).
- Head: global average pooling, a dense layer (``dense_units``; 256 in the paper preset) and the
  2-way softmax.

``width`` scales every channel count (1.0 = full size) and ``input_size`` the square input, so the
embedded default trains on a CPU in minutes while the paper's 480 x 480 full-width model is one
parameter away. The constants below are the design; ``tests/test_complexity.py`` holds them to the
paper's Table 2 within 5%.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from stages.models import numerics  # noqa: F401  (exact batch norm in every graph the zoo builds)

# Channels and PEPX modules per stage at width 1.0 (COVID-Net's four-stage layout: 3, 4, 6, 3);
# the reasoning is in the module docstring.
STAGE_FILTERS = (128, 256, 640, 1536)
STAGE_BLOCKS = (3, 4, 6, 3)
STEM_FILTERS = 32
# Batch-norm statistics follow the weights within tens of steps rather than hundreds, so short
# schedules (the embedded default trains for a few hundred steps) evaluate with usable statistics.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class BackboneConfig:
    input_size: int = 480
    width: float = 1.0


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by ``width``, rounded to a multiple of ``divisor`` (at least divisor)."""
    return max(divisor, int(channels * width + divisor / 2) // divisor * divisor)


def conv_bn(x, filters: int, kernel: int, name: str, strides: int = 1, activation: bool = True,
            zero_gamma: bool = False):
    """Convolution, batch normalisation and (optionally) ReLU, all named ``{name}_*``."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, gamma_initializer="zeros" if zero_gamma else "ones",
                                  name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def pepx_block(x, filters: int, name: str, strides: int = 1):
    """PEPX: projection 1x1 -> expansion 1x1 -> depthwise 3x3 -> projection 1x1 -> extension 1x1.

    The first projection squeezes to a quarter of the output channels, the expansion widens to
    half, the depthwise 3x3 carries the spatial context (and the stride), and the second
    projection and extension restore the output width; the extension stays linear because its
    output is summed with the stage's other branches. Its batch-norm scale starts at zero, so each
    module starts as an identity on the stage's sum and the deep stack trains from the first step
    (without it, the densely summed stages did not learn the pretraining task in 8 epochs here).
    """
    squeeze = max(8, filters // 4)
    expand = max(8, filters // 2)
    x = conv_bn(x, squeeze, 1, f"{name}_project1")
    x = conv_bn(x, expand, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                               name=f"{name}_depthwise")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_depthwise_bn")(x)
    x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
    x = conv_bn(x, squeeze, 1, f"{name}_project2")
    return conv_bn(x, filters, 1, f"{name}_extend", activation=False, zero_gamma=True)


def pepx_stage(x, filters: int, blocks: int, name: str, strides: int):
    """A stage of densely connected PEPX modules plus a 1x1 long-range projection of its input.

    Each module reads the sum of the projection and every earlier module's output in the stage,
    as in COVID-Net, so early features reach late modules directly.
    """
    branches = [conv_bn(x, filters, 1, f"{name}_longrange", strides=strides, activation=False)]
    block_input = x
    for index in range(1, blocks + 1):
        block_name = f"{name}_pepx{index}"
        branches.append(pepx_block(block_input, filters, block_name, strides if index == 1 else 1))
        summed = layers.Add(name=f"{block_name}_sum")(branches)
        block_input = layers.ReLU(name=f"{block_name}_out")(summed)
    return block_input


def covidnet_cxr_s_backbone(inputs, width: float = 1.0):
    """Backbone feature map of COVID-Net CXR-S for an image tensor in [0, 255]."""
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="input_rescale")(inputs)
    x = conv_bn(x, scaled(STEM_FILTERS, width), 7, "stem", strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, blocks) in enumerate(zip(STAGE_FILTERS, STAGE_BLOCKS), start=1):
        x = pepx_stage(x, scaled(filters, width), blocks, f"stage{stage}",
                       strides=1 if stage == 1 else 2)
    return x


def classification_head(features, n_classes: int, dense_units: int, head: str):
    """The paper's head: pooled features -> a dense layer -> an n-way softmax."""
    x = layers.GlobalAveragePooling2D(name=f"{head}_pool")(features)
    x = layers.Dense(dense_units, activation="relu", name=f"{head}_dense")(x)
    return layers.Dense(n_classes, activation="softmax", name=f"{head}_output")(x)


def build_covidnet_cxr_s(input_size: int = 480, width: float = 1.0, n_classes: int = 2,
                         dense_units: int = 256, head: str = "severity") -> keras.Model:
    """COVID-Net CXR-S: the PEPX backbone with a dense + ``n_classes``-way head named ``head``."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    features = covidnet_cxr_s_backbone(inputs, width)
    outputs = classification_head(features, n_classes, dense_units, head)
    return keras.Model(inputs, outputs, name="covidnet_cxr_s")
