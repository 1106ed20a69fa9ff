"""How the report writes numbers: percentages of this run, as the paper printed them, signed differences."""

from __future__ import annotations

NO_PAPER = "-"  # in the paper's columns, for a model the paper has no row for


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def printed_pct(value) -> str:
    """A percentage as the paper printed it (already in percent)."""
    return f"{value}%"


def signed_pct(fraction: float) -> str:
    return f"{100 * fraction:+.1f}%"
