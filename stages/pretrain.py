"""Stage ``pretrain``: train the backbone on the COVIDx-style cohort (COVID-19 positive/negative).

The paper fine-tunes from a COVID-Net backbone trained on over 16,000 CXR images (COVIDx 8B). The
backbone learns here with its own 2-way head (``covidx_*`` layers, :data:`stages.tasks.PRETRAIN`),
on the ``train`` list; the held-out ``test`` list gives the pretraining metrics. The cohort is
``pretrain_audited.csv``, which ``validate`` writes only when every check passes, without the
images its leakage audit excluded (severity test/validation images already in COVIDx). Only
layers outside the head move on to ``finetune``, by name. ``--model`` picks one entry of
``models`` in params.yaml; dvc.yaml runs this stage once per model (``pretrain@<model>``) with
the same protocol.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from stages import schema
from stages.common.io import read_table, write_json
from stages.common.cli import model_stage_arguments
from stages.tasks import PRETRAIN


@dataclass(frozen=True)
class Paths:
    cohort: Path
    images: Path
    model_out: Path
    metrics: Path

    @classmethod
    def for_model(cls, model: str, cohort: Path | None = None, images: Path | None = None,
                  model_out: Path | None = None, metrics: Path | None = None) -> "Paths":
        return cls(cohort or Path("data/tables", schema.PRETRAIN_AUDITED_TABLE), images or Path("data/images"),
                   model_out or Path("models", model, "pretrain.weights.h5"),
                   metrics or Path("metrics", "models", model, "pretrain.json"))


def run(params: dict, model_name: str, paths: Paths) -> dict:
    """Train ``model_name`` on the audited cohort; write its weights and metrics; return the metrics."""
    from stages.evaluation.classification import classification_report
    from stages.models import build_model, model_params, save_weights
    from stages.training.data import balanced_dataset, evaluation_dataset
    from stages.training.fit import compile_for_training, fit, predict_proba
    from stages.training.setup import get_strategy, make_deterministic

    cfg, architecture = params["pretrain"], model_params(params, model_name)
    seed = int(params["train"]["seed"])
    make_deterministic(seed)
    if not paths.cohort.exists():
        raise SystemExit(f"pretrain: {paths.cohort} is missing; it is written by the validate stage "
                         f"when every check passes (run dvc repro validate)")
    table = read_table(paths.cohort)
    train, test = table[table.list == "train"], table[table.list == "test"]
    if train.empty or test.empty:
        raise SystemExit(f"pretrain: need both COVIDx lists; got {len(train)} train and {len(test)} test images")
    batch, size = int(cfg["batch_size"]), int(architecture["input_size"])
    # Balanced batches, as COVID-Net's COVIDx loader balances its ~6.4 negatives per positive.
    train_data = balanced_dataset(paths.images, list(train.image_path), PRETRAIN.targets(train.label),
                                  batch, seed=seed, image_size=size)
    targets = PRETRAIN.targets(test.label)
    test_data = evaluation_dataset(paths.images, list(test.image_path), targets, batch, image_size=size)

    steps = max(1, math.ceil(len(train) / batch))
    with get_strategy(params["train"]["strategy"]).scope():
        model = build_model(architecture, n_classes=len(PRETRAIN.class_names), head=PRETRAIN.head)
        compile_for_training(model, float(cfg["learning_rate"]), steps * int(cfg["epochs"]),
                             float(cfg.get("warmup_fraction", 0.0)))
    print(f"pretrain: {model.name} {model.count_params():,} parameters, {len(train)} train images, "
          f"{steps} steps x {cfg['epochs']} epochs", file=sys.stderr)
    result = fit(model, train_data, steps, int(cfg["epochs"]), verbose=1 if sys.stderr.isatty() else 2)

    probabilities = predict_proba(model, test_data)
    classes = PRETRAIN.class_names
    # COVID-Net's own task on COVIDx's held-out list: AUC of the positive class beside the counts.
    report = classification_report(targets, probabilities.argmax(axis=1), classes,
                                   score=probabilities[:, classes.index("positive")])
    save_weights(model, paths.model_out)
    metrics = {
        "data_source": params["data"]["source"],
        "model": model_name, "input_size": size, "parameters": int(model.count_params()),
        "train_images": int(len(train)), "epochs": int(cfg["epochs"]),
        "final_train": {k: v[-1] for k, v in result.history.items()},
        "test": report,
    }
    write_json(paths.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    model, params, paths = model_stage_arguments(__doc__, Paths, argv)
    metrics = run(params, model, paths)
    print(f"pretrain: {model} test accuracy {metrics['test']['accuracy']} on {metrics['test']['n']} images",
          file=sys.stderr)


if __name__ == "__main__":
    main()
