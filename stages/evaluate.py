"""Stage ``evaluate``: the only stage that reads the test split.

Run once per model (``evaluate@<model>``). Writes to ``metrics/models/<model>/evaluate.json``
every metric of the table in :mod:`stages.evaluation.classification` (accuracy, per-level
sensitivity, PPV and F1, ROC AUC with Level 2 as the positive class), the majority-class rate,
the expected calibration error, the confusion matrix (rows: true level, columns: predicted level),
and 95% confidence intervals from a bootstrap over patients (:mod:`stages.evaluation.bootstrap`).
For ``dvc plots`` it writes one row per test image, each with its data source (``test_predictions.csv``:
confusion matrix) and the ROC, precision-recall and calibration curves (``roc.csv``, ``pr.csv``,
``calibration.csv``) beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stages.common.io import write_csv, write_json
from stages.common.cli import model_stage_arguments
from stages.tasks import LEVEL_NAMES, level_targets


@dataclass(frozen=True)
class Paths:
    tables: Path
    images: Path
    weights: Path
    metrics: Path
    predictions: Path  # test_predictions.csv; the curve files (roc, pr, calibration) go beside it

    @classmethod
    def for_model(cls, model: str, tables: Path | None = None, images: Path | None = None,
                  weights: Path | None = None, metrics: Path | None = None,
                  predictions: Path | None = None) -> "Paths":
        return cls(tables or Path("data/tables"), images or Path("data/images"),
                   weights or Path("models", model, "finetune.weights.h5"),
                   metrics or Path("metrics", "models", model, "evaluate.json"),
                   predictions or Path("metrics", "models", model, "test_predictions.csv"))


def run(params: dict, model_name: str, paths: Paths) -> dict:
    """Score ``model_name``'s fine-tuned weights on the test split; write metrics, predictions, curves."""
    from stages.evaluation.bootstrap import patient_bootstrap
    from stages.evaluation.classification import classification_report
    from stages.evaluation.curves import calibration_bins, expected_calibration_error, pr_points, roc_points
    from stages.training.data import evaluation_dataset
    from stages.training.fit import predict_proba
    from stages.training.setup import fine_tuned_for_test

    model, architecture, test = fine_tuned_for_test(params, model_name, paths.tables, paths.weights, "evaluate")
    targets = level_targets(test.airspace_level)
    probabilities = predict_proba(model, evaluation_dataset(
        paths.images, list(test.image_path), targets, int(params["finetune"]["batch_size"]),
        image_size=int(architecture["input_size"])))
    predicted = probabilities.argmax(axis=1)
    level2 = probabilities[:, 1]
    settings = params.get("evaluate") or {}
    calibration = calibration_bins(targets, level2, int(settings.get("calibration_bins", 10)))
    metrics = {
        "data_source": params["data"]["source"], "model": model_name,
        "split": "test", "patients": int(test.patient_id.nunique()),
        **classification_report(targets, predicted, LEVEL_NAMES, score=level2),
        "expected_calibration_error": expected_calibration_error(calibration),
        "confidence_intervals": patient_bootstrap(
            targets, predicted, level2, test.patient_id, LEVEL_NAMES,
            resamples=int(settings.get("bootstrap_resamples", 1000)), level=float(settings.get("ci_level", 0.95)),
            seed=int(params["train"]["seed"])),
    }
    write_json(paths.metrics, metrics)
    write_csv(paths.predictions, pd.DataFrame({
        # Every row says where its image came from, so a synthetic prediction cannot pass for a clinical one.
        "data_source": params["data"]["source"],
        "image_id": test.image_id,
        "patient_id": test.patient_id,
        "actual": [LEVEL_NAMES[t] for t in targets],
        "predicted": [LEVEL_NAMES[p] for p in predicted],
        "probability_level2": level2.round(6),
    }))
    folder = paths.predictions.parent
    write_csv(folder / "roc.csv", roc_points(targets, level2))
    write_csv(folder / "pr.csv", pr_points(targets, level2))
    write_csv(folder / "calibration.csv", calibration)
    return metrics


def main(argv: list[str] | None = None) -> None:
    model, params, paths = model_stage_arguments(__doc__, Paths, argv)
    metrics = run(params, model, paths)
    print(f"evaluate: {model} test accuracy {metrics['accuracy']} (majority-class rate "
          f"{metrics['majority_class_rate']}) on {metrics['n']} images")


if __name__ == "__main__":
    main()
