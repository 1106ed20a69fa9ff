"""Classification metrics as the paper reports them: accuracy, per-class sensitivity and PPV."""

from __future__ import annotations

from typing import Sequence

import numpy as np
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
        "sensitivity": {}, "ppv": {}, "support": {},
        "confusion_matrix": {
            "rows": "true", "columns": "predicted",
            "matrix": {t: {p: int(matrix[i, j]) for j, p in enumerate(class_names)}
                       for i, t in enumerate(class_names)},
        },
    }
    for i, name in enumerate(class_names):
        report["sensitivity"][name] = _ratio(matrix[i, i], matrix[i, :].sum())
        report["ppv"][name] = _ratio(matrix[i, i], matrix[:, i].sum())
        report["support"][name] = int(matrix[i, :].sum())
    return report
