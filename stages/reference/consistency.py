"""Is the paper consistent with itself? Table 3 recomputed from Table 4, and each Table 3 row
solved for whole counts on the 150 test images.

A printed percentage ``p`` with ``d`` decimals is taken to fit an exact value ``x`` when
``|x - p| < 10**-d``: the paper both rounds (87.27 for 87.2727) and truncates (92.85 for 92.857).
The findings are reported, not resolved: the report shows them and which reading it uses, and
prints each Table 3 row that fits only with the level names swapped both as printed and with the
names swapped back (:func:`swap_level_names`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

TABLE3_KEYS = ("sensitivity_level1", "sensitivity_level2", "ppv_level1", "ppv_level2", "accuracy")


def other_level(key: str) -> str:
    """The same figure of the other level: ``ppv_level1`` <-> ``ppv_level2``; ``accuracy`` as is."""
    return key.replace("level2", "levelX").replace("level1", "level2").replace("levelX", "level1")


def swap_level_names(row: dict[str, Any]) -> dict[str, Any]:
    """A Table 3 row with Level 1 and Level 2 exchanged (sensitivity and PPV; accuracy unchanged):
    the reading of a row whose whole counts fit only with the level names swapped. The values are
    the printed ones, moved, not recomputed."""
    return {key: row[other_level(key)] for key in row}


def decimals(printed: float) -> int:
    text = repr(float(printed))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def fits(printed: float, exact_percent: float) -> bool:
    return abs(exact_percent - float(printed)) < 10.0 ** -decimals(printed)


def metrics_of_counts(true1, true2, tp1, tp2) -> dict[str, Any]:
    """Table 3's five percentages from the counts; numbers or broadcasting arrays (a zero
    denominator gives NaN, which fits no printed figure)."""
    pred1, pred2 = tp1 + (true2 - tp2), tp2 + (true1 - tp1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"sensitivity_level1": np.divide(100.0 * tp1, true1), "sensitivity_level2": np.divide(100.0 * tp2, true2),
                "ppv_level1": np.divide(100.0 * tp1, pred1), "ppv_level2": np.divide(100.0 * tp2, pred2),
                "accuracy": np.divide(100.0 * (tp1 + tp2), true1 + true2)}


def table3_from_table4(table4: dict[str, Any]) -> dict[str, Any]:
    """Counts and percentages implied by the confusion matrix as printed (rows = predicted)."""
    matrix = table4["matrix"]
    true1 = matrix["level1"]["level1"] + matrix["level2"]["level1"]
    true2 = matrix["level1"]["level2"] + matrix["level2"]["level2"]
    tp1, tp2 = matrix["level1"]["level1"], matrix["level2"]["level2"]
    exact = metrics_of_counts(true1, true2, tp1, tp2)
    return {"true_level1": true1, "true_level2": true2, "tp_level1": tp1, "tp_level2": tp2,
            "percent": {k: round(float(v), 4) for k, v in exact.items()}}


def solve_row(row: dict[str, float], total: int) -> list[dict[str, int]]:
    """Every (true L1, true L2, TP L1, TP L2) on ``total`` images that fits all five percentages."""
    solutions = []
    for true1 in range(1, total):
        true2 = total - true1
        values = metrics_of_counts(true1, true2, np.arange(true1 + 1)[:, None], np.arange(true2 + 1)[None, :])
        ok = np.ones((true1 + 1, true2 + 1), dtype=bool)
        for key in TABLE3_KEYS:
            ok &= np.abs(values[key] - float(row[key])) < 10.0 ** -decimals(row[key])
        for a, b in zip(*np.nonzero(ok)):
            solutions.append({"true_level1": true1, "true_level2": true2, "tp_level1": int(a), "tp_level2": int(b)})
    return solutions


def check(paper: dict[str, Any]) -> dict[str, Any]:
    """All findings, as data: for ``metrics/paper_consistency.json`` and the report."""
    total = int(paper["cohort"]["test_images"])
    test_level1 = int(paper["cohort"]["test_level1_images"])
    from_table4 = table3_from_table4(paper["table4"])
    printed = paper["table3"]["covidnet_cxr_s"]
    table4_vs_table3 = {key: {"table3": printed[key], "from_table4": from_table4["percent"][key],
                              "fits": fits(printed[key], from_table4["percent"][key])} for key in TABLE3_KEYS}
    rows = {}
    for model, row in paper["table3"].items():
        solutions = solve_row(row, total)
        names = sorted({"as printed" if s["true_level1"] == test_level1 else
                        "swapped" if s["true_level2"] == test_level1 else "other" for s in solutions})
        rows[model] = {"solutions": solutions, "level_names": names[0] if len(names) == 1 else names}
    text = {}
    for model, claims in (paper.get("text") or {}).items():
        for key, value in claims.items():
            other = other_level(key)
            text[f"{model}.{key}"] = {
                "text": value, "from_table4": from_table4["percent"][key],
                "fits": fits(value, from_table4["percent"][key]),
                "fits_other_level": fits(value, from_table4["percent"][other])}
    return {"test_images": total, "test_level1_images": test_level1, "table4": from_table4,
            "table4_vs_table3": table4_vs_table3, "table3_rows": rows, "text_claims": text}
