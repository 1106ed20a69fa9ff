"""Apply a fine-tuned severity model to radiographs: the airspace level and P(Level 2) per image.

    python -m stages.predict IMAGE... --model covidnet_cxr_s [--json] [--heatmap DIR]
    covidnet-predict IMAGE... --backend litert           # the exported .tflite, without TensorFlow

Each IMAGE (DICOM in any transfer syntax ingest reads, PNG or JPEG) goes through exactly the
pipeline's preprocessing (:func:`stages.model_input.prepare`, the function ``ingest`` calls, with
the ``ingest`` settings of ``--params``) and then through the model. Backends:

- ``keras`` (default): the fine-tuned weights ``models/<model>/finetune.weights.h5`` in the
  architecture ``params.yaml`` gives, with the evaluation settings (``make_deterministic``).
  ``--heatmap DIR`` writes a Grad-CAM overlay per image (the registry's layer).
- ``litert``: ``models/<model>/export/model.tflite`` (stage ``export``: batch norm folded) through
  the ``ai-edge-litert`` interpreter; TensorFlow is never imported. LiteRT computes no gradients, so
  ``--heatmap`` runs the export's ``gradcam.tflite`` instead, whose Grad-CAM estimates the
  gradients by central differences (on the committed run's test images, within 2-8.5% of the
  tape's map maximum at worst: ``metrics/export/<model>.json``, ``litert_gradcam``).

The model's training data source is read from ``metrics/models/<model>/finetune.json``. A model
trained on the synthetic phantoms is refused unless ``--allow-synthetic`` is given, and then every
output line, the JSON and each heatmap's PNG metadata say so. A file that cannot be read is named
with the reason and the other files still run; the exit code is 1 when any file failed, 2 on a
usage error or a refused model, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stages.common.io import write_bytes
from stages.common.params import load_params
from stages.dicomio.read import UnreadableImage
from stages.model_input import Preprocessing, network_input, prepare
from stages.models import label, model_params, spec
from stages.tasks import LEVEL_NAMES

BACKENDS = ("keras", "litert")
SYNTHETIC = "synthetic"
HEATMAP_SIDE = 256  # overlays are drawn at least this large (the embedded images are 64 px)


@dataclass(frozen=True)
class ModelFiles:
    weights: Path  # Keras weights (finetune@<model>)
    tflite: Path  # LiteRT flatbuffer (export@<model>)
    gradcam: Path  # LiteRT flatbuffer giving probabilities and the Grad-CAM map (export@<model>)
    training_metrics: Path  # finetune.json: says which data source trained the model

    @classmethod
    def for_model(cls, model: str, weights: Path | None = None, tflite: Path | None = None,
                  gradcam: Path | None = None, training_metrics: Path | None = None) -> "ModelFiles":
        return cls(weights or Path("models", model, "finetune.weights.h5"),
                   tflite or Path("models", model, "export", "model.tflite"),
                   gradcam or Path("models", model, "export", "gradcam.tflite"),
                   training_metrics or Path("metrics", "models", model, "finetune.json"))


def training_source(path: Path) -> str:
    """The ``data_source`` the model was fine-tuned on (finetune.json), or SystemExit naming the file."""
    try:
        source = json.loads(path.read_text()).get("data_source")
    except FileNotFoundError:
        raise SystemExit(f"predict: {path} not found: it says which data trained the model "
                         f"(did finetune run? pass --training-metrics)") from None
    except (OSError, ValueError, AttributeError) as err:
        raise SystemExit(f"predict: {path}: cannot read the training data source ({err})") from None
    if not isinstance(source, str) or not source:
        raise SystemExit(f"predict: {path} has no data_source")
    return source


def provenance(source: str) -> str:
    return ("trained on SYNTHETIC phantoms (data_source synthetic): not a clinical result"
            if source == SYNTHETIC else f"trained on data_source {source}")


Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # batch -> (probabilities, cams)


def keras_runner(params: dict, model: str, weights: Path, explain: bool) -> Runner:
    """The fine-tuned Keras model with evaluate's settings; Grad-CAM maps too when ``explain``."""
    from stages.explanation.gradcam import GradCam
    from stages.models import load_model
    from stages.tasks import SEVERITY
    from stages.training.setup import make_deterministic

    make_deterministic(int(params["train"]["seed"]))
    network = load_model(model_params(params, model), len(SEVERITY.class_names), SEVERITY.head, weights)
    if explain:
        return GradCam(network, spec(model).gradcam_layer, SEVERITY.head)
    return lambda batch: (np.asarray(network(batch, training=False), dtype=np.float64), None)


def litert_runner(files: ModelFiles, explain: bool) -> Runner:
    """The exported .tflite (or, with ``explain``, its Grad-CAM file) through the LiteRT interpreter
    (no TensorFlow import)."""
    from stages.litert import GradCamRunner, Runner as LiteRT

    path = files.gradcam if explain else files.tflite
    if not path.is_file():
        raise SystemExit(f"predict: {path} not found (run the export stage: dvc repro export)")
    if explain:
        return GradCamRunner(path)
    run = LiteRT(path)
    return lambda batch: (run(batch), None)


def heatmap_png(stored: np.ndarray, cam: np.ndarray, source: str, model: str, backend: str) -> bytes:
    """Grad-CAM overlay as PNG bytes, its provenance in the PNG's text chunks (no timestamp)."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from stages.explanation.gradcam import overlay, upsample
    from stages.imaging.preprocess import resize_square

    side = max(HEATMAP_SIDE, stored.shape[0])
    grey = np.clip(np.rint(resize_square(stored.astype(np.float32), side)), 0, 255).astype(np.uint8)
    info = PngInfo()
    method = "gradients by central differences, LiteRT" if backend == "litert" else "tf.GradientTape"
    info.add_text("Description", f"Grad-CAM ({method}) of {label(model)} ({model}) for Level 2, {provenance(source)}")
    buffer = io.BytesIO()
    Image.fromarray(overlay(grey, upsample(cam, side))).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _heatmap_path(folder: Path, image: Path, taken: set[str]) -> Path:
    name, number = f"{image.stem}.gradcam.png", 2
    while name in taken:  # two inputs with one stem (a/1.dcm, b/1.dcm) keep both heatmaps
        name, number = f"{image.stem}-{number}.gradcam.png", number + 1
    taken.add(name)
    return folder / name


def predict(paths: list[Path], runner: Runner, settings: Preprocessing, input_size: int,
            source: str, model: str, heatmaps: Path | None = None, backend: str = "keras") -> list[dict]:
    """One result per path, in order: level and P(Level 2), or the error that stopped the file."""
    results, taken = [], set()
    for path in paths:
        result = {"path": str(path), "data_source": source, "level": None, "probability_level2": None,
                  "error": None}
        try:
            _, stored = prepare(path, settings)
        except (UnreadableImage, ValueError) as err:  # UnreadableImage names the file; a ValueError may not
            message = str(err)
            results.append({**result, "error": message if message.startswith(str(path)) else f"{path}: {message}"})
            continue
        probabilities, cams = runner(network_input(stored, input_size)[None])
        result["level"] = LEVEL_NAMES[int(np.argmax(probabilities[0]))]
        result["probability_level2"] = round(float(probabilities[0, 1]), 6)
        if heatmaps is not None and cams is not None:
            target = _heatmap_path(heatmaps, path, taken)
            write_bytes(target, heatmap_png(stored, cams[0], source, model, backend))
            result["heatmap"] = str(target)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="DICOM, PNG or JPEG files")
    parser.add_argument("--model", default="covidnet_cxr_s", help="an entry of `models` in params.yaml")
    parser.add_argument("--backend", choices=BACKENDS, default="keras")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--heatmap", type=Path, metavar="DIR", help="write a Grad-CAM overlay per image here")
    parser.add_argument("--allow-synthetic", action="store_true",
                        help="run a model trained on the synthetic phantoms (refused otherwise)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--weights", type=Path, help="default: models/<model>/finetune.weights.h5")
    parser.add_argument("--tflite", type=Path, help="default: models/<model>/export/model.tflite")
    parser.add_argument("--gradcam-tflite", type=Path, help="default: models/<model>/export/gradcam.tflite")
    parser.add_argument("--training-metrics", type=Path, help="default: metrics/models/<model>/finetune.json")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    entry = spec(args.model)
    architecture = model_params(params, entry.name)
    files = ModelFiles.for_model(entry.name, args.weights, args.tflite, args.gradcam_tflite, args.training_metrics)
    source = training_source(files.training_metrics)
    if source == SYNTHETIC and not args.allow_synthetic:
        print(f"predict: refused: {entry.name} was trained on SYNTHETIC phantoms ({files.training_metrics}: "
              f"data_source synthetic); its outputs say nothing about patients. Pass --allow-synthetic to run it "
              f"anyway (every output is then marked synthetic).", file=sys.stderr)
        return 2
    runner = (keras_runner(params, entry.name, files.weights, args.heatmap is not None)
              if args.backend == "keras" else litert_runner(files, args.heatmap is not None))
    results = predict(args.images, runner, Preprocessing.from_params(params["ingest"]),
                      int(architecture["input_size"]), source, entry.name, args.heatmap, args.backend)
    failed = [r for r in results if r["error"] is not None]
    if args.json:
        print(json.dumps({"model": entry.name, "model_label": entry.label, "backend": args.backend,
                          "data_source": source, "trained_on_synthetic_phantoms": source == SYNTHETIC,
                          "results": results, "failed": len(failed)}, indent=2))
    else:
        stamp = f"{entry.label} ({entry.name}, {args.backend}), {provenance(source)}"
        for r in results:
            if r["error"] is None:
                extra = f", heatmap {r['heatmap']}" if r.get("heatmap") else ""
                print(f"{r['path']}: {r['level']}, P(Level 2) = {r['probability_level2']:.4f}{extra} | {stamp}")
    for r in failed:
        print(f"predict: failed: {r['error']}", file=sys.stderr)
    if failed:
        print(f"predict: {len(failed)} of {len(results)} files failed", file=sys.stderr)
    return 1 if failed else 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
