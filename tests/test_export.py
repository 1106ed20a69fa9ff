"""Stage ``export``: SavedModel and LiteRT files that compute what the Keras model computes, batch
norms folded, and the LiteRT file usable without TensorFlow."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages import export, litert
from stages.models import build_model
from stages.models.folding import fold_batch_norms

REPO = Path(__file__).resolve().parents[1]


def random_weights(model, seed: int = 0):
    """Non-trivial weights everywhere (a fresh CXR-S zeroes each PEPX extension's batch-norm scale)."""
    rng = np.random.default_rng(seed)
    model.set_weights([np.abs(rng.normal(1.0, 0.3, w.shape)).astype("float32") if "variance" in v.path
                       else rng.normal(0, 0.3, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("export")
    model = random_weights(build_model({"name": "covidnet_cxr_s", "input_size": 32, "width": 0.125,
                                        "dense_units": 8}, 2, "severity"))
    export.write_exports(fold_batch_norms(model), root / "saved_model", root / "model.tflite")
    batch_norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    return root, model, batch_norms


@pytest.mark.slow
def test_exports_match_the_keras_model_and_fold_every_batch_norm(exported):
    import tensorflow as tf

    root, model, batch_norms = exported
    images = np.random.default_rng(1).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)[:, 1]
    loaded = tf.saved_model.load(str(root / "saved_model"))  # keep it: serve() needs its variables alive
    saved = loaded.serve(tf.constant(images)).numpy()[:, 1]
    assert np.max(np.abs(saved - expected)) <= export.PARITY_GOALS["saved_model"]
    assert np.max(np.abs(litert.Runner(root / "model.tflite")(images)[:, 1] - expected)) <= export.PARITY_GOALS["litert"]
    operators = litert.operator_counts(root / "model.tflite")
    # Every CXR-S batch norm follows a convolution: one convolution per batch norm, and the only MUL
    # left is the input rescaling (x / 127.5 - 1). An unfolded batch norm would add a MUL.
    assert operators["CONV_2D"] + operators["DEPTHWISE_CONV_2D"] == batch_norms
    assert operators["MUL"] == 1


@pytest.mark.slow
def test_litert_file_runs_in_a_process_without_tensorflow(exported, tmp_path):
    root, model, _ = exported
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = ("import json, sys, numpy as np; from stages import litert; "
              f"p = litert.Runner(__import__('pathlib').Path('{root / 'model.tflite'}'))(np.load('{tmp_path / 'images.npy'}')); "
              "print(json.dumps({'p': p[:, 1].tolist(), 'tf': 'tensorflow' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tf"] is False
    np.testing.assert_allclose(result["p"], model.predict(images, verbose=0)[:, 1], atol=1e-3)


@pytest.mark.slow
def test_litert_gradcam_matches_the_tape_without_gradient_operators(exported):
    """Oracle: Grad-CAM by tf.GradientTape on the Keras model. The LiteRT file estimates the channel
    gradients by central differences: maps within 2% of their maximum, same probabilities."""
    from stages.explanation.gradcam import GradCam

    root, model, _ = exported
    export.write_gradcam_litert(fold_batch_norms(model), "stage2_pepx4_out", "severity", 32, root / "gradcam.tflite")
    operators = litert.operator_counts(root / "gradcam.tflite")
    assert not any("GRAD" in name or "BACKPROP" in name or name in ("CUSTOM", "FLEX") for name in operators)
    images = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    expected_p, expected = GradCam(model, "stage2_pepx4_out", "severity")(images)
    got_p, got = litert.GradCamRunner(root / "gradcam.tflite")(images)
    np.testing.assert_allclose(got_p, expected_p, atol=1e-5)
    peaks = expected.max(axis=(1, 2))
    assert (peaks > 0).all()
    assert (np.abs(got - expected).max(axis=(1, 2)) <= 0.02 * peaks).all()


def test_export_paths_default_by_model():
    paths = export.Paths.for_model("resnet50")
    assert paths.tflite == Path("models/resnet50/export/model.tflite")
    assert paths.saved_model == Path("models/resnet50/export/saved_model")
    assert paths.gradcam == Path("models/resnet50/export/gradcam.tflite")
    assert paths.metrics == Path("metrics/export/resnet50.json")


def test_the_grad_cam_sample_spreads_from_the_first_to_the_last_test_image():
    # By hand: 87 images, 4 wanted -> 0, 86 // 3 = 28, 2 * 86 // 3 = 57, 86.
    assert export.evenly_spaced(87, 4).tolist() == [0, 28, 57, 86]
    assert export.evenly_spaced(87, 16).tolist()[:3] == [0, 5, 11] and export.evenly_spaced(87, 16)[-1] == 86
    assert len(set(export.evenly_spaced(87, 16).tolist())) == 16
    assert export.evenly_spaced(5, None).tolist() == [0, 1, 2, 3, 4]
    assert export.evenly_spaced(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert export.evenly_spaced(5, 1).tolist() == [0]
    with pytest.raises(SystemExit, match="gradcam_images must be at least 1"):
        export.evenly_spaced(5, 0)


def test_parity_figures_are_recorded_as_the_power_of_ten_above_them():
    # By hand: 1.37e-06 and 1.34e-06 (one file, two hosts) both lie in (1e-06, 1e-05].
    assert export.decade_ceiling(1.37e-6) == 1e-5 == export.decade_ceiling(1.34e-6)
    assert export.decade_ceiling(1e-3) == 1e-3  # a power of ten is its own ceiling
    assert export.decade_ceiling(0.026) == 0.1
    assert export.decade_ceiling(2.0) == 10.0
    assert export.decade_ceiling(0.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        export.decade_ceiling(-1e-6)


SAVE_SCRIPT = """
import hashlib, sys
from pathlib import Path
import numpy as np
from stages import export
from stages.models import build_model
sys.path.insert(0, {tests!r})
from test_export import random_weights
model = random_weights(build_model({{"name": "covidnet_cxr_s", "input_size": 32, "width": 0.125,
                                     "dense_units": 8}}, 2, "severity"))
target = Path({target!r})
export.export_saved_model(model, target)
digest = hashlib.md5()
for path in sorted(p for p in target.rglob("*") if p.is_file()):
    digest.update(str(path.relative_to(target)).encode() + path.read_bytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_the_saved_model_has_the_same_bytes_in_two_processes(tmp_path):
    """keras.Model.export orders the variables as TensorFlow's set of a traced function's variables
    comes out, which changes from process to process, and writes a random uuid into fingerprint.pb."""
    digests = []
    for run in range(2):
        script = SAVE_SCRIPT.format(tests=str(REPO / "tests"), target=str(tmp_path / f"saved_{run}"))
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
        digests.append(done.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


REFERENCE_SCRIPT = """
import hashlib, sys
from pathlib import Path
import numpy as np
from stages import litert
images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
print(hashlib.md5(litert.Runner(Path(sys.argv[1]), reference=True)(images).tobytes()).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="qemu-x86_64 not installed (Debian package qemu-user; .ci/run installs it)")
def test_reference_kernels_give_the_same_bits_on_an_emulated_cpu(exported):
    """The parity of record runs LiteRT's reference kernels: the same bits on another x86-64 CPU
    (qemu's Haswell: AVX2, no AVX-512) as on this one."""
    root, _, _ = exported
    command = [sys.executable, "-c", REFERENCE_SCRIPT, str(root / "model.tflite")]
    here = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    emulated = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", *command], cwd=REPO, capture_output=True,
                              text=True, check=True)
    assert here.stdout.strip().splitlines()[-1] == emulated.stdout.strip().splitlines()[-1]
