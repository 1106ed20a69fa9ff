"""Reading ``params.yaml``: one section per stage, with the ``preset`` overrides applied.

``preset: paper`` swaps in the paper's settings (480 px, full width, 137 epochs, batch 50) from the
``presets`` section, so the full-size run is one switch away: ``dvc exp run -S preset=paper``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return all parameters with the selected preset merged over the defaults."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: parameter file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    preset = raw.get("preset", "embedded")
    presets = raw.get("presets") or {}
    if preset not in presets:
        raise ValueError(f"{path}: preset {preset!r} is not defined under 'presets' ({sorted(presets)})")
    return _deep_merge(raw, presets[preset] or {})


def section(name: str, path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """One stage's section of the parameters (preset applied)."""
    params = load_params(path)
    if name not in params:
        raise KeyError(f"{path}: missing section {name!r}")
    return params[name]
