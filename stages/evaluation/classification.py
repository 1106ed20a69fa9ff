"""The metric table: the paper's metrics (accuracy, per-class sensitivity and PPV) plus F1 and ROC
AUC, each defined once, for the point estimate, the bootstrap interval
(:mod:`stages.evaluation.bootstrap`), ``evaluate.json`` and the report's tables.

Each :class:`Metric` computes one number from the confusion matrix (``matrix[true][predicted]``)
and, for a per-class metric, the class index; or, for a score metric, from the labels and the
probability of class 1. To add a metric: write its function and add one line to :data:`METRICS`;
``evaluate`` writes it, the bootstrap gives it an interval and the report's "beyond the paper"
table shows it (the paper's own columns, ``in_paper``, are laid out as the paper prints them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata


def _share(numerator, denominator) -> float | None:
    # None (JSON null) rather than a made-up 0 when a class has no cases or no predictions.
    return float(numerator / denominator) if denominator else None


def accuracy(matrix: np.ndarray) -> float | None:
    return _share(np.trace(matrix), matrix.sum())


def sensitivity(matrix: np.ndarray, i: int) -> float | None:
    """Recall of class ``i``: TP / (TP + FN)."""
    return _share(matrix[i, i], matrix[i, :].sum())


def ppv(matrix: np.ndarray, i: int) -> float | None:
    """Positive predictive value (precision) of class ``i``: TP / (TP + FP)."""
    return _share(matrix[i, i], matrix[:, i].sum())


def f1(matrix: np.ndarray, i: int) -> float | None:
    """2 TP / (2 TP + FN + FP): the harmonic mean of sensitivity and PPV."""
    return _share(2 * matrix[i, i], matrix[i, :].sum() + matrix[:, i].sum())


def roc_auc(y_true: Sequence, score: Sequence) -> float | None:
    """Area under the ROC curve of ``score`` for class 1 (None when only one class is present).

    The Mann-Whitney form (ties count half), so it needs no curve and is cheap to bootstrap.
    """
    y_true, score = np.asarray(y_true), np.asarray(score, dtype=np.float64)
    positive, negative = score[y_true == 1], score[y_true == 0]
    if len(positive) == 0 or len(negative) == 0:
        return None
    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return round(float(u / (len(positive) * len(negative))), 6)


@dataclass(frozen=True)
class Metric:
    key: str  # the key in evaluate.json
    label: str  # the report's column title
    kind: str  # "overall" (matrix), "per_class" (matrix, class index) or "score" (labels, P(class 1))
    compute: Callable
    in_paper: bool = False  # one of the paper's Table 3 columns


METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "accuracy", "overall", accuracy, in_paper=True),
    Metric("sensitivity", "sensitivity", "per_class", sensitivity, in_paper=True),
    Metric("ppv", "PPV", "per_class", ppv, in_paper=True),
    Metric("f1", "F1", "per_class", f1),
    Metric("roc_auc", "ROC AUC (Level 2)", "score", roc_auc),
)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """``matrix[true][predicted]`` counts for the classes 0 .. n_classes - 1."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def compute_all(y_true: Sequence[int], y_pred: Sequence[int], score: Sequence[float] | None,
                names: Sequence[str]) -> dict[str, float | None]:
    """Every metric of the table, flat: ``{"accuracy": .., "sensitivity/Level 1": .., "roc_auc": ..}``.

    ``score`` (the probability of class 1) may be None: the score metrics are then left out.
    """
    matrix = confusion(y_true, y_pred, len(names))
    out: dict[str, float | None] = {}
    for metric in METRICS:
        if metric.kind == "overall":
            out[metric.key] = metric.compute(matrix)
        elif metric.kind == "per_class":
            out.update({f"{metric.key}/{name}": metric.compute(matrix, i) for i, name in enumerate(names)})
        elif score is not None:
            out[metric.key] = metric.compute(y_true, score)
    return out


def nest(flat: dict[str, object]) -> dict[str, object]:
    """``{"sensitivity/Level 1": v}`` -> ``{"sensitivity": {"Level 1": v}}``; overall keys stay flat."""
    nested: dict[str, object] = {}
    for key, value in flat.items():
        metric, _, name = key.partition("/")
        if name:
            nested.setdefault(metric, {})[name] = value
        else:
            nested[metric] = value
    return nested


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str],
                          score: Sequence[float] | None = None) -> dict:
    """The metric table's point estimates (rounded to 6 decimals), the majority-class rate, the
    support per class and the confusion matrix. Classes are the indices 0 .. len(class_names) - 1.

    The confusion matrix is nested as ``confusion[true][predicted]``: rows are the true class,
    columns the predicted class (the paper's Table 4 prints the transpose).
    """
    if len(y_true) == 0:
        raise ValueError("no predictions to evaluate")
    matrix = confusion(y_true, y_pred, len(class_names))
    counts = matrix.sum(axis=1)
    flat = compute_all(y_true, y_pred, score, class_names)
    report = nest({k: None if v is None else round(v, 6) for k, v in flat.items()})
    report.update({
        "n": int(len(y_true)),
        "majority_class_rate": round(float(counts.max() / counts.sum()), 6),
        "support": {name: int(counts[i]) for i, name in enumerate(class_names)},
        "confusion_matrix": {
            "rows": "true", "columns": "predicted",
            "matrix": {t: {p: int(matrix[i, j]) for j, p in enumerate(class_names)}
                       for i, t in enumerate(class_names)},
        },
    })
    return report


def balanced_log_loss(y_true: Sequence, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Cross-entropy averaged within each class, then over classes (each class weighs the same).

    The fine-tuning split is three quarters Level 2, so the plain mean would mostly score Level 2;
    batch balancing trains both levels equally, and this scores them equally. Probabilities are
    clipped to [eps, 1 - eps] as Keras' cross-entropy clips them.
    """
    y_true = np.asarray(y_true)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1.0 - eps)
    losses = -np.log(probabilities[np.arange(len(y_true)), y_true])
    return float(np.mean([losses[y_true == value].mean() for value in np.unique(y_true)]))


def balanced_accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Mean over the classes present of the share of that class predicted correctly."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == value] == value) for value in np.unique(y_true)]))
