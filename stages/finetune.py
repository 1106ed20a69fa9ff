"""Stage ``finetune``: transfer the pretrained backbone and train the severity head.

The paper's protocol: the backbone's weights (by layer name) plus a new head (a dense layer and a
2-way severity layer), Adam, batch balancing (every batch holds as many Level 1 as Level 2
images) and augmentation (translation +-10%, rotation +-10 degrees, horizontal flip, zoom +-15%,
intensity +-10%). Model selection uses the validation split only; the test split is left for
``evaluate``. Per-epoch curves go to DVCLive for ``dvc plots``. dvc.yaml runs this stage once per
entry of ``models`` (``finetune@<model>``), each from its own pretrained backbone.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from stages.common.io import read_table, write_json
from stages.common.params import load_params
from stages.training.setup import get_strategy, make_deterministic

HEAD = "severity"
CLASS_NAMES = ("level1", "level2")


def level_targets(levels) -> list[int]:
    """Airspace level 1/2 -> class index 0/1."""
    return [int(level) - 1 for level in levels]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="covidnet_cxr_s", help="an entry of `models` in params.yaml")
    parser.add_argument("--tables", type=Path, default=Path("data/tables"))
    parser.add_argument("--images", type=Path, default=Path("data/images"))
    parser.add_argument("--pretrained", type=Path, help="default: models/<model>/pretrain.weights.h5")
    parser.add_argument("--model-out", type=Path, help="default: models/<model>/finetune.weights.h5")
    parser.add_argument("--metrics", type=Path, help="default: metrics/models/<model>/finetune.json")
    parser.add_argument("--live", type=Path, help="DVCLive folder; default: metrics/models/<model>/finetune_curves")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    args.pretrained = args.pretrained or Path("models", args.model, "pretrain.weights.h5")
    args.model_out = args.model_out or Path("models", args.model, "finetune.weights.h5")
    args.metrics = args.metrics or Path("metrics", "models", args.model, "finetune.json")
    args.live = args.live or Path("metrics", "models", args.model, "finetune_curves")
    params = load_params(args.params)
    from stages.models import build_model, load_model, model_params, save_weights

    cfg, architecture = params["finetune"], model_params(params, args.model)

    from dvclive import Live

    from stages import pretrain
    from stages.models.transfer import transfer_by_name
    from stages.training.augment import AugmentConfig
    from stages.training.data import balanced_dataset, evaluation_dataset
    from stages.training.fit import SELECTED_BY, compile_for_training, fit

    seed = int(params["train"]["seed"])
    make_deterministic(seed)
    table = read_table(args.tables / "split.csv")
    train, val = table[table.split == "train"], table[table.split == "val"]
    if train.airspace_level.nunique() < 2 or val.empty:
        raise SystemExit("finetune: the train split needs both levels and the val split must not be empty")
    batch, size = int(cfg["batch_size"]), int(architecture["input_size"])
    train_data = balanced_dataset(args.images, list(train.image_path), level_targets(train.airspace_level),
                                  batch, seed=seed, augment=AugmentConfig.from_params(cfg["augment"]),
                                  image_size=size)
    val_targets = level_targets(val.airspace_level)
    val_data = evaluation_dataset(args.images, list(val.image_path), val_targets, batch, image_size=size)

    with get_strategy(params["train"]["strategy"]).scope():
        backbone = load_model(architecture, len(pretrain.CLASS_NAMES), pretrain.HEAD, args.pretrained)
        model = build_model(architecture, n_classes=len(CLASS_NAMES), head=HEAD)
        copied = transfer_by_name(backbone, model, head_prefixes=(f"{HEAD}_", f"{pretrain.HEAD}_"))
        del backbone
        steps = max(1, math.ceil(len(train) / batch))
        compile_for_training(model, float(cfg["learning_rate"]), steps * int(cfg["epochs"]),
                             float(cfg.get("warmup_fraction", 0.0)))
    print(f"finetune: {args.model}: {len(copied)} backbone layers transferred by name; {len(train)} train / "
          f"{len(val)} val images, {steps} balanced steps x {cfg['epochs']} epochs", file=sys.stderr)
    live = Live(str(args.live), save_dvc_exp=False, dvcyaml=False, report=None)
    result = fit(model, train_data, steps, int(cfg["epochs"]), validation=(val_data, val_targets), live=live,
                 verbose=1 if sys.stderr.isatty() else 2)
    live.end()
    save_weights(model, args.model_out)
    write_json(args.metrics, {
        "data_source": params["data"]["source"],
        "model": args.model, "input_size": size, "parameters": int(model.count_params()),
        "transferred_layers": len(copied), "train_images": int(len(train)), "val_images": int(len(val)),
        "epochs": int(cfg["epochs"]), "selected_epoch": result.best_epoch,
        "selected_by": SELECTED_BY,
        "selected": {k: round(v, 6) for k, v in sorted(result.best.items())},
    })
    print(f"finetune: {args.model} selected epoch {result.best_epoch}: {result.best}", file=sys.stderr)


if __name__ == "__main__":
    main()
