"""The report's interactive charts (``reports/results.html``): Vega-Lite v5 specifications drawn from
the same numbers as the PNG figures of ``stages.reporting.figures``.

Each PNG of ``results.md`` has its charts here (``CHARTS_OF_FIGURE``); the confusion matrices add
the paper's Table 4 beside this run's CXR-S panel. Every chart's title names the data source, as the
PNGs do, so synthetic numbers never pass for clinical ones.
"""

from __future__ import annotations

import csv
from pathlib import Path

from stages import models as zoo
from stages.tasks import LEVEL_NAMES as LEVELS

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # the version stages.reporting.vega bundles
WIDTH, HEIGHT = 300, 260


def _number(text: str) -> float:
    return float(text)


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream, delimiter=delimiter))


def _chart(title: str, data: str, spec: dict) -> dict:
    return {"$schema": SCHEMA, "title": {"text": title, "subtitle": data, "anchor": "start"}, **spec}


def _network_color(models: list[str]) -> dict:
    """One colour per network, in the paper's order, the same in every chart."""
    return {"field": "network", "type": "nominal", "title": "network",
            "scale": {"domain": [zoo.short_label(m) for m in models]},
            "sort": [zoo.short_label(m) for m in models]}


def paper_matrix_by_true_level(printed: dict) -> dict[str, dict[str, int]]:
    """The paper's Table 4, printed with rows = predicted level (REFERENCE.md: the only reading
    consistent with Table 3), re-laid out as ``{true level: {predicted level: count}}``."""
    keys = dict(zip(LEVELS, ("level1", "level2")))
    return {true: {predicted: printed[keys[predicted]][keys[true]] for predicted in LEVELS} for true in LEVELS}


def confusion_chart(evaluations: dict[str, dict], paper_table4: dict | None, data: str) -> dict:
    """One panel per model (rows: true level, columns: predicted), coloured by the share of the true
    level so that test sets of different sizes compare; the paper's Table 4 beside CXR-S's panel."""
    panels = [(f"{zoo.short_label(model)}, this run", evaluation["confusion_matrix"]["matrix"])
              for model, evaluation in evaluations.items()]
    if paper_table4 is not None and "covidnet_cxr_s" in evaluations:
        at = list(evaluations).index("covidnet_cxr_s") + 1
        panels.insert(at, (f"{zoo.short_label('covidnet_cxr_s')}, paper (Table 4)",
                           paper_matrix_by_true_level(paper_table4["matrix"])))
    values = []
    for panel, matrix in panels:
        for true in LEVELS:
            total = sum(int(matrix[true][p]) for p in LEVELS)
            for predicted in LEVELS:
                count = int(matrix[true][predicted])
                values.append({"panel": panel, "true level": true, "predicted level": predicted, "count": count,
                               "share of true level": round(count / total, 4) if total else 0.0})
    encoding_xy = {"x": {"field": "predicted level", "type": "nominal", "sort": list(LEVELS), "axis": {"labelAngle": 0}},
                   "y": {"field": "true level", "type": "nominal", "sort": list(LEVELS)}}
    tooltip = [{"field": f} for f in ("panel", "true level", "predicted level", "count", "share of true level")]
    return _chart("Test confusion matrices (rows: true level, columns: predicted)", data, {
        "data": {"values": values},
        "facet": {"column": {"field": "panel", "type": "nominal", "title": None,
                             "sort": [panel for panel, _ in panels]}},
        "spec": {"width": 170, "height": 170, "layer": [
            {"mark": "rect", "encoding": {**encoding_xy, "tooltip": tooltip, "color": {
                "field": "share of true level", "type": "quantitative", "scale": {"scheme": "blues", "domain": [0, 1]}}}},
            {"mark": {"type": "text", "fontSize": 14}, "encoding": {**encoding_xy, "text": {"field": "count"}, "color": {
                "condition": {"test": "datum['share of true level'] > 0.5", "value": "white"}, "value": "black"}}},
        ]},
    })


# ROC, precision-recall and calibration: (file, x, y, x title, y title, chart title, chance diagonal).
TEST_CURVES = (
    ("roc.csv", "fpr", "tpr", "false positive rate", "true positive rate", "ROC (Level 2 positive)", True),
    ("pr.csv", "recall", "precision", "recall", "precision", "Precision-recall (Level 2 positive)", False),
    ("calibration.csv", "mean_predicted", "fraction_positive", "mean predicted probability of Level 2",
     "observed fraction of Level 2", "Calibration (Level 2 probability)", True),
)


def test_curve_chart(metrics: Path, models: list[str], curve: tuple, data: str) -> dict:
    name, x, y, x_title, y_title, title, diagonal = curve
    values = [{"network": zoo.short_label(model), "point": i, x_title: _number(row[x]), y_title: _number(row[y])}
              for model in models if (metrics / "models" / model / name).exists()
              for i, row in enumerate(_rows(metrics / "models" / model / name))]
    axis = {"type": "quantitative", "scale": {"domain": [0, 1]}}
    line = {"mark": {"type": "line", "point": name == "calibration.csv"}, "encoding": {
        "x": {"field": x_title, **axis}, "y": {"field": y_title, **axis}, "color": _network_color(models),
        # In file order: a ROC curve has vertical steps that sorting by x would scramble.
        "order": {"field": "point", "type": "quantitative"},
        "tooltip": [{"field": "network"}, {"field": x_title, "format": ".3f"}, {"field": y_title, "format": ".3f"}]}}
    layers = [line]
    if diagonal:
        # The chance (ROC) or perfect-calibration diagonal, on the same fields so the axes keep their titles.
        layers.insert(0, {"data": {"values": [{x_title: 0, y_title: 0}, {x_title: 1, y_title: 1}]},
                          "mark": {"type": "line", "color": "grey", "strokeDash": [2, 2], "strokeWidth": 1},
                          "encoding": {"x": {"field": x_title, **axis}, "y": {"field": y_title, **axis}}})
    return _chart(title, data, {"width": WIDTH, "height": HEIGHT, "data": {"values": values}, "layer": layers})


# Fine-tuning curves per epoch (dvclive's files; step 0 is epoch 1): (metric, y title).
FINETUNE_CURVES = (
    ("loss", "training loss"),
    ("val_loss_balanced", "validation balanced cross-entropy (selects the epoch)"),
    ("val_accuracy", "validation accuracy"),
)


def finetune_curve_chart(metrics: Path, models: list[str], curve: tuple, data: str) -> dict:
    metric, y_title = curve
    values = []
    for model in models:
        path = metrics / "models" / model / "finetune_curves" / "plots" / "metrics" / f"{metric}.tsv"
        if path.exists():
            values += [{"network": zoo.short_label(model), "epoch": int(row["step"]) + 1, y_title: _number(row[metric])}
                       for row in _rows(path, delimiter="\t")]
    return _chart(f"Fine-tuning: {y_title}", data, {
        "width": WIDTH, "height": HEIGHT, "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {"x": {"field": "epoch", "type": "quantitative", "axis": {"tickMinStep": 1}},
                     "y": {"field": y_title, "type": "quantitative", "scale": {"zero": False}},
                     "color": _network_color(models),
                     "tooltip": [{"field": "network"}, {"field": "epoch"}, {"field": y_title, "format": ".4f"}]}})


def charts(evaluations: dict[str, dict], metrics: Path, models: list[str], paper_table4: dict | None,
           data: str) -> dict[str, list[dict]]:
    """The charts of each figure of ``results.md`` (``figures/NAME.png`` -> its charts), in page order."""
    return {"figures/curves.png": [test_curve_chart(metrics, models, c, data) for c in TEST_CURVES],
            "figures/confusion_matrix.png": [confusion_chart(evaluations, paper_table4, data)],
            "figures/finetune_curves.png": [finetune_curve_chart(metrics, models, c, data) for c in FINETUNE_CURVES]}
