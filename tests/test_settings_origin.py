"""docs/settings.md names the origin of every params.yaml setting (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ORIGINS = {"paper", "COVID-Net code", "data source", "ours"}


def _leaves(mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _rows() -> dict[str, str]:
    """``setting -> origin`` from the params table of docs/settings.md."""
    text = (ROOT / "docs" / "settings.md").read_text()
    section = text.split("## params.yaml", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| ([^|]+?) \|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_every_setting_has_an_origin():
    rows = _rows()
    settings = list(_leaves(yaml.safe_load((ROOT / "params.yaml").read_text())))
    missing = [s for s in settings if s not in rows]
    assert not missing, f"docs/settings.md has no row for: {missing}"
    stale = sorted(set(rows) - set(settings))
    assert not stale, f"docs/settings.md has rows for settings params.yaml no longer has: {stale}"
    unknown = {s: o for s, o in rows.items() if o not in ORIGINS}
    assert not unknown, f"origins must be one of {sorted(ORIGINS)}: {unknown}"


def test_the_papers_own_figures_are_marked_paper():
    rows = _rows()
    for setting in ("ingest.crop_top_fraction", "presets.paper.finetune.epochs", "presets.paper.finetune.batch_size",
                    "finetune.augment.rotation_degrees", "complexity.input_size"):
        assert rows[setting] == "paper", setting
    for setting in ("model_defaults.dense_units", "presets.paper.model_defaults.dense_units",
                    "presets.paper.pretrain.epochs"):  # the paper gives no size / schedule
        assert rows[setting] == "ours", setting
