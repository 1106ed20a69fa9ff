"""Stage ``export``: each fine-tuned model as a TensorFlow SavedModel and a LiteRT ``.tflite`` file.

Run once per model (``export@<model>``). The Keras model (``finetune@<model>``'s weights) has its
inference batch norms folded with exact arithmetic (:mod:`stages.models.folding`: into the
convolution before each, else a per-channel affine), and is written as a SavedModel with a ``serve``
endpoint (float32 images in [0, 255], (N, size, size, 3) -> (N, 2) probabilities; the variables in
the model's order, so the bytes are the same run to run); that SavedModel is converted to LiteRT's
flatbuffer by TensorFlow's converter (the file's operator counts are recorded: a batch norm left
unfolded would be a MUL and an ADD). ``predict --backend litert`` runs the
.tflite through ``ai-edge-litert`` without TensorFlow. A second LiteRT file, ``gradcam.tflite``,
gives the Grad-CAM map with the gradients estimated by central differences (LiteRT computes no
gradients: :func:`stages.explanation.gradcam.gradient_free_gradcam`); its maps are compared with
the tape's on ``export.gradcam_images`` test images, evenly spaced in the split's order (each image
runs the network after the Grad-CAM layer on 2 x channels maps: about half a second per image for
DenseNet-121 and ResNet-50 here, so all 87 took most of the stage; null: every test image).

Parity is checked on every test image (as ``evaluate`` feeds them): the largest |difference| in
P(Level 2) between the Keras model and the SavedModel (goal <= 1e-4), and between the Keras model
and the LiteRT file (goal <= 1e-3, float32), run by the ``ai-edge-litert`` interpreter twice: with
LiteRT's reference kernels (plain loops: the same bits on every host, so the figure is recorded as
it is) and with the XNNPACK delegate that ``predict`` uses (kernels chosen by the host: recorded as
the power of ten it is below, :func:`decade_ceiling`, as is the Grad-CAM comparison, which runs on
XNNPACK too; the stage prints every exact figure). File sizes go beside them. Timings are
machine- and load-dependent, so they are measured by ``benchmarks/export_latency.py`` and
``benchmarks/inference.py``, not here (a stage's outputs must not change between runs).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages import litert
from stages.common.cli import model_stage_arguments
from stages.common.io import atomic_folder, write_bytes, write_json
from stages.tasks import SEVERITY, level_targets

# Largest |difference| in P(Level 2) from the Keras model accepted on the test images (issue 18).
PARITY_GOALS = {"saved_model": 1e-4, "litert": 1e-3}


@dataclass(frozen=True)
class Paths:
    tables: Path
    images: Path
    weights: Path
    saved_model: Path
    tflite: Path
    gradcam: Path  # LiteRT file: probabilities and the Grad-CAM map of one image
    metrics: Path

    @classmethod
    def for_model(cls, model: str, tables: Path | None = None, images: Path | None = None,
                  weights: Path | None = None, saved_model: Path | None = None, tflite: Path | None = None,
                  gradcam: Path | None = None, metrics: Path | None = None) -> "Paths":
        return cls(tables or Path("data/tables"), images or Path("data/images"),
                   weights or Path("models", model, "finetune.weights.h5"),
                   saved_model or Path("models", model, "export", "saved_model"),
                   tflite or Path("models", model, "export", "model.tflite"),
                   gradcam or Path("models", model, "export", "gradcam.tflite"),
                   metrics or Path("metrics", "export", f"{model}.json"))


def directory_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file())


def export_saved_model(model, target: Path) -> None:
    """A SavedModel with one ``serve`` endpoint (also the ``serving_default`` signature), written into
    a sibling temporary folder, then swapped in whole (never half-written).

    Not ``keras.Model.export`` (ours): it lists the variables in the order of the traced function's
    ``variables``, which TensorFlow collects in a set, so the order, and the files' bytes, changed
    from process to process (two runs of this stage here gave two SavedModels, and so two
    ``dvc.lock`` entries). Here the module holds the variables in the model's own order, and the
    fingerprint's random ``uuid`` is dropped (:func:`clear_fingerprint_uuid`).
    """
    import tensorflow as tf

    size = model.inputs[0].shape[1:]
    serving = tf.Module()
    serving.variables_in_model_order = [variable.value for variable in model.variables]
    serving.serve = tf.function(lambda images: model(images, training=False),
                                input_signature=[tf.TensorSpec([None, *size], tf.float32, name="images")])
    with atomic_folder(target) as staging:
        tf.saved_model.save(serving, str(staging), signatures={"serving_default": serving.serve})
        clear_fingerprint_uuid(staging / "fingerprint.pb")


def clear_fingerprint_uuid(path: Path) -> None:
    """Drop the random ``uuid`` TensorFlow writes into a SavedModel's ``fingerprint.pb`` on every save;
    the hashes of the graph, signatures and checkpoint beside it are what identify the model."""
    from tensorflow.core.protobuf import fingerprint_pb2

    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.ClearField("uuid")
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def write_exports(folded, saved_model: Path, tflite: Path) -> None:
    """The SavedModel of ``folded`` (a model whose batch norms
    :func:`stages.models.folding.fold_batch_norms` folded exactly, so the converter has none to
    fold with its approximate ``Rsqrt``), then the LiteRT file converted from it."""
    import tensorflow as tf

    export_saved_model(folded, saved_model)
    write_bytes(tflite, tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())


def write_gradcam_litert(folded, layer: str, head: str, input_size: int, path: Path) -> None:
    """A LiteRT file giving the probabilities and the Grad-CAM map of one image, without gradients
    (:func:`stages.explanation.gradcam.gradient_free_gradcam`), of ``folded`` (as for
    :func:`write_exports`)."""
    import tensorflow as tf

    from stages.explanation.gradcam import gradient_free_gradcam

    function = gradient_free_gradcam(folded, layer, head, input_size)
    write_bytes(path, tf.lite.TFLiteConverter.from_concrete_functions([function]).convert())


def decade_ceiling(value: float) -> float:
    """The smallest power of ten at or above ``value`` (0 for 0): how a figure computed by kernels the
    host chooses is recorded.

    The XNNPACK delegate of ``ai-edge-litert`` picks its kernels by the host's instruction set and
    processor; nothing promises their sums come out the same everywhere (it gave the same bits on
    this AVX-512 host and under ``qemu-x86_64 -cpu Haswell`` for CXR-S, one check). A tracked output
    must not change from host to host, so its figures are recorded as decades (the stage prints the
    exact ones); the parity of record uses LiteRT's reference kernels, exact on every host.
    """
    if value < 0:
        raise ValueError(f"decade_ceiling: {value} is negative")
    if value == 0:
        return 0.0
    exponent = math.ceil(math.log10(value))
    # log10 rounds: 1e-3 may come out as -2.9999999999999996
    if 10.0 ** (exponent - 1) >= value:
        exponent -= 1
    return float(f"1e{exponent}")


def evenly_spaced(count: int, wanted: int | None) -> np.ndarray:
    """Indices of ``wanted`` of ``count`` items spread evenly from the first to the last (all when
    ``wanted`` is None or not smaller than ``count``)."""
    if wanted is None or wanted >= count:
        return np.arange(count)
    if wanted < 1:
        raise SystemExit(f"export: export.gradcam_images must be at least 1 or null, got {wanted}")
    if wanted == 1:
        return np.zeros(1, dtype=int)
    return np.asarray([(i * (count - 1)) // (wanted - 1) for i in range(wanted)])


def run(params: dict, model_name: str, paths: Paths) -> dict:
    import keras
    import tensorflow as tf

    from stages.explanation.gradcam import GradCam
    from stages.models import spec
    from stages.models.folding import fold_batch_norms
    from stages.training.data import evaluation_dataset
    from stages.training.fit import predict_proba
    from stages.training.setup import fine_tuned_for_test

    model, architecture, test = fine_tuned_for_test(params, model_name, paths.tables, paths.weights, "export")
    size = int(architecture["input_size"])
    dataset = evaluation_dataset(paths.images, list(test.image_path), level_targets(test.airspace_level),
                                 int(params["finetune"]["batch_size"]), image_size=size)
    images = np.concatenate([batch.numpy() for batch, _ in dataset])
    keras_level2 = predict_proba(model, dataset)[:, 1]

    def step(text: str) -> None:  # the stage takes up to a minute: say what it is doing
        print(f"export: {model_name}: {text}", file=sys.stderr, flush=True)

    step("folding the batch norms; writing the SavedModel and the LiteRT file")
    folded = fold_batch_norms(model)
    write_exports(folded, paths.saved_model, paths.tflite)
    layer = spec(model_name).gradcam_layer
    step(f"writing the gradient-free Grad-CAM LiteRT file ({layer})")
    write_gradcam_litert(folded, layer, SEVERITY.head, size, paths.gradcam)
    step(f"parity on the {len(images)} test images: SavedModel, LiteRT reference kernels, XNNPACK")

    saved = tf.saved_model.load(str(paths.saved_model))
    saved_level2 = np.concatenate([saved.serve(tf.constant(images[i:i + 64])).numpy()[:, 1]
                                   for i in range(0, len(images), 64)]).astype(np.float64)
    reference_level2 = litert.Runner(paths.tflite, reference=True)(images, f"export {model_name}: reference kernels")[:, 1]
    xnnpack_level2 = litert.Runner(paths.tflite)(images, f"export {model_name}: XNNPACK")[:, 1]
    parity, printed = {}, {}
    for name, level2, goal in (("saved_model", saved_level2, PARITY_GOALS["saved_model"]),
                               ("litert", reference_level2, PARITY_GOALS["litert"]),
                               ("litert_xnnpack", xnnpack_level2, PARITY_GOALS["litert"])):
        difference = float(np.max(np.abs(level2 - keras_level2)))
        printed[name] = difference
        parity[name] = {"goal": goal, "goal_met": difference <= goal}
        if name == "litert_xnnpack":  # kernels chosen by the host: the decade, not the bits
            parity[name]["max_abs_difference_probability_level2_below"] = decade_ceiling(difference)
        else:
            parity[name]["max_abs_difference_probability_level2"] = difference
    # The LiteRT Grad-CAM (central differences) against the tape's, relative to each map's maximum.
    sample = images[evenly_spaced(len(images), params["export"]["gradcam_images"])]
    _, tape_cams = GradCam(model, layer, SEVERITY.head)(sample)
    _, litert_cams = litert.GradCamRunner(paths.gradcam)(sample, f"export {model_name}: LiteRT Grad-CAM")
    peaks = tape_cams.max(axis=(1, 2))
    shown = peaks > 0
    worst = float(np.max(np.abs(litert_cams - tape_cams)[shown].max(axis=(1, 2)) / peaks[shown])) if shown.any() else None
    printed["litert_gradcam"] = worst
    gradcam = {
        "max_abs_difference_relative_to_map_maximum_below": None if worst is None else decade_ceiling(worst),
        "maps_compared": int(shown.sum()), "empty_tape_maps": int((~shown).sum()),
        "empty_maps_agree": bool(np.all(litert_cams[~shown] <= 1e-6 * max(float(peaks.max()), 1e-12)))}
    operators = litert.operator_counts(paths.tflite)
    batch_norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    metrics = {
        "data_source": params["data"]["source"], "model": model_name, "input_size": size,
        "test_images": len(test), "parity": parity, "litert_gradcam": gradcam,
        "bytes": {"keras_weights": paths.weights.stat().st_size, "tflite": paths.tflite.stat().st_size,
                  "saved_model": directory_bytes(paths.saved_model)},
        "keras_batch_norm_layers": batch_norms,
        # Each batch norm left unfolded would be a MUL (and an ADD); the input rescaling is one MUL.
        "tflite_operators": operators,
        "tflite_float": "float32, no quantisation",
        "litert_interpreter": ("ai-edge-litert, one image per invocation, 1 thread; parity.litert with LiteRT's "
                               "reference kernels (the same bits on every host), parity.litert_xnnpack and "
                               "litert_gradcam with the XNNPACK delegate (the default, as predict runs it)"),
    }
    write_json(paths.metrics, metrics)
    return metrics, printed


def main(argv: list[str] | None = None) -> None:
    model, params, paths = model_stage_arguments(__doc__, Paths, argv)
    metrics, printed = run(params, model, paths)
    parity = ", ".join(f"{name} max |dP(Level 2)| {printed[name]:.2e} "
                       f"({'within' if values['goal_met'] else 'ABOVE'} {values['goal']:g})"
                       for name, values in metrics["parity"].items())
    gradcam = printed["litert_gradcam"]
    parity += "; LiteRT Grad-CAM " + ("(every map empty)" if gradcam is None else f"within {gradcam:.2%} of the tape's")
    print(f"export: {model}: {parity}; .tflite {metrics['bytes']['tflite'] / 1e6:.1f} MB, "
          f"{metrics['tflite_operators'].get('MUL', 0)} MUL for {metrics['keras_batch_norm_layers']} batch norms")


if __name__ == "__main__":
    main()
