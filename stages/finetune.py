"""Stage ``finetune``: transfer the pretrained backbone and train the severity head.

The paper's protocol: the backbone's weights (by layer name) plus a new head (a dense layer and a
2-way severity layer, :data:`stages.tasks.SEVERITY`), Adam, batch balancing (every batch holds as
many Level 1 as Level 2 images) and augmentation (translation +-10%, rotation +-10 degrees,
horizontal flip, zoom +-15%, intensity +-10%). Model selection uses the validation split only;
the test split is left for ``evaluate``. Per-epoch curves go to DVCLive for ``dvc plots``.
dvc.yaml runs this stage once per entry of ``models`` (``finetune@<model>``), each from its own
pretrained backbone.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from stages.common.io import read_table, write_json
from stages.common.cli import model_stage_arguments
from stages.tasks import PRETRAIN, SEVERITY, level_targets


@dataclass(frozen=True)
class Paths:
    tables: Path
    images: Path
    pretrained: Path
    model_out: Path
    metrics: Path
    live: Path  # DVCLive folder of the per-epoch curves

    @classmethod
    def for_model(cls, model: str, tables: Path | None = None, images: Path | None = None,
                  pretrained: Path | None = None, model_out: Path | None = None, metrics: Path | None = None,
                  live: Path | None = None) -> "Paths":
        return cls(tables or Path("data/tables"), images or Path("data/images"),
                   pretrained or Path("models", model, "pretrain.weights.h5"),
                   model_out or Path("models", model, "finetune.weights.h5"),
                   metrics or Path("metrics", "models", model, "finetune.json"),
                   live or Path("metrics", "models", model, "finetune_curves"))


def finetune_seed(params: dict) -> int:
    """``finetune.seed``, or ``train.seed`` when it is null or absent (ours): a seed of its own lets
    a sweep retrain the fine-tuning alone on the same pretrained backbones, which tells the spread
    that fine-tuning adds from the spread of the whole training (``benchmarks/seeds.py --vary``)."""
    seed = (params.get("finetune") or {}).get("seed")
    return int(params["train"]["seed"] if seed is None else seed)


def run(params: dict, model_name: str, paths: Paths) -> dict:
    """Fine-tune ``model_name`` from its pretrained backbone; write weights, curves and metrics."""
    from dvclive import Live

    from stages.models import build_model, load_model, model_params, save_weights
    from stages.models.transfer import transfer_by_name
    from stages.training.augment import AugmentConfig
    from stages.training.data import balanced_dataset, evaluation_dataset
    from stages.training.fit import SELECTED_BY, compile_for_training, fit
    from stages.training.setup import get_strategy, make_deterministic

    cfg, architecture = params["finetune"], model_params(params, model_name)
    seed = finetune_seed(params)
    make_deterministic(seed)
    table = read_table(paths.tables / "split.csv")
    train, val = table[table.split == "train"], table[table.split == "val"]
    if train.airspace_level.nunique() < 2 or val.empty:
        raise SystemExit("finetune: the train split needs both levels and the val split must not be empty")
    batch, size = int(cfg["batch_size"]), int(architecture["input_size"])
    train_data = balanced_dataset(paths.images, list(train.image_path), level_targets(train.airspace_level),
                                  batch, seed=seed, augment=AugmentConfig.from_params(cfg["augment"]),
                                  image_size=size)
    val_targets = level_targets(val.airspace_level)
    val_data = evaluation_dataset(paths.images, list(val.image_path), val_targets, batch, image_size=size)

    with get_strategy(params["train"]["strategy"]).scope():
        backbone = load_model(architecture, len(PRETRAIN.class_names), PRETRAIN.head, paths.pretrained)
        model = build_model(architecture, n_classes=len(SEVERITY.class_names), head=SEVERITY.head)
        copied = transfer_by_name(backbone, model, head_prefixes=(f"{SEVERITY.head}_", f"{PRETRAIN.head}_"))
        del backbone
        steps = max(1, math.ceil(len(train) / batch))
        compile_for_training(model, float(cfg["learning_rate"]), steps * int(cfg["epochs"]),
                             float(cfg.get("warmup_fraction", 0.0)))
    print(f"finetune: {model_name}: {len(copied)} backbone layers transferred by name; {len(train)} train / "
          f"{len(val)} val images, {steps} balanced steps x {cfg['epochs']} epochs", file=sys.stderr)
    live = Live(str(paths.live), save_dvc_exp=False, dvcyaml=False, report=None)
    result = fit(model, train_data, steps, int(cfg["epochs"]), validation=(val_data, val_targets), live=live,
                 verbose=1 if sys.stderr.isatty() else 2)
    live.end()
    save_weights(model, paths.model_out)
    metrics = {
        "data_source": params["data"]["source"],
        "model": model_name, "input_size": size, "parameters": int(model.count_params()),
        "transferred_layers": len(copied), "train_images": int(len(train)), "val_images": int(len(val)),
        "epochs": int(cfg["epochs"]), "selected_epoch": result.best_epoch,
        "selected_by": SELECTED_BY,
        "selected": {k: round(v, 6) for k, v in sorted(result.best.items())},
    }
    write_json(paths.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    model, params, paths = model_stage_arguments(__doc__, Paths, argv)
    metrics = run(params, model, paths)
    print(f"finetune: {model} selected epoch {metrics['selected_epoch']}: {metrics['selected']}", file=sys.stderr)


if __name__ == "__main__":
    main()
