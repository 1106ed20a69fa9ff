"""Benchmark: single-image latency of each fine-tuned model as Keras, SavedModel and LiteRT.

    python benchmarks/export_latency.py                 # writes metrics/bench_export.json
    python benchmarks/export_latency.py --models covidnet_cxr_s --repeats 50

Reads what stage ``export`` wrote (``models/<model>/export/saved_model`` and ``model.tflite``) and
the fine-tuned weights, at the model's own input size (``params.yaml``; 32 px in the embedded
default), and times one image per call, interleaved model by model and form by form after
``--warmup`` untimed calls: ``keras`` (``tf.function(model(x, training=False))``), ``saved_model``
(its ``serve`` endpoint) and ``litert`` (the ``ai-edge-litert`` interpreter, one thread, as
``predict --backend litert`` runs it). The figure is the median call in milliseconds. Timings
depend on the machine and its load: a benchmark figure, never a test assertion (the 480 px
throughput comparison is ``benchmarks/inference.py``).
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
from stages.common.params import load_params  # noqa: E402
from stages.models import MODELS, model_params  # noqa: E402

FORMS = ("keras", "saved_model", "litert")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_export.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per model and form (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from stages import litert
    from stages.models import load_model
    from stages.tasks import SEVERITY

    params = load_params(args.params)
    calls, sizes, keep = {}, {}, []
    for name in args.models:
        architecture = model_params(params, name)
        size = int(architecture["input_size"])
        image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
        tensor = tf.constant(image)
        model = load_model(architecture, len(SEVERITY.class_names), SEVERITY.head, Path("models", name, "finetune.weights.h5"))
        forward = tf.function(lambda x, m=model: m(x, training=False))
        saved = tf.saved_model.load(str(Path("models", name, "export", "saved_model")))
        keep.append(saved)  # serve() needs the loaded object alive
        runner = litert.Runner(Path("models", name, "export", "model.tflite"))
        calls[(name, "keras")] = lambda f=forward, t=tensor: f(t).numpy()
        calls[(name, "saved_model")] = lambda s=saved, t=tensor: s.serve(t).numpy()
        calls[(name, "litert")] = lambda r=runner, i=image: r(i)
        sizes[name] = size
    for call in calls.values():
        for _ in range(args.warmup):
            call()
    seconds = {key: [] for key in calls}
    for _ in range(args.repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[key].append(time.perf_counter() - start)
    results = {name: {"input_size": sizes[name], **{
        form: {"median_ms": round(1000 * statistics.median(seconds[(name, form)]), 3),
               "min_ms": round(1000 * min(seconds[(name, form)]), 3)} for form in FORMS}} for name in args.models}
    payload = {
        "what": "single-image (batch 1) latency of each fine-tuned model at its own input size, median and fastest "
                "of the timed calls, interleaved; forms: keras tf.function, SavedModel serve, LiteRT interpreter "
                "(1 thread, XNNPACK)",
        "data_source": params["data"]["source"], "models": results,
        "settings": {"warmup_calls": args.warmup, "timed_repeats": args.repeats, "tensorflow": tf.__version__},
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
    }
    write_json(args.out, payload)
    for name, forms in results.items():
        print(f"bench: {name} at {sizes[name]} px: " + ", ".join(f"{form} {forms[form]['median_ms']:.2f} ms"
                                                                for form in FORMS), file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
