"""The paper's Table 3 rows beside ours, and what the paper-consistency stage found in them.

Rows are named as the paper names its networks (``CheXNet``); where ``metrics/paper_consistency.json``
finds that a row's counts fit only with the level names swapped, the row is shown again with Level 1
and Level 2 swapped back.
"""

from __future__ import annotations

from stages import models as zoo
from stages.reference.consistency import TABLE3_KEYS, other_level, swap_level_names
from stages.reporting.formatting import NO_PAPER, printed_pct


def paper_rows(model: str, row: dict | None, consistency: dict | None) -> list[str]:
    """The paper's Table 3 row for ``model`` under the paper's name for it, as printed; and, when
    ``metrics/paper_consistency.json`` finds that the row's counts fit only with the level names
    swapped, the row again with Level 1 and Level 2 swapped back (accuracy unchanged)."""
    name = zoo.paper_label(model)
    if not row:
        return [f"| {name} | paper | " + " | ".join(NO_PAPER for _ in TABLE3_KEYS) + " |"]
    lines = [f"| {name} | paper | " + " | ".join(printed_pct(row[key]) for key in TABLE3_KEYS) + " |"]
    if level_names(consistency, model) == "swapped":
        swapped = swap_level_names(row)
        lines.append(f"| {name} | paper, level names swapped back | "
                     + " | ".join(printed_pct(swapped[key]) for key in TABLE3_KEYS) + " |")
    return lines


def level_names(consistency: dict | None, model: str):
    """``as printed``, ``swapped`` (or a list of readings) for the paper's Table 3 row of ``model``,
    from ``metrics/paper_consistency.json``; None without that file or row."""
    return (((consistency or {}).get("table3_rows") or {}).get(model) or {}).get("level_names")


def _figure(key: str) -> str:
    """``sensitivity_level2`` -> ``Level 2 sensitivity``, ``ppv_level1`` -> ``Level 1 PPV``."""
    metric, _, level = key.partition("_level")
    metric = "PPV" if metric == "ppv" else metric
    return f"Level {level} {metric}" if level else metric


def consistency_lines(consistency: dict | None) -> list[str]:
    """What stage ``paper_consistency`` found in the paper's own tables (``metrics/paper_consistency.json``)."""
    if not consistency:
        return []
    lines = ["Paper consistency (`metrics/paper_consistency.json`):", ""]
    fitted = consistency["table4_vs_table3"]
    table4 = consistency["table4"]
    agree = all(entry["fits"] for entry in fitted.values())
    lines.append(f"- Table 4 read with rows = predicted level gives {table4['true_level1']} true Level 1 and "
                 f"{table4['true_level2']} true Level 2 images; the COVID-Net CXR-S row of Table 3 "
                 + ("matches it to the printed precision." if agree else "does not match it in "
                    + ", ".join(k for k, e in fitted.items() if not e["fits"]) + "."))
    for model, row in consistency["table3_rows"].items():
        solutions = row["solutions"]
        counts = "; ".join(f"{s['true_level1']} / {s['true_level2']} true, TP {s['tp_level1']} / {s['tp_level2']}"
                           for s in solutions) or "none"
        lines.append(f"- {zoo.paper_label(model)} (paper): whole counts on {consistency['test_images']} images "
                     f"fitting every printed figure (Level 1 / Level 2): {counts}; level names "
                     f"{row['level_names'] if isinstance(row['level_names'], str) else ', '.join(row['level_names'])}.")
    for key, claim in consistency["text_claims"].items():
        if not claim["fits"]:
            model, _, figure = key.partition(".")
            lines.append(f"- The text gives {zoo.paper_label(model)}'s {_figure(figure)} as {claim['text']}%; "
                         f"Table 4 gives {claim['from_table4']}%"
                         + (f" (the text's figure is the {_figure(other_level(figure))})."
                            if claim["fits_other_level"] else "."))
    return lines + [""] + swapped_back_lines(consistency)


def _names(models: list[str]) -> str:
    """``CheXNet``, ``CheXNet and ResNet-50``: the paper's names for ``models``."""
    names = [zoo.paper_label(m) for m in zoo.ordered(models)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def swapped_back_lines(consistency: dict) -> list[str]:
    """Why Table 3 shows some of the paper's rows twice: as printed and with the level names swapped back."""
    rows = consistency["table3_rows"]
    swapped = [model for model in rows if level_names(consistency, model) == "swapped"]
    if not swapped:
        return []
    as_printed = [model for model in rows if level_names(consistency, model) == "as printed"]
    test_level1 = consistency["test_level1_images"]
    one = len(swapped) == 1
    return [f"The paper's {_names(swapped)} row{'' if one else 's'} {'is' if one else 'are'} shown as printed, "
            "not comparable level by level, and again with the level names swapped back (Level 1 and Level 2 "
            f"exchanged in sensitivity and PPV, accuracy unchanged): read so, {'it fits' if one else 'they fit'} "
            f"the test set's {test_level1} Level 1 and {consistency['test_images'] - test_level1} Level 2 images"
            + (f", as the {_names(as_printed)} row{'' if len(as_printed) == 1 else 's'} "
               f"{'does' if len(as_printed) == 1 else 'do'} as printed." if as_printed else "."), ""]
