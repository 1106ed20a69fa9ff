"""Training computes with correctly rounded operations only, so another CPU gives the same bits.

x86's ``rcpps`` and ``rsqrtps`` are approximations whose last bits differ between CPU makers;
TensorFlow's ``Rsqrt`` and ``Reciprocal`` kernels use them (``stages.models.numerics``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stages.models import MODELS, build_model
from stages.training.fit import WarmupLinearDecay, compile_for_training, validation_scores
from stages.models.numerics import APPROXIMATE_OPS, exact_batch_normalization


def graph_op_types(concrete_function) -> set[str]:
    graph = concrete_function.graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types.update(node.op for node in function.node_def)
    return types


# The keras.applications baselines trace for 15-40 s each: slow tier; CXR-S stays in the fast one.
@pytest.mark.parametrize("name", [m if m == "covidnet_cxr_s" else pytest.param(m, marks=pytest.mark.slow)
                                  for m in sorted(MODELS)])
def test_training_and_inference_graphs_hold_no_approximate_op(name):
    model = build_model({"name": name, "input_size": 32, "width": 0.25 if name == "covidnet_cxr_s" else 1.0,
                         "dense_units": 8}, n_classes=2, head="probe")
    compile_for_training(model, 1e-3, total_steps=10, warmup_fraction=0.1)
    images, labels = tf.TensorSpec((2, 32, 32, 3), tf.float32), tf.TensorSpec((2,), tf.int32)
    train = tf.function(lambda x, y: model.train_step((x, y))).get_concrete_function(images, labels)
    infer = tf.function(lambda x: model(x, training=False)).get_concrete_function(images)
    found = (graph_op_types(train) | graph_op_types(infer)) & APPROXIMATE_OPS
    assert not found, f"{name}: approximate ops in the graph: {sorted(found)}"
    assert {"Sqrt", "RealDiv"} <= graph_op_types(train)  # batch norm divides by a square root


def test_exact_batch_normalization_matches_a_float64_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (4, 5, 5, 6)).astype(np.float32)
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    gamma, beta = rng.uniform(0.5, 2, 6).astype(np.float32), rng.normal(0, 1, 6).astype(np.float32)
    expected = (x.astype(np.float64) - mean) / np.sqrt(variance.astype(np.float64) + 1e-3) * gamma + beta
    got = exact_batch_normalization(tf.constant(x), tf.constant(mean), tf.constant(variance), -1,
                                    offset=tf.constant(beta), scale=tf.constant(gamma), epsilon=1e-3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2e-5)
    # Channels first (axis 1) and no scale/offset: the same algebra.
    moved = np.moveaxis(x, -1, 1)
    got = exact_batch_normalization(tf.constant(moved), tf.constant(mean), tf.constant(variance), 1)
    expected = (moved.astype(np.float64) - mean[:, None, None]) / np.sqrt(variance[:, None, None] + 1e-3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2e-5)


def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    schedule = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    rates = [float(schedule(step)) for step in range(11)]
    # Hand values: warm-up 1/2, 2/2; then (10 - step) / 8 of the peak.
    expected = [5e-4, 1e-3, 1e-3, 7/8 * 1e-3, 6/8 * 1e-3, 5/8 * 1e-3, 4/8 * 1e-3, 3/8 * 1e-3, 2/8 * 1e-3,
                1/8 * 1e-3, 0.0]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-12)
    assert [float(WarmupLinearDecay(1.0, 4)(s)) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_validation_scores_by_hand():
    targets = np.array([0, 0, 1, 1, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    scores = validation_scores(targets, probabilities)
    level1 = -(np.log(0.9) + np.log(0.4)) / 2
    level2 = -(np.log(0.8) + np.log(0.7) + np.log(0.4) + np.log(0.9)) / 4
    assert scores["val_loss_balanced"] == pytest.approx((level1 + level2) / 2, abs=1e-6)
    assert scores["val_accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert scores["val_accuracy_balanced"] == pytest.approx((1 / 2 + 3 / 4) / 2, abs=1e-6)
    # AUC: of the 8 (Level 2, Level 1) pairs the Level 2 image scores higher in 7 (only 0.4 < 0.6).
    assert scores["val_roc_auc"] == pytest.approx(7 / 8, abs=1e-6)
