"""The explanations table of the report and the README: ``metrics/explain/<model>/explain.json``.

Per model: the Grad-CAM layer, the localisation scores against the phantom's planted zones beside
random maps (the paired difference with its interval), and the two sanity checks (the Level 2
margin's fall without the opacities; the rank correlation with a freshly initialised network's
maps). Every number is tracked to its key; the heading says the data source, and on phantoms that
this checks the explanations on phantoms, not on patients.
"""

from __future__ import annotations

from stages import models as zoo

GROUPS = ("all", "Level 1", "Level 2")


def _signed_ci(entry: dict | None) -> str:
    """``+0.089 (+0.039 to +0.142)``; "n/a" when undefined."""
    if not entry or entry.get("mean") is None:
        return "n/a"
    if entry.get("low") is None:
        return f"{entry['mean']:+.3f}"
    return f"{entry['mean']:+.3f} ({entry['low']:+.3f} to {entry['high']:+.3f})"


def _score(entry: dict) -> str:
    """``0.232 vs 0.143 random: +0.089 (+0.039 to +0.142)``, bold when the interval is above zero."""
    text = f"{entry['gradcam']['mean']:.3f} vs {entry['random']['mean']:.3f}: {_signed_ci(entry['difference'])}"
    return f"**{text}**" if entry.get("above_random") else text


def explanation_lines(explanations: dict[str, dict], data: str, heading: str = "##",
                      groups: tuple[str, ...] = GROUPS) -> list[str]:
    """The table, one row per model and group (``all`` and each level); nothing when no model was explained."""
    if not explanations:
        return []
    first = next(iter(explanations.values()))
    scored = first.get("localisation") is not None
    lines = [f"{heading} Explanations: Grad-CAM, checked - {data}", ""]
    if not scored:
        lines += [f"No planted truth ({first['reason']}): no localisation score and no disease effect. "
                  "Rank correlation of each map with a freshly initialised network's, mean (95% "
                  "patient-bootstrap interval):", "",
                  "| network | layer | images | rank correlation with a fresh network |", "| --- | --- | --- | --- |"]
        for model, explanation in explanations.items():
            correlation = explanation["sanity_checks"]["randomised_weights"]["rank_correlation"]["all"]
            lines.append(f"| {zoo.label(model)} | `{explanation['layer']}` | {explanation['images']} | "
                         f"{_signed_ci(correlation)} |")
        return lines + [""]
    lines += [
        f"Grad-CAM of {first['images']} test images at the layer each model's registry entry names, "
        "scored against the lung zones the phantom opacified: the share of the map's mass inside them and "
        "the pointing game, each beside random maps on the same grid, with the paired difference "
        "(bold: its 95% patient-bootstrap interval is above zero). Beside them, the two sanity checks: "
        "how far the Level 2 margin z2 - z1 falls when the same radiograph is redrawn without its "
        "opacities (does the model use the disease?), and the rank correlation of each map with a "
        "freshly initialised network's (near 1: the map shows the architecture). This checks the "
        "explanations on synthetic phantoms, not on patients.", "",
        "| network | layer (grid) | images | mass inside the zones | pointing game | margin drop without the opacities "
        "| rank correlation with a fresh network |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, explanation in explanations.items():
        grid = " x ".join(str(side) for side in explanation["heatmap_grid"])
        checks = explanation["sanity_checks"]
        for group in groups:
            localisation = explanation["localisation"].get(group)
            if localisation is None:
                continue
            name = zoo.label(model) + ("" if group == "all" else f", {group}")
            lines.append(
                f"| {name} | `{explanation['layer']}` ({grid}) | {localisation['images']} | "
                f"{_score(localisation['mass_inside'])} | {_score(localisation['pointing_hit'])} | "
                f"{_signed_ci(checks['disease_effect']['margin_drop'].get(group))} | "
                f"{_signed_ci(checks['randomised_weights']['rank_correlation'].get(group))} |")
    return lines + [""]
