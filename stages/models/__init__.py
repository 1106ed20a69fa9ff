"""The model zoo: one registry entry per model (:data:`MODELS`), built by name.

To add a model: write its builder (``input_size``, ``n_classes``, ``dense_units``, ``head`` ->
a ``keras.Model`` whose head layers are named ``{head}_*``, e.g. in ``baselines.py``), add a
:class:`ModelSpec` to :data:`MODELS`, and add its entry to ``models`` in params.yaml. The report,
Table 2, the benchmarks and the tests read the registry; ``tests/test_registry.py`` names
anything else the pipeline needs for it (its plot entries in dvc.yaml). A model without a row in
the paper shows "-" in the paper's columns.

Importing this package loads no TensorFlow: builders import their modules when called, so the
report can read labels without paying for Keras.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import keras

# How the paper counted a model's parameters in Table 2 (which of our counts its figure matches).
PARAMETER_BASES = {
    "total": "backbone + 2-way severity head",
    "with_imagenet_top": "backbone + 1000-class ImageNet top (the paper's count appears to include it)",
    "backbone": "backbone without top",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline knows about one model besides its params.yaml entry."""

    name: str  # the key in params.yaml ``models`` and in metrics/models/<name>/
    label: str  # how tables and text name this run's model
    build: Callable[..., "keras.Model"]  # (input_size, n_classes, dense_units, head[, width]) -> model
    width_scalable: bool = False  # takes a channel multiplier (``width``)
    # Table 2: which of our parameter counts the paper's figure matches (PARAMETER_BASES); None when
    # the paper has no row for the model.
    paper_parameter_basis: str | None = None
    # How the paper names its row for this model, where that differs from ``label`` (the paper's
    # row is "CheXNet"; ours is CheXNet's architecture, DenseNet-121, randomly initialised and
    # trained here, so this run's rows never carry that name).
    paper_label: str | None = None
    # A short ``label`` for figure titles and legends, where the full one does not fit.
    short_label: str | None = None
    # The feature map Grad-CAM explains (stages.explanation.gradcam; ours): the candidate below that
    # localised the phantom's opacities best on the validation split (metrics/bench_gradcam_layers.json).
    # The final stride-32 maps are 1 x 1 at 32 px and cannot localise anything.
    gradcam_layer: str | None = None
    # The feature maps ``benchmarks/gradcam_layers.py`` weighs on the validation split before
    # ``gradcam_layer`` is chosen: the last output of each stage with at least a 2 x 2 map at 32 px.
    gradcam_candidates: tuple[str, ...] = ()


def _covidnet_cxr_s(**kwargs) -> "keras.Model":
    from stages.models.covidnet import build_covidnet_cxr_s
    return build_covidnet_cxr_s(**kwargs)


def _densenet121(**kwargs) -> "keras.Model":
    from stages.models.baselines import build_densenet121
    return build_densenet121(**kwargs)


def _resnet50(**kwargs) -> "keras.Model":
    from stages.models.baselines import build_resnet50
    return build_resnet50(**kwargs)


# In the paper's table order: the two baselines, then COVID-Net CXR-S.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # The architecture of the paper's CheXNet baseline, randomly initialised and trained here: not CheXNet.
    ModelSpec("densenet121", "DenseNet-121 (CheXNet architecture, trained here)", _densenet121,
              paper_parameter_basis="with_imagenet_top", paper_label="CheXNet", short_label="DenseNet-121",
              gradcam_layer="pool2_relu",  # the first dense block's output after its transition's BN + ReLU (8 x 8)
              gradcam_candidates=("pool2_relu", "pool3_relu", "pool4_relu")),
    ModelSpec("resnet50", "ResNet-50", _resnet50, paper_parameter_basis="backbone",
              gradcam_layer="conv4_block6_out",  # the conv4 stage's output (2 x 2; no candidate beat random)
              gradcam_candidates=("conv2_block3_out", "conv3_block4_out", "conv4_block6_out")),
    ModelSpec("covidnet_cxr_s", "COVID-Net CXR-S", _covidnet_cxr_s, width_scalable=True,
              paper_parameter_basis="total", gradcam_layer="stage2_pepx4_out",  # the second PEPX stage's output (4 x 4)
              gradcam_candidates=("stage1_pepx3_out", "stage2_pepx4_out", "stage3_pepx6_out")),
)}


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise SystemExit(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name]


def label(name: str) -> str:
    """A model's display label; a name the registry does not know is shown as is."""
    return MODELS[name].label if name in MODELS else name


def paper_label(name: str) -> str:
    """How the paper names its row for the model (its "CheXNet"); the display label otherwise."""
    return (MODELS[name].paper_label or MODELS[name].label) if name in MODELS else name


def short_label(name: str) -> str:
    """The display label, shortened where the registry gives a short form (figures)."""
    return (MODELS[name].short_label or MODELS[name].label) if name in MODELS else name


def ordered(names) -> list[str]:
    """``names`` in the registry's (the paper's table) order, then any others sorted."""
    names = sorted(names)
    return [m for m in MODELS if m in names] + [m for m in names if m not in MODELS]


def model_params(params: dict, name: str) -> dict:
    """``model_defaults`` with ``models.<name>`` over them (preset applied), and its ``name`` added.

    One set of defaults for the whole zoo keeps the comparison like for like: every network
    trains at the same input size and full width unless its own entry says otherwise.
    """
    zoo = params.get("models") or {}
    if name not in zoo:
        raise SystemExit(f"model {name!r} is not in params.yaml 'models' ({sorted(zoo)})")
    return {**(params.get("model_defaults") or {}), **(zoo[name] or {}), "name": name}


def build_model(params: dict, n_classes: int, head: str) -> "keras.Model":
    """Build ``params['name']`` at ``params['input_size']`` with a head whose layers are ``{head}_*``."""
    entry = spec(params["name"])
    kwargs = {"input_size": int(params["input_size"]), "n_classes": n_classes,
              "dense_units": int(params["dense_units"]), "head": head}
    width = float(params.get("width", 1.0))
    if entry.width_scalable:
        kwargs["width"] = width
    elif width != 1.0:
        raise SystemExit(f"{entry.name}: has no width multiplier (keras.applications models are full "
                         f"width only); set input_size to shrink it, not width={width}")
    return entry.build(**kwargs)


def save_weights(model: "keras.Model", path) -> None:
    """Save weights atomically (HDF5 written to a temp name, then renamed; no timestamps inside)."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras weight files must end with .weights.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{path.name}")
    try:
        model.save_weights(str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_model(params: dict, n_classes: int, head: str, weights) -> "keras.Model":
    """Rebuild a model from its params and load its saved weights (checked against the architecture)."""
    if not Path(weights).exists():
        raise FileNotFoundError(f"{weights}: weight file not found (did the stage that trains it run?)")
    model = build_model(params, n_classes=n_classes, head=head)
    model.load_weights(str(weights))
    return model
