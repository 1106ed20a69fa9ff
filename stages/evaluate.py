"""Stage ``evaluate``: the only stage that reads the test split.

Run once per model (``evaluate@<model>``). Writes to ``metrics/models/<model>/evaluate.json``:
accuracy, the majority-class rate, per-level sensitivity, PPV and F1, ROC AUC (Level 2 as the
positive class), the expected calibration error, the confusion matrix (rows: true level, columns:
predicted level), and 95% confidence intervals from a bootstrap over patients
(:mod:`stages.evaluation.bootstrap`). For ``dvc plots`` it writes one row per test image
(``test_predictions.csv``: confusion matrix) and the ROC, precision-recall and calibration curves
(``roc.csv``, ``pr.csv``, ``calibration.csv``) beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from stages.common.io import read_table, write_csv, write_json
from stages.common.params import load_params
from stages.training.setup import make_deterministic

LEVEL_NAMES = ("Level 1", "Level 2")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=Path, default=Path("data/tables"))
    parser.add_argument("--images", type=Path, default=Path("data/images"))
    parser.add_argument("--model", default="covidnet_cxr_s", help="an entry of `models` in params.yaml")
    parser.add_argument("--weights", type=Path, help="default: models/<model>/finetune.weights.h5")
    parser.add_argument("--metrics", type=Path, help="default: metrics/models/<model>/evaluate.json")
    parser.add_argument("--predictions", type=Path, help="default: metrics/models/<model>/test_predictions.csv; "
                        "the curve files go to the same folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    args.weights = args.weights or Path("models", args.model, "finetune.weights.h5")
    args.metrics = args.metrics or Path("metrics", "models", args.model, "evaluate.json")
    args.predictions = args.predictions or Path("metrics", "models", args.model, "test_predictions.csv")
    params = load_params(args.params)

    from stages import finetune
    from stages.evaluation.bootstrap import patient_bootstrap
    from stages.evaluation.classification import classification_report, roc_auc
    from stages.evaluation.curves import calibration_bins, pr_points, roc_points
    from stages.models import load_model, model_params
    from stages.training.data import evaluation_dataset
    from stages.training.fit import predict_proba

    make_deterministic(int(params["train"]["seed"]))
    table = read_table(args.tables / "split.csv")
    test = table[table.split == "test"].reset_index(drop=True)
    if test.empty:
        raise SystemExit("evaluate: the test split is empty")
    architecture = model_params(params, args.model)
    model = load_model(architecture, len(finetune.CLASS_NAMES), finetune.HEAD, args.weights)
    targets = finetune.level_targets(test.airspace_level)
    probabilities = predict_proba(model, evaluation_dataset(
        args.images, list(test.image_path), targets, int(params["finetune"]["batch_size"]),
        image_size=int(architecture["input_size"])))
    predicted = probabilities.argmax(axis=1)
    level2 = probabilities[:, 1]
    settings = params.get("evaluate") or {}
    report = classification_report(targets, predicted, LEVEL_NAMES, range(len(LEVEL_NAMES)))
    calibration = calibration_bins(targets, level2, int(settings.get("calibration_bins", 10)))
    intervals = patient_bootstrap(targets, predicted, level2, test.patient_id, LEVEL_NAMES,
                                  resamples=int(settings.get("bootstrap_resamples", 1000)),
                                  level=float(settings.get("ci_level", 0.95)),
                                  seed=int(params["train"]["seed"]))
    write_json(args.metrics, {
        "data_source": params["data"]["source"], "model": args.model,
        "split": "test", "patients": int(test.patient_id.nunique()), **report,
        "roc_auc": roc_auc(targets, level2),
        "expected_calibration_error": round(float(
            (calibration.n * (calibration.fraction_positive - calibration.mean_predicted).abs()).sum()
            / calibration.n.sum()), 6),
        "confidence_intervals": intervals})
    predictions = pd.DataFrame({
        "image_id": test.image_id,
        "patient_id": test.patient_id,
        "actual": [LEVEL_NAMES[t] for t in targets],
        "predicted": [LEVEL_NAMES[p] for p in predicted],
        "probability_level2": level2.round(6),
    })
    write_csv(args.predictions, predictions)
    folder = args.predictions.parent
    write_csv(folder / "roc.csv", roc_points(targets, level2))
    write_csv(folder / "pr.csv", pr_points(targets, level2))
    write_csv(folder / "calibration.csv", calibration)
    print(f"evaluate: {args.model} test accuracy {report['accuracy']} (majority-class rate "
          f"{report['majority_class_rate']}) on {report['n']} images")


if __name__ == "__main__":
    main()
