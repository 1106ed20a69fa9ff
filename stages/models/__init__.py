"""Model builders, selected by ``model.name`` in params.yaml."""

from __future__ import annotations

import keras

from stages.models.covidnet import build_covidnet_cxr_s

BUILDERS = {"covidnet_cxr_s": build_covidnet_cxr_s}


def build_model(model_params: dict, n_classes: int, head: str) -> keras.Model:
    """Build ``model.name`` at ``model.input_size``/``model.width`` with a head named ``head``."""
    name = model_params["name"]
    if name not in BUILDERS:
        raise SystemExit(f"model.name must be one of {sorted(BUILDERS)}, got {name!r}")
    return BUILDERS[name](input_size=int(model_params["input_size"]), width=float(model_params["width"]),
                          n_classes=n_classes, dense_units=int(model_params["dense_units"]), head=head)


def save_weights(model: keras.Model, path) -> None:
    """Save weights atomically (HDF5 written to a temp name, then renamed; no timestamps inside)."""
    import os
    from pathlib import Path

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


def load_model(model_params: dict, n_classes: int, head: str, weights) -> keras.Model:
    """Rebuild a model from params and load its saved weights (checked against the architecture)."""
    from pathlib import Path

    if not Path(weights).exists():
        raise FileNotFoundError(f"{weights}: weight file not found (did the stage that trains it run?)")
    model = build_model(model_params, n_classes=n_classes, head=head)
    model.load_weights(str(weights))
    return model
