"""Stage ``pretrain``: train the backbone on the COVIDx-style cohort (COVID-19 positive/negative).

The paper fine-tunes from a COVID-Net backbone trained on over 16,000 CXR images (COVIDx 8B). The
backbone learns here with its own 2-way head (``covidx_*`` layers), on the ``train`` list; the
held-out ``test`` list gives the pretraining metrics. The cohort is ``pretrain_audited.csv``, which
``validate`` writes only when every check passes, without the images its leakage audit excluded
(severity test/validation images already in COVIDx). Only layers outside the head move on to
``finetune``, by name. ``--model`` picks one entry of ``models`` in params.yaml; dvc.yaml runs
this stage once per model (``pretrain@<model>``) with the same protocol.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from stages import schema
from stages.common.io import read_table, write_json
from stages.common.params import load_params
from stages.training.setup import get_strategy, make_deterministic

HEAD = "covidx"
CLASS_NAMES = ("negative", "positive")


def covidx_targets(labels) -> list[int]:
    return [CLASS_NAMES.index(label) for label in labels]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="covidnet_cxr_s", help="an entry of `models` in params.yaml")
    parser.add_argument("--cohort", type=Path, default=Path("data/tables", schema.PRETRAIN_AUDITED_TABLE),
                        help="the pretraining table after validate's leakage audit")
    parser.add_argument("--images", type=Path, default=Path("data/images"))
    parser.add_argument("--model-out", type=Path, help="default: models/<model>/pretrain.weights.h5")
    parser.add_argument("--metrics", type=Path, help="default: metrics/models/<model>/pretrain.json")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    args.model_out = args.model_out or Path("models", args.model, "pretrain.weights.h5")
    args.metrics = args.metrics or Path("metrics", "models", args.model, "pretrain.json")
    params = load_params(args.params)
    from stages.models import build_model, model_params, save_weights

    cfg, architecture = params["pretrain"], model_params(params, args.model)

    from stages.evaluation.classification import classification_report, roc_auc
    from stages.training.data import balanced_dataset, evaluation_dataset
    from stages.training.fit import compile_for_training, fit, predict_proba

    make_deterministic(int(params["train"]["seed"]))
    if not args.cohort.exists():
        raise SystemExit(f"pretrain: {args.cohort} is missing; it is written by the validate stage "
                         f"when every check passes (run dvc repro validate)")
    table = read_table(args.cohort)
    train, test = table[table.list == "train"], table[table.list == "test"]
    if train.empty or test.empty:
        raise SystemExit(f"pretrain: need both COVIDx lists; got {len(train)} train and {len(test)} test images")
    batch, size = int(cfg["batch_size"]), int(architecture["input_size"])
    # Balanced batches, as COVID-Net's COVIDx loader balances its ~6.4 negatives per positive.
    train_data = balanced_dataset(args.images, list(train.image_path), covidx_targets(train.label),
                                  batch, seed=int(params["train"]["seed"]), image_size=size)
    test_data = evaluation_dataset(args.images, list(test.image_path), covidx_targets(test.label), batch,
                                   image_size=size)

    steps = max(1, math.ceil(len(train) / batch))
    with get_strategy(params["train"]["strategy"]).scope():
        model = build_model(architecture, n_classes=len(CLASS_NAMES), head=HEAD)
        compile_for_training(model, float(cfg["learning_rate"]), steps * int(cfg["epochs"]),
                             float(cfg.get("warmup_fraction", 0.0)))
    print(f"pretrain: {model.name} {model.count_params():,} parameters, {len(train)} train images, "
          f"{steps} steps x {cfg['epochs']} epochs", file=sys.stderr)
    result = fit(model, train_data, steps, int(cfg["epochs"]), verbose=1 if sys.stderr.isatty() else 2)

    probabilities = predict_proba(model, test_data)
    targets = covidx_targets(test.label)
    # COVID-Net's own task on COVIDx's held-out list: AUC of the positive class beside the counts.
    report = {**classification_report(targets, probabilities.argmax(axis=1), CLASS_NAMES, range(len(CLASS_NAMES))),
              "roc_auc": roc_auc(targets, probabilities[:, CLASS_NAMES.index("positive")])}
    save_weights(model, args.model_out)
    write_json(args.metrics, {
        "data_source": params["data"]["source"],
        "model": args.model, "input_size": size, "parameters": int(model.count_params()),
        "train_images": int(len(train)), "epochs": int(cfg["epochs"]),
        "final_train": {k: v[-1] for k, v in result.history.items()},
        "test": report,
    })
    print(f"pretrain: {args.model} test accuracy {report['accuracy']} on {report['n']} images", file=sys.stderr)


if __name__ == "__main__":
    main()
