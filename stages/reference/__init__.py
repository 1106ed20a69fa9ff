"""The paper's reported figures (``paper.yaml``), for the report and the checks against them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")


@lru_cache(maxsize=1)
def paper() -> dict:
    """Cohort counts and Tables 1-4 of Aboutalebi et al. (2022), as printed."""
    return yaml.safe_load(PAPER_FILE.read_text())
