"""Stage ``complexity``: the paper's Table 2 (parameters and FLOPs at 480 x 480 x 3) for every model.

Each model of ``models`` in params.yaml is built at the ``complexity`` section's size and width
(the paper's, whatever the preset: the embedded default shrinks only the trained models, never
this table) with the severity head, and measured by ``stages.models.counting``: parameters as
Keras counts them, FLOPs from TensorFlow's profiler on a frozen graph (2 per multiply-add).

The paper's parameter counts are not all counted the same way, so each row states which count of
ours it is compared with (``paper_parameter_basis`` in the model registry, :mod:`stages.models`):
COVID-Net CXR-S the whole model; CheXNet's
8.1 M matches DenseNet-121 with its 1000-class ImageNet top (8,062,504), not the 7.0 M backbone;
ResNet-50's 23.6 M matches the backbone without top (23,587,712).
"""

from __future__ import annotations

import sys
from pathlib import Path

from stages.common.cli import stage_arguments
from stages.common.io import write_json
from stages.reference import paper

from stages.models import PARAMETER_BASES, spec
from stages.tasks import SEVERITY


def relative_difference(ours: float, reference: float) -> float:
    """(ours - reference) / reference, rounded to 5 decimals (0.01234 = 1.234%)."""
    return round((ours - reference) / reference, 5)


def measure(name: str, cfg: dict) -> dict:
    from stages.models import build_model
    from stages.models.baselines import imagenet_top_parameters
    from stages.models.counting import parameter_counts, profiler_flops

    entry = spec(name)
    size = int(cfg["input_size"])
    architecture = {"name": name, "input_size": size, "dense_units": int(cfg["dense_units"])}
    if entry.width_scalable:  # `complexity.width` scales only the models that have a width knob
        architecture["width"] = float(cfg["width"])
    model = build_model(architecture, n_classes=len(SEVERITY.class_names), head=SEVERITY.head)
    counts = parameter_counts(model, SEVERITY.head)
    basis = entry.paper_parameter_basis
    if basis == "with_imagenet_top":
        counts["with_imagenet_top"] = imagenet_top_parameters(name)
    flops = profiler_flops(model, size)
    row = {"parameters": counts, "flops": flops, "gflops": round(flops / 1e9, 3)}
    reference = paper()["table2"].get(name)
    if reference and basis:
        row["paper"] = {
            "label": reference["label"], "parameters_m": reference["parameters_m"], "gflops": reference["gflops"],
            "parameters_compared": basis, "parameters_compared_means": PARAMETER_BASES[basis],
            "parameters_difference": relative_difference(counts[basis] / 1e6, reference["parameters_m"]),
            "gflops_difference": relative_difference(flops / 1e9, reference["gflops"]),
        }
    return row


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(__doc__, argv, out=Path("metrics/complexity.json"))
    cfg = params["complexity"]
    rows = {}
    for name in sorted(params["models"]):
        rows[name] = measure(name, cfg)
        print(f"complexity: {name} {rows[name]['parameters']['total']:,} parameters, "
              f"{rows[name]['gflops']} GFLOPs", file=sys.stderr)
    import tensorflow as tf

    write_json(args.out, {
        "input_shape": [int(cfg["input_size"]), int(cfg["input_size"]), 3],
        "width": float(cfg["width"]), "dense_units": int(cfg["dense_units"]),
        "flops_counted_by": "TensorFlow profiler float_operation on a frozen graph, batch 1, "
                            "2 FLOPs per multiply-add",
        "tensorflow": tf.__version__,
        "models": rows,
    })


if __name__ == "__main__":
    main()
