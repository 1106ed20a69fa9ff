"""The model zoo: builders selected by name (``models.<name>`` in params.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from stages.models import numerics  # noqa: F401  (exact batch norm in every graph built here)
from stages.models.baselines import build_densenet121, build_resnet50
from stages.models.covidnet import build_covidnet_cxr_s


def _covidnet(params: dict, n_classes: int, head: str) -> keras.Model:
    return build_covidnet_cxr_s(input_size=int(params["input_size"]), width=float(params.get("width", 1.0)),
                                n_classes=n_classes, dense_units=int(params["dense_units"]), head=head)


def _fixed_width(builder):
    def build(params: dict, n_classes: int, head: str) -> keras.Model:
        width = float(params.get("width", 1.0))
        if width != 1.0:
            raise SystemExit(f"{params['name']}: keras.applications has no width multiplier; "
                             f"set input_size to shrink it, not width={width}")
        return builder(input_size=int(params["input_size"]), n_classes=n_classes,
                       dense_units=int(params["dense_units"]), head=head)
    return build


# Models with a channel multiplier; keras.applications baselines are full width only.
WIDTH_SCALABLE = frozenset({"covidnet_cxr_s"})

BUILDERS = {
    "covidnet_cxr_s": _covidnet,
    "densenet121": _fixed_width(build_densenet121),
    "resnet50": _fixed_width(build_resnet50),
}


def model_params(params: dict, name: str) -> dict:
    """``model_defaults`` with ``models.<name>`` over them (preset applied), and its ``name`` added.

    One set of defaults for the whole zoo keeps the comparison like for like: every network
    trains at the same input size and full width unless its own entry says otherwise.
    """
    zoo = params.get("models") or {}
    if name not in zoo:
        raise SystemExit(f"model {name!r} is not in params.yaml 'models' ({sorted(zoo)})")
    return {**(params.get("model_defaults") or {}), **(zoo[name] or {}), "name": name}


def build_model(params: dict, n_classes: int, head: str) -> keras.Model:
    """Build ``params['name']`` at ``params['input_size']`` with a head whose layers are ``{head}_*``."""
    name = params["name"]
    if name not in BUILDERS:
        raise SystemExit(f"model name must be one of {sorted(BUILDERS)}, got {name!r}")
    return BUILDERS[name](params, n_classes, head)


def save_weights(model: keras.Model, path) -> None:
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


def load_model(params: dict, n_classes: int, head: str, weights) -> keras.Model:
    """Rebuild a model from its params and load its saved weights (checked against the architecture)."""
    if not Path(weights).exists():
        raise FileNotFoundError(f"{weights}: weight file not found (did the stage that trains it run?)")
    model = build_model(params, n_classes=n_classes, head=head)
    model.load_weights(str(weights))
    return model
