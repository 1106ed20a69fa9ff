"""What Table 3 may be read as: like for like or not, and the paired differences that may rank.

A ranking word appears only where the paired interval (stage ``compare``) of the accuracy
difference excludes zero *and*, when ``metrics/bench_seeds.json`` is there, the difference has the
same sign under every benchmarked training seed (issue 15: a ranking the report implies must hold
across seeds). The seed spread is shown beside it.
"""

from __future__ import annotations

from stages import models as zoo
from stages.tasks import LEVEL_NAMES as LEVELS


def _difference_ci(entry: dict, points: bool = True) -> str:
    """A paired difference with its interval: shares in percentage points (``-9.20 (-16.67 to -2.41)``),
    scores such as ROC AUC to 3 decimals (``points=False``)."""
    if entry.get("difference") is None:
        return "n/a"
    scale, spec = (100, "+.2f") if points else (1, "+.3f")
    text = f"{scale * entry['difference']:{spec}}"
    if entry.get("low") is None:
        return text
    return f"{text} ({scale * entry['low']:{spec}} to {scale * entry['high']:{spec}})"


def _excludes_zero(entry: dict) -> bool:
    return entry.get("low") is not None and (entry["low"] > 0 or entry["high"] < 0)


def comparison_lines(input_sizes: dict[str, int], comparisons: dict | None = None,
                     seeds: dict | None = None) -> list[str]:
    """What the table may be read as: like for like or not, and the paired differences that may rank."""
    sizes = set(input_sizes.values())
    if len(sizes) > 1:
        listed = ", ".join(f"{zoo.label(m)} {size} px" for m, size in input_sizes.items())
        return [f"Input sizes differ in this run: {listed}. This is not a like-for-like comparison of the "
                "architectures.", ""]
    size = next(iter(input_sizes.values()))
    lines = [f"All networks train at {size} x {size} px and full width with one protocol (like for like)."]
    if not comparisons or not comparisons.get("differences"):
        return lines + ["No paired comparison (`metrics/comparisons.json`), so the table does not rank them.", ""]
    reference = comparisons["reference"]
    lines += ["", f"Paired differences, {zoo.label(reference)} minus each other network, on the same test images "
              f"({comparisons['level']:.0%} intervals from a paired bootstrap over the {comparisons['patients']} test "
              "patients: both networks are scored on every resample; `metrics/comparisons.json`). Shares in "
              "percentage points:", "",
              "| minus | accuracy | sensitivity Level 1 | sensitivity Level 2 | ROC AUC (Level 2) |",
              "| --- | --- | --- | --- | --- |"]
    ranked, unranked, seed_unranked = [], [], []
    for model in zoo.ordered(comparisons["differences"]):
        values = comparisons["differences"][model]
        lines.append(f"| {zoo.label(model)} | {_difference_ci(values['accuracy'])} | "
                     + " | ".join(_difference_ci(values["sensitivity"][level]) for level in LEVELS)
                     + f" | {_difference_ci(values['roc_auc'], points=False)} |")
        if not _excludes_zero(values["accuracy"]):
            unranked.append(model)
        elif _sign_holds(seed_differences(seeds, reference, model), values["accuracy"]["difference"]) is False:
            seed_unranked.append(model)
        else:
            ranked.append(model)
    lines.append("")
    sentences = []
    for model in ranked:
        direction = "higher" if comparisons["differences"][model]["accuracy"]["difference"] > 0 else "lower"
        over_seeds = seed_differences(seeds, reference, model)
        sentences.append(f"On this test split the accuracy of {zoo.label(reference)} is {direction} than that "
                         f"of {zoo.label(model)}: the paired interval excludes zero"
                         + (f", and the difference had this sign under all {len(over_seeds)} training seeds."
                            if over_seeds else " (not checked over training seeds: no seed benchmark)."))
    for model in seed_unranked:
        over_seeds = seed_differences(seeds, reference, model)
        sentences.append(f"{zoo.label(reference)} is not ranked against {zoo.label(model)}: the paired interval "
                         f"excludes zero on this split, but the accuracy difference changed sign over the "
                         f"{len(over_seeds)} training seeds ({_signs(over_seeds)}).")
    if unranked:
        sentences.append(f"{zoo.label(reference)} is not ranked against "
                         + " or ".join(zoo.label(m) for m in unranked)
                         + ": the paired interval of the accuracy difference includes zero.")
    spread = _seed_spread(seeds, [reference] + ranked + unranked)
    sentences.append("The intervals cover the test sample only, for one training seed"
                     + (f"; over {spread}" if spread else "") + ".")
    return lines + [" ".join(sentences), ""]


def seed_differences(seeds: dict | None, reference: str, model: str) -> list[float]:
    """Test accuracy of ``reference`` minus ``model`` under each training seed both were benchmarked with
    (``metrics/bench_seeds.json``), in seed order; empty without a benchmark."""
    def values(name: str) -> dict:
        entry = ((seeds or {}).get("models") or {}).get(name) or {}
        return (entry.get("evaluate.json", {}).get("accuracy") or {}).get("values") or {}
    mine, theirs = values(reference), values(model)
    return [mine[seed] - theirs[seed] for seed in sorted(set(mine) & set(theirs), key=str)]


def _sign_holds(differences: list[float], difference: float) -> bool | None:
    """Whether every seed's difference is non-zero with the sign of ``difference``; None without seeds."""
    if not differences:
        return None
    return all(d > 0 for d in differences) if difference > 0 else all(d < 0 for d in differences)


def _signs(differences: list[float]) -> str:
    above = sum(d > 0 for d in differences)
    below = sum(d < 0 for d in differences)
    return f"higher under {above}, lower under {below}, equal under {len(differences) - above - below}"


def _seed_spread(seeds: dict | None, models: list[str]) -> str:
    """``5 training seeds (...) the accuracy SD in points was 3.95 for COVID-Net CXR-S, ...`` from bench_seeds.json."""
    if not seeds:
        return ""
    parts = []
    for model in models:
        accuracy = ((seeds.get("models") or {}).get(model) or {}).get("evaluate.json", {}).get("accuracy")
        if accuracy:
            parts.append(f"{100 * accuracy['sd']:.2f} for {zoo.label(model)}")
    if not parts:
        return ""
    return (f"{len(seeds['seeds'])} training seeds (`metrics/bench_seeds.json`) the accuracy SD in points was "
            + ", ".join(parts))
