"""The report's figures (``reports/figures/``): confusion matrices, fine-tuning curves, test curves.

PNGs without the "Software" or date metadata, so the same numbers give byte-identical files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stages import models as zoo  # noqa: E402
from stages.common.io import atomic_write  # noqa: E402


def _read_tsv(path: Path, column: str) -> list[float]:
    if not path.exists():
        return []
    with path.open() as handle:
        return [float(row[column]) for row in csv.DictReader(handle, delimiter="\t")]


def _save_figure(figure, path: Path) -> None:
    # No "Software"/date metadata: the same numbers give byte-identical PNGs.
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    plt.close(figure)


def confusion_figure(evaluations: dict[str, dict], title: str, path: Path) -> None:
    """One confusion-matrix panel per model (rows: true level, columns: predicted)."""
    figure, axes = plt.subplots(1, len(evaluations), figsize=(3.8 * len(evaluations), 3.6), squeeze=False)
    for axis, (model, evaluation) in zip(axes[0], evaluations.items()):
        matrix = evaluation["confusion_matrix"]["matrix"]
        names = list(matrix)
        values = [[matrix[t][p] for p in names] for t in names]
        axis.imshow(values, cmap="Blues")
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                axis.text(j, i, str(value), ha="center", va="center",
                          color="white" if value > max(map(max, values)) / 2 else "black")
        axis.set_xticks(range(len(names)), names)
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("predicted level")
        axis.set_ylabel("true level")
        axis.set_title(zoo.short_label(model), fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)


def curves_figure(metrics: Path, models: list[str], title: str, path: Path) -> None:
    """Fine-tuning curves of every model: train loss and the selection score per epoch."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for model in models:
        plots = metrics / "models" / model / "finetune_curves" / "plots" / "metrics"
        label = zoo.short_label(model)
        for axis, name in zip(axes, ("loss", "val_loss_balanced")):
            values = _read_tsv(plots / f"{name}.tsv", name)
            axis.plot(range(1, len(values) + 1), values, label=label)
    for axis, name in zip(axes, ("training loss", "validation balanced cross-entropy (selects the epoch)")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)


def test_curves_figure(metrics: Path, models: list[str], title: str, path: Path) -> None:
    """ROC, precision-recall and calibration of every model, from evaluate's curve tables."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = (("roc.csv", "fpr", "tpr", "false positive rate", "true positive rate", "ROC (Level 2 positive)"),
              ("pr.csv", "recall", "precision", "recall", "precision", "precision-recall"),
              ("calibration.csv", "mean_predicted", "fraction_positive", "mean predicted P(Level 2)",
               "observed fraction Level 2", "calibration"))
    for axis, (name, x, y, x_label, y_label, panel_title) in zip(axes, panels):
        for model in models:
            with (metrics / "models" / model / name).open(newline="") as stream:
                rows = list(csv.DictReader(stream))
            axis.plot([float(r[x]) for r in rows], [float(r[y]) for r in rows],
                      marker="o" if name == "calibration.csv" else None, label=zoo.short_label(model))
        if name != "pr.csv":
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel=x_label, ylabel=y_label, title=panel_title, xlim=(0, 1), ylim=(0, 1.02))
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    _save_figure(figure, path)


def write_figures(evaluations: dict[str, dict], metrics: Path, models: list[str], data: str, figures: Path) -> None:
    """Every figure of the report into ``figures``; ``data`` titles them (the data source)."""
    confusion_figure(evaluations, f"Test confusion matrices - {data}", figures / "confusion_matrix.png")
    curves_figure(metrics, models, f"Fine-tuning curves - {data}", figures / "finetune_curves.png")
    if all((metrics / "models" / m / "roc.csv").exists() for m in models):
        test_curves_figure(metrics, models, f"Test curves - {data}", figures / "curves.png")
