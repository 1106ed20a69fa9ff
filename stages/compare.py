"""Stage ``compare``: paired differences between the reference model and every other model.

Each model's test predictions (``metrics/models/<model>/test_predictions.csv``, written by
``evaluate@<model>``) are on the same test images; a paired patient bootstrap
(:func:`stages.evaluation.bootstrap.paired_patient_bootstrap`) gives, for every metric of the table,
the reference minus the other model with a 95% interval. A ranking needs this interval: two
overlapping unpaired intervals neither show nor rule out a difference. The report ranks two models
only where the paired interval of accuracy excludes zero. (Ours; the paper compares point
estimates.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.common.cli import stage_arguments
from stages.common.io import write_json
from stages.tasks import LEVEL_NAMES

PREDICTIONS = "test_predictions.csv"


def load_predictions(metrics: Path, model: str) -> pd.DataFrame:
    path = metrics / "models" / model / PREDICTIONS
    if not path.is_file():
        raise SystemExit(f"compare: {path} not found (did evaluate@{model} run?)")
    return pd.read_csv(path)


def summarise(params: dict, metrics: Path) -> dict:
    """The paired differences of the models' committed predictions under ``metrics`` (nothing written)."""
    from stages.evaluation.bootstrap import paired_patient_bootstrap

    settings = params.get("compare") or {}
    reference = settings.get("reference", "covidnet_cxr_s")
    models = sorted(params["models"])
    if reference not in models:
        raise SystemExit(f"compare: reference {reference!r} is not in params.yaml models ({models})")
    tables = {m: load_predictions(metrics, m) for m in models}
    base = tables[reference]
    for model, table in tables.items():
        if list(table.image_id) != list(base.image_id) or list(table.actual) != list(base.actual):
            raise SystemExit(f"compare: {metrics / 'models' / model / PREDICTIONS} is not on the same test images, "
                             f"in the same order, as {reference}'s")
    index = {name: i for i, name in enumerate(LEVEL_NAMES)}

    def scored(table: pd.DataFrame) -> tuple[list[int], list[float]]:
        return list(table.predicted.map(index)), list(table.probability_level2)

    evaluate = params.get("evaluate") or {}
    result = paired_patient_bootstrap(
        list(base.actual.map(index)), scored(base), {m: scored(t) for m, t in tables.items() if m != reference},
        base.patient_id, LEVEL_NAMES, resamples=int(evaluate.get("bootstrap_resamples", 1000)),
        level=float(evaluate.get("ci_level", 0.95)), seed=int(params["train"]["seed"]))
    return {"data_source": params["data"]["source"], "reference": reference,
            "difference_means": f"{reference} minus the other model", **result}


def run(params: dict, metrics: Path, out: Path) -> dict:
    summary = summarise(params, metrics)
    write_json(out, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    args, params = stage_arguments(__doc__, argv, metrics=Path("metrics"), out=Path("metrics/comparisons.json"))
    summary = run(params, args.metrics, args.out)
    for model, values in summary["differences"].items():
        accuracy = values["accuracy"]
        print(f"compare: accuracy {summary['reference']} - {model}: {accuracy['difference']:+.3f} "
              f"({accuracy['low']:+.3f} to {accuracy['high']:+.3f})")


if __name__ == "__main__":
    main()
