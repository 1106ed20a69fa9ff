import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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


JOB = Path(__file__).with_name("multi_worker_job.py")
# Largest weight difference allowed between two workers and one worker with the same global batch.
# Measured: 6.0e-8 (2 float32 ulps of the largest weight, 0.34) after 6 Adam steps: the replicas'
# gradients are summed in another order than one batch's. A planted global/per-worker batch mix-up
# moves them by 2e-2 (twice the learning rate), 2e4 times this.
WEIGHT_TOLERANCE = 1e-6


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (all held open while choosing, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _weights(path: Path) -> tuple[list[np.ndarray], dict]:
    """The trained weights, and the initial ones, the replica count, the selected epoch, the curves."""
    saved = np.load(path)
    count = sum(k.startswith("weight") for k in saved.files)
    return [saved[f"weight{i}"] for i in range(count)], {
        "initial": [saved[f"initial{i}"] for i in range(count)], "replicas": int(saved["replicas"]),
        "best_epoch": int(saved["best_epoch"]), "history": json.loads(str(saved["history"]))}


@pytest.mark.slow  # three fresh TensorFlow processes (about 40 s here)
def test_two_workers_train_like_one_worker_with_the_same_global_batch(tmp_path):
    """Two processes on 127.0.0.1, a TF_CONFIG each, ``get_strategy("multi_worker")`` and the stages'
    ``compile_for_training``/``fit``; a third process trains alone on the same global batches."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    runs = {}
    for name, strategy, tf_config in [
        ("worker0", "multi_worker", {"cluster": cluster, "task": {"type": "worker", "index": 0}}),
        ("worker1", "multi_worker", {"cluster": cluster, "task": {"type": "worker", "index": 1}}),
        ("one_worker", "default", None),
    ]:
        env = dict(base_env, **({"TF_CONFIG": json.dumps(tf_config)} if tf_config else {}))
        runs[name] = subprocess.Popen([sys.executable, str(JOB), "--strategy", strategy,
                                       "--out", str(tmp_path / f"{name}.npz")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        outputs = {name: process.communicate(timeout=300)[0] for name, process in runs.items()}
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
    for name, process in runs.items():
        assert process.returncode == 0, f"{name} exited {process.returncode}:\n{outputs[name][-3000:]}"

    (w0, info0), (w1, info1), (one, info_one) = (_weights(tmp_path / f"{n}.npz") for n in runs)
    assert (info0["replicas"], info1["replicas"], info_one["replicas"]) == (2, 2, 1)
    # Every worker applies the same all-reduced update: the same bits on both.
    assert all(np.array_equal(a, b) for a, b in zip(w0, w1, strict=True))
    # And the same model as one worker trained on whole batches, to rounding.
    differences = [float(np.max(np.abs(a - b))) for a, b in zip(w0, one, strict=True)]
    assert max(differences) <= WEIGHT_TOLERANCE, differences
    # Training moved every weight array by far more than that tolerance.
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(w0, info0["initial"], strict=True)]
    assert min(moved) > 1000 * WEIGHT_TOLERANCE, moved
    # Both selected the same epoch on the same validation scores (model.predict across workers).
    assert info0["best_epoch"] == info_one["best_epoch"]
    for key, values in info_one["history"].items():
        assert np.allclose(info0["history"][key], values, rtol=0, atol=1e-5), (key, info0["history"][key], values)
