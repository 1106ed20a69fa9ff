"""Classification metrics: the paper's (accuracy, per-class sensitivity and PPV) plus F1 and ROC AUC."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix


def _ratio(numerator: float, denominator: float) -> float | None:
    # None (JSON null) rather than a made-up 0 when a class has no cases or no predictions.
    return round(float(numerator / denominator), 6) if denominator else None


def classification_report(y_true: Sequence, y_pred: Sequence, class_names: Sequence[str],
                          class_values: Sequence) -> dict:
    """Accuracy, majority-class rate, per-class sensitivity/PPV, and the confusion matrix.

    The confusion matrix is nested as ``confusion[true][predicted]``: rows are the true class,
    columns the predicted class (the paper's Table 4 prints the transpose).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no predictions to evaluate")
    matrix = confusion_matrix(y_true, y_pred, labels=list(class_values))
    counts = matrix.sum(axis=1)
    report = {
        "n": int(len(y_true)),
        "accuracy": _ratio(np.trace(matrix), matrix.sum()),
        "majority_class_rate": _ratio(counts.max(), counts.sum()),
        "sensitivity": {}, "ppv": {}, "f1": {}, "support": {},
        "confusion_matrix": {
            "rows": "true", "columns": "predicted",
            "matrix": {t: {p: int(matrix[i, j]) for j, p in enumerate(class_names)}
                       for i, t in enumerate(class_names)},
        },
    }
    for i, name in enumerate(class_names):
        report["sensitivity"][name] = _ratio(matrix[i, i], matrix[i, :].sum())
        report["ppv"][name] = _ratio(matrix[i, i], matrix[:, i].sum())
        # F1 = 2 TP / (2 TP + FN + FP): the harmonic mean of sensitivity and PPV.
        report["f1"][name] = _ratio(2 * matrix[i, i], matrix[i, :].sum() + matrix[:, i].sum())
        report["support"][name] = int(matrix[i, :].sum())
    return report


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
