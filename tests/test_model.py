import re

import keras
import numpy as np
import pytest

from stages.models import build_model, load_model, save_weights
from stages.models.covidnet import build_covidnet_cxr_s, pepx_block, scaled
from stages.models.transfer import WeightTransferError, transfer_by_name

SMALL = {"name": "covidnet_cxr_s", "input_size": 64, "width": 0.125, "dense_units": 16}
AUTO_NAME = re.compile(r"^(conv2d|batch_normalization|re_lu|add|dense|depthwise_conv2d|max_pooling2d)(_\d+)?$")


def test_builds_small_and_predicts_probabilities():
    model = build_model(SMALL, n_classes=2, head="severity")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 2)
    out = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_every_layer_named():
    model = build_covidnet_cxr_s(64, 0.125, dense_units=16)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert not [n for n in names if AUTO_NAME.match(n)]
    assert {"severity_dense", "severity_output", "stem_conv", "stage4_pepx3_depthwise"} <= set(names)


def test_width_scales_parameters():
    small = build_covidnet_cxr_s(64, 0.125, dense_units=16).count_params()
    larger = build_covidnet_cxr_s(64, 0.25, dense_units=16).count_params()
    assert 2.5 < larger / small < 4.5  # pointwise layers grow ~quadratically with width


def test_pepx_block_shapes():
    inputs = keras.Input((16, 16, 24))
    out = pepx_block(inputs, 32, "probe", strides=2)
    model = keras.Model(inputs, out)
    assert model.output_shape == (None, 8, 8, 32)
    kinds = [(layer.name, type(layer).__name__) for layer in model.layers if "conv" in type(layer).__name__.lower()]
    assert [k for _, k in kinds] == ["Conv2D", "Conv2D", "DepthwiseConv2D", "Conv2D", "Conv2D"]
    assert model.get_layer("probe_project1_conv").filters == 8
    assert model.get_layer("probe_expand_conv").filters == 16
    assert model.get_layer("probe_extend_conv").filters == 32


def test_scaled_channels():
    assert scaled(256, 1.0) == 256 and scaled(256, 0.25) == 64 and scaled(20, 0.1) == 8


def test_transfer_by_name_copies_backbone_not_head():
    source = build_model(SMALL, n_classes=2, head="covidx")
    target = build_model(SMALL, n_classes=2, head="severity")
    copied = transfer_by_name(source, target, ("covidx_", "severity_"))
    assert "stem_conv" in copied and not [n for n in copied if n.startswith("severity_")]
    for name in ("stem_conv", "stage3_pepx2_depthwise", "stage4_longrange_bn"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_transfer_fails_on_missing_or_renamed_layer():
    source = build_model(SMALL, n_classes=2, head="covidx")
    target = build_model(SMALL, n_classes=2, head="severity")
    source.get_layer("stage2_pepx1_expand_conv").name = "renamed_layer"
    with pytest.raises(WeightTransferError, match="stage2_pepx1_expand_conv"):
        transfer_by_name(source, target, ("covidx_", "severity_"))


def test_transfer_fails_on_shape_mismatch():
    source = build_model({**SMALL, "width": 0.25}, n_classes=2, head="covidx")
    target = build_model(SMALL, n_classes=2, head="severity")
    with pytest.raises(WeightTransferError, match="other shapes"):
        transfer_by_name(source, target, ("covidx_", "severity_"))


def test_save_and_load_weights_round_trip_and_are_byte_stable(tmp_path):
    model = build_model(SMALL, n_classes=2, head="severity")
    save_weights(model, tmp_path / "a.weights.h5")
    save_weights(model, tmp_path / "b.weights.h5")
    assert (tmp_path / "a.weights.h5").read_bytes() == (tmp_path / "b.weights.h5").read_bytes()
    loaded = load_model(SMALL, 2, "severity", tmp_path / "a.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        load_model(SMALL, 2, "severity", tmp_path / "missing.weights.h5")


BASELINES = [{"name": "densenet121", "input_size": 32, "dense_units": 8},
             {"name": "resnet50", "input_size": 32, "dense_units": 8}]


@pytest.mark.parametrize("params", BASELINES, ids=lambda p: p["name"])
def test_baselines_build_small_with_the_same_head(params):
    model = build_model(params, n_classes=2, head="severity")
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 2)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert not [n for n in names if AUTO_NAME.match(n) or n.startswith("zero_padding2d")]
    assert names[-3:] == ["severity_pool", "severity_dense", "severity_output"]
    assert "input_rescale" in names and "conv1_conv" in names
    assert model.get_layer("severity_dense").units == 8


def test_baseline_layer_names_are_stable_across_builds():
    first = [layer.name for layer in build_model(BASELINES[0], 2, "covidx").layers]
    second = [layer.name for layer in build_model(BASELINES[0], 2, "covidx").layers]
    assert first == second


def test_baselines_refuse_width_and_tiny_inputs():
    with pytest.raises(SystemExit, match="width"):
        build_model({**BASELINES[1], "width": 0.5}, n_classes=2, head="severity")
    with pytest.raises(ValueError, match="at least 32"):
        build_model({**BASELINES[1], "input_size": 16}, n_classes=2, head="severity")


def test_baseline_transfer_by_name_and_renamed_layer_fails():
    source = build_model(BASELINES[0], n_classes=2, head="covidx")
    target = build_model(BASELINES[0], n_classes=2, head="severity")
    copied = transfer_by_name(source, target, ("covidx_", "severity_"))
    assert "conv5_block16_2_conv" in copied and "conv1_conv" in copied
    np.testing.assert_array_equal(source.get_layer("conv3_block2_1_conv").get_weights()[0],
                                  target.get_layer("conv3_block2_1_conv").get_weights()[0])
    source.get_layer("conv4_block7_0_bn").name = "some_other_name"
    with pytest.raises(WeightTransferError, match="conv4_block7_0_bn"):
        transfer_by_name(source, target, ("covidx_", "severity_"))


def test_full_size_cxr_s_stage_layout():
    # The design of the module docstring: stage widths and 3/4/6/3 PEPX modules at 480 px.
    model = build_covidnet_cxr_s(480, 1.0, dense_units=256)
    assert model.get_layer("stem_conv").filters == 32
    assert [model.get_layer(f"stage{s}_longrange_conv").filters for s in range(1, 5)] == [128, 256, 640, 1536]
    for stage, blocks in zip(range(1, 5), (3, 4, 6, 3)):
        assert f"stage{stage}_pepx{blocks}_extend_conv" in {layer.name for layer in model.layers}
    assert model.get_layer("stage4_pepx3_out").output.shape[1:] == (15, 15, 1536)
