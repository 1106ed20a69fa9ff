import subprocess
import sys
import textwrap

import pytest

from stages.training.setup import get_strategy

SCRIPT = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from stages.models import build_model
    from stages.training.setup import get_strategy
    strategy = get_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model({"name": "covidnet_cxr_s", "input_size": 32, "width": 0.125,
                             "dense_units": 8}, n_classes=2, head="severity")
        # SGD: its update graph builds in seconds; the point here is the distribution, not the optimiser.
        model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = np.array([0, 1, 0, 1])
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    print("REPLICAS", strategy.num_replicas_in_sync)
""")


@pytest.mark.slow  # a fresh TensorFlow process with two logical CPUs (about a minute)
def test_one_step_under_mirrored_strategy_on_two_logical_cpus():
    # Logical devices must be configured before TensorFlow initialises: use a fresh interpreter.
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout


def test_unknown_strategy_rejected():
    with pytest.raises(SystemExit, match="train.strategy"):
        get_strategy("tpu_pod")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(SystemExit, match="TF_CONFIG"):
        get_strategy("multi_worker")
