"""Benchmark: inference throughput of the model zoo at the paper's input size, on this machine.

    python benchmarks/inference.py                      # writes metrics/bench_inference.json
    python benchmarks/inference.py --xla on --repeats 9
    python benchmarks/inference.py --models covidnet_cxr_s densenet121 --batch 16
    python benchmarks/inference.py --onednn off         # TensorFlow's own CPU kernels instead of oneDNN
    python benchmarks/inference.py --graphs keras        # only the Keras model (default: keras, keras_folded, frozen, litert)

Builds COVID-Net CXR-S, DenseNet-121 and ResNet-50 (480 x 480 x 3, width 1.0, the 256-unit
severity head, random weights: speed does not depend on the weights) one after another in this
process with identical settings, and times the forward pass of one batch of float32 images in
[0, 255] (the models rescale internally) through ``tf.function(lambda x: model(x, training=False))``,
so Keras' per-call ``predict`` overhead is not measured (and, for the ``litert`` graph, through the
``ai-edge-litert`` interpreter). After ``--warmup`` untimed calls (the first
one traces, and with ``--xla on`` compiles), each of ``--repeats`` timed calls is one batch; the
figure is the batch size over the median call time, and every call time is kept, with the
process CPU seconds of the median call (a companion figure that a busy machine disturbs less).

Each model's FLOPs per image come from ``stages.models.counting.profiler_flops`` (TensorFlow's
profiler on a frozen graph, 2 FLOPs per multiply-add, the paper's Table 2 convention), so the
achieved GFLOP/s show how well each architecture uses the hardware. COVID-Net CXR-S has
26.0 / 11.1 = 2.3x fewer FLOPs than DenseNet-121 (Table 2); issue 18's goal is more: with batch
norms folded (CXR-S has one after every convolution, DenseNet-121 mostly before its ReLUs, where
they cannot fold), CXR-S should pass DenseNet-121 by more than its FLOP ratio, at least 2.6x its
throughput, for the exported model as for the Keras one. ``goal_met`` says whether it is, per graph
(null when either model was left out).

Settings measured on this 2-core x86 machine (TensorFlow 2.21, Keras 3) chose the defaults: XLA
off (``jit_compile=True`` compiles depthwise convolutions to a CPU loop about 100x slower than
oneDNN's kernel, so COVID-Net CXR-S ran 4-6x slower; DenseNet-121 and ResNet-50 within noise),
oneDNN on (TensorFlow's own kernels took 1.2x the CPU time for COVID-Net CXR-S and 1.5x for
DenseNet-121), every core for intra-op work (COVID-Net CXR-S keeps both busy). Four graphs are
timed for every model, interleaved call by call: ``keras``, the Keras model itself;
``frozen``, the deployment graph (variables as constants), where grappler folds each inference
batch norm into the convolution before it and fuses the ReLU, which the Keras 3 model (a separate
multiply and add per batch norm) never gets; that helps COVID-Net CXR-S (batch norm after every
convolution) far more than DenseNet-121 (pre-activation: batch norm before its convolutions,
mostly unfoldable). ``keras_folded``: the Keras model with its batch norms folded as stage
``export`` folds them (:func:`stages.models.folding.fold_batch_norms`: into the convolution before
each, else a per-channel affine), still a Keras model run through ``tf.function``. ``litert``: the model converted to LiteRT's flatbuffer (as stage ``export``
does; the converter folds the batch norms) and run by the ``ai-edge-litert`` interpreter (XNNPACK,
one thread per core). It goes through a SavedModel as ``export`` does: converted straight from a
traced function, the converter kept the weights as variables (READ_VARIABLE operators, which
XNNPACK does not take), and CXR-S ran 3x slower than through TensorFlow. The goal is reported for every graph.

Only ``stages.models`` is imported, never ``stages.training``: training pins one intra-op thread
(and turns Grappler off) for reproducibility, while inference here uses every core unless ``--intra-threads``
says otherwise. Timings are machine-dependent and noisy on a shared machine: a benchmark figure,
never a test assertion.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.common.io import write_json  # noqa: E402
from stages.common.progress import progress  # noqa: E402

from stages.models import MODELS as _REGISTRY  # noqa: E402

MODELS = tuple(sorted(_REGISTRY))
REFERENCE = "densenet121"
# Table 2 of the paper: DenseNet-121 26.0 GFLOPs, COVID-Net CXR-S 11.1 GFLOPs at 480 x 480 x 3.
GOAL_MODEL = "covidnet_cxr_s"
GOAL_RATIO = 2.6  # issue 18: above the FLOP ratio (2.33), with batch norms folded
GRAPHS = ("keras", "keras_folded", "frozen", "litert")
SEED = 0


def onednn_enabled(value: str | None) -> bool:
    """TensorFlow's reading of ``TF_ENABLE_ONEDNN_OPTS`` on x86 Linux (unset means on since TF 2.9)."""
    if value is None or value.strip() == "":
        return True
    return value.strip().lower() not in ("0", "false")


def _set_onednn(choice: str) -> None:
    """Set ``TF_ENABLE_ONEDNN_OPTS`` before TensorFlow loads; refuse if it is loaded with the other value."""
    if choice == "env":
        return
    wanted = choice == "on"
    if "tensorflow" in sys.modules:
        if onednn_enabled(os.environ.get("TF_ENABLE_ONEDNN_OPTS")) != wanted:
            raise SystemExit(f"--onednn {choice}: TensorFlow is already loaded with oneDNN "
                             f"{'on' if not wanted else 'off'}; run the benchmark in a fresh process")
        return
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if wanted else "0"


def _set_threads(tf, intra: int, inter: int) -> None:
    """Thread pools (0 = TensorFlow's default, every core); they can only be set before TF starts."""
    for name, wanted in (("intra_op", intra), ("inter_op", inter)):
        getter = getattr(tf.config.threading, f"get_{name}_parallelism_threads")
        if wanted == 0 or getter() == wanted:
            continue
        try:
            getattr(tf.config.threading, f"set_{name}_parallelism_threads")(wanted)
        except RuntimeError as error:
            raise SystemExit(f"--{name.replace('_op', '')}-threads {wanted}: TensorFlow is already "
                             f"initialised with {getter()}; run the benchmark in a fresh process") from error


def nontrivial_batch_norms(model) -> None:
    """Give every batch norm non-trivial statistics (speed does not depend on the values otherwise).

    Frozen or converted to LiteRT, constants fold: a fresh model's zero batch-norm offsets (and the
    zero scale of each PEPX extension) would fold away work a trained model does.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


def litert_function(tf, model, images):
    """The model exported as stage ``export`` exports it (SavedModel, then LiteRT's converter: batch
    norms folded, variables frozen), its input resized to this batch, run by ai-edge-litert."""
    import tempfile

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from stages.export import write_exports
    from stages.models.folding import fold_batch_norms

    with tempfile.TemporaryDirectory(prefix="bench-litert-") as folder:
        write_exports(fold_batch_norms(model), Path(folder) / "saved_model", Path(folder) / "model.tflite")
        flatbuffer = (Path(folder) / "model.tflite").read_bytes()
    interpreter = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count())
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(source["index"], list(images.shape))
    interpreter.allocate_tensors()

    def forward(x):
        interpreter.set_tensor(source["index"], np.asarray(x, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])
    return forward


def forward_function(tf, model, images, xla: bool, freeze: bool):
    """``tf.function(model(x, training=False))``; frozen: its variables as constants (same outputs)."""
    forward = tf.function(lambda x: model(x, training=False), jit_compile=xla)
    if not freeze:
        return forward
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(tf.TensorSpec(images.shape, tf.float32)))
    return tf.function(lambda x: frozen(x)[0], jit_compile=xla)


def measure_interleaved(forwards: dict, images, warmup: int, repeats: int) -> dict:
    """Time every forward function once per round, ``repeats`` rounds, after ``warmup`` calls each.

    Interleaving the models (rather than timing one after another) spreads any change in the
    machine's load over all of them alike, so the throughput ratios stay fair on a shared machine.
    """
    first_call = {}
    for key, forward in forwards.items():
        start = time.perf_counter()
        _result(forward(images))  # traces (and compiles under XLA); counts as the first warm-up call
        first_call[key] = time.perf_counter() - start
        for _ in range(warmup - 1):
            _result(forward(images))
    seconds = {key: [] for key in forwards}
    cpu_seconds = {key: [] for key in forwards}
    for _ in progress(range(repeats), desc="timed rounds", unit="round"):
        for key, forward in forwards.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            _result(forward(images))  # waits for the result
            seconds[key].append(time.perf_counter() - start)
            cpu_seconds[key].append(time.process_time() - cpu_start)
    return {key: {"first_call_seconds": round(first_call[key], 3),
                  "repeat_seconds": [round(v, 4) for v in seconds[key]],
                  "median_seconds": round(statistics.median(seconds[key]), 4),
                  "median_cpu_seconds": round(statistics.median(cpu_seconds[key]), 4)} for key in forwards}


def _result(output):
    """The output as numpy: a TensorFlow tensor's .numpy() waits for it; LiteRT's is numpy already."""
    return output.numpy() if hasattr(output, "numpy") else output


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_inference.json"))
    parser.add_argument("--batch", type=int, default=8, help="images per call (default 8)")
    parser.add_argument("--size", type=int, default=480, help="square input size in px (default 480)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first, tracing included (default 3)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="subset, in order")
    parser.add_argument("--xla", choices=("on", "off"), default="off",
                        help="tf.function(jit_compile=True) (default off: far slower for depthwise convolutions)")
    parser.add_argument("--graphs", nargs="+", choices=GRAPHS, default=list(GRAPHS),
                        help="keras: the Keras model as a tf.function; keras_folded: the Keras model with its "
                             "batch norms folded as export folds them; frozen: the Keras model's frozen graph "
                             "(Grappler folds); litert: converted to LiteRT, run by ai-edge-litert (default: all)")
    parser.add_argument("--onednn", choices=("on", "off", "env"), default="on",
                        help="TF_ENABLE_ONEDNN_OPTS before TensorFlow loads (default on; env: leave it as set)")
    parser.add_argument("--intra-threads", type=int, default=0, help="intra-op threads (default 0: all cores)")
    parser.add_argument("--inter-threads", type=int, default=0, help="inter-op threads (default 0: TF's choice)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 1:
        parser.error("--batch, --repeats and --warmup must be at least 1 (the first warm-up call traces)")

    _set_onednn(args.onednn)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from stages.models import build_model
    from stages.models.counting import profiler_flops
    from stages.models.folding import fold_batch_norms

    _set_threads(tf, args.intra_threads, args.inter_threads)
    images = tf.constant(np.random.default_rng(SEED).uniform(0, 255, (args.batch, args.size, args.size, 3)),
                         dtype=tf.float32)
    xla = args.xla == "on"
    forwards, models = {}, {}
    for name in args.models:
        model = build_model({"name": name, "input_size": args.size, "width": 1.0, "dense_units": 256},
                            n_classes=2, head="severity")
        models[name] = {"parameters": int(model.count_params()), "flops_per_image": profiler_flops(model, args.size)}
        nontrivial_batch_norms(model)
        for graph in args.graphs:
            if graph == "litert":
                forwards[(graph, name)] = litert_function(tf, model, images)
            elif graph == "keras_folded":
                forwards[(graph, name)] = forward_function(tf, fold_batch_norms(model), images, xla, False)
            else:
                forwards[(graph, name)] = forward_function(tf, model, images, xla, graph == "frozen")
        print(f"bench: {name} built, {models[name]['flops_per_image'] / 1e9:.2f} GFLOPs/img", file=sys.stderr)
    timings = measure_interleaved(forwards, images, args.warmup, args.repeats)

    results, goal = {}, {}
    for graph in args.graphs:
        rows = results[graph] = {}
        for name in args.models:
            timing = timings[(graph, name)]
            ips = args.batch / timing["median_seconds"]
            flops = models[name]["flops_per_image"]
            rows[name] = {**timing, **models[name], "images_per_second": round(ips, 3),
                          "gflops_per_second": round(flops * ips / 1e9, 3)}
            print(f"bench: {graph} {name} {ips:.2f} img/s, {flops * ips / 1e9:.1f} GFLOP/s", file=sys.stderr)
        if REFERENCE in rows:
            for row in rows.values():
                row[f"throughput_ratio_to_{REFERENCE}"] = round(
                    row["images_per_second"] / rows[REFERENCE]["images_per_second"], 3)
                row[f"flop_ratio_of_{REFERENCE}"] = round(rows[REFERENCE]["flops_per_image"] / row["flops_per_image"], 3)
                # The same ratio from process CPU seconds: less disturbed when another job shares the cores.
                row[f"cpu_throughput_ratio_to_{REFERENCE}"] = round(
                    rows[REFERENCE]["median_cpu_seconds"] / max(row["median_cpu_seconds"], 1e-9), 3)
        achieved = rows.get(GOAL_MODEL, {}).get(f"throughput_ratio_to_{REFERENCE}")
        goal[graph] = {"throughput_ratio": achieved,
                       "goal_met": None if achieved is None else bool(achieved >= GOAL_RATIO)}
    onednn_env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    payload = {
        "what": "forward-pass images/s of tf.function(model(x, training=False)), one batch per timed call, "
                "batch / median call seconds; FLOPs per image from TensorFlow's profiler (2 per multiply-add)",
        "graphs": results,
        "goal": {
            "description": f"{GOAL_MODEL} throughput at least {GOAL_RATIO}x {REFERENCE}'s in one interleaved "
                         "run (issue 18: above its FLOP ratio, 26.0 / 11.1 GFLOPs in the paper's Table 2)",
            "min_throughput_ratio": GOAL_RATIO,
            **{graph: values for graph, values in goal.items()},
        },
        "settings": {
            "batch": args.batch, "input_size": args.size, "width": 1.0, "dense_units": 256,
            "warmup_calls": args.warmup, "timed_repeats": args.repeats, "dtype": "float32",
            "xla_jit_compile": xla, "graphs": list(args.graphs),
            "onednn": onednn_enabled(onednn_env), "TF_ENABLE_ONEDNN_OPTS": onednn_env,
            # 0 means TensorFlow's default: one intra-op thread per core.
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
        },
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "cpu_model": _cpu_model(),
                    "python": platform.python_version()},
    }
    write_json(args.out, payload)
    for graph, values in goal.items():
        if values["throughput_ratio"] is not None:
            print(f"bench: {graph} graph: {GOAL_MODEL} / {REFERENCE} throughput {values['throughput_ratio']:.2f}x "
                  f"(goal {GOAL_RATIO}x: {'met' if values['goal_met'] else 'NOT met'}) -> {args.out}", file=sys.stderr)
    return payload


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
