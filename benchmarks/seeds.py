"""Benchmark: how far every reported metric moves with the training seed, as a DVC experiment sweep.

    python benchmarks/seeds.py [--seeds 2023 2024 2025 2026] [--jobs 2]   # writes metrics/bench_seeds.json
    python benchmarks/seeds.py --vary finetune.seed --out metrics/bench_seeds_finetune.json
    python benchmarks/seeds.py --vary finetune.seed --set finetune.epochs=10 --seeds 2022 2023 2024 2025 2026 \
        --out /tmp/finetune_10_epochs.json

The committed run (``train.seed`` in params.yaml) is one sample; every other seed is queued as a
DVC experiment (``dvc exp run --queue -S train.seed=N``) and the queue runs ``--jobs`` at a time
(``dvc queue start -j``): each experiment restores the data stages from DVC's run cache and
retrains every model of the zoo, so nothing but the seed differs. The experiments' metrics are
read back with ``dvc exp show --json`` and summarised per model and metric (mean, sample SD, min,
max, and the values by seed); the experiments are then removed (``--keep`` keeps them).

``--vary finetune.seed`` changes fine-tuning's own seed instead (``finetune.seed``; the stage
falls back to ``train.seed`` when it is null): the pretraining stages keep their parameters, so
DVC restores the committed backbones from its run cache and only fine-tuning and what follows are
retrained. Beside the whole-training sweep, this tells how much of the spread fine-tuning alone
adds. ``--set KEY=VALUE`` (repeatable) changes a setting in every experiment, e.g. fewer epochs;
the committed run is then not a sample of the sweep, so every listed seed, the committed one
included, is run as an experiment.

The spread is a fact about this training protocol on this data, not about a machine: the
clean-reproduction check's tolerance mode (``stages/checks/reproduce.py``) allows
``TOLERANCE_SDS`` of these SDs where exact reproduction cannot hold. Run it after ``dvc repro``
(the workspace must hold the committed state), on a machine with time to spare: each seed costs a
full training of the zoo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.checks.reproduce import MODEL_METRICS, TOLERANCE_SDS, _flatten, tool_env  # noqa: E402
from stages.common.io import write_json  # noqa: E402
from stages.common.params import load_params  # noqa: E402
from stages.finetune import finetune_seed  # noqa: E402

VARIED = {"train.seed": "seed-", "finetune.seed": "finetune-seed-"}  # swept parameter -> experiment name prefix
DEFAULT_OUT = Path("metrics/bench_seeds.json")  # the committed protocol's spread: the reproduction check's tolerances
NO_WORKER_S = 120  # experiments still queued with no worker for this long: the workers died or never started
# Per-image and per-epoch details move with training too, but are not reported metrics.
SKIPPED = ("confidence_intervals", "confusion_matrix.rows", "confusion_matrix.columns", "final_train",
           "selected.", "selected_epoch", "transferred_layers", "parameters", "input_size")


def dvc(*args: str) -> str:
    # tool_env: this interpreter's folder first on PATH, where `dvc queue start` finds the `dvc` it
    # spawns its workers with (without it, in an unactivated venv, no worker ever started).
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=tool_env())
    return _checked(result, args)


def _checked(result: subprocess.CompletedProcess, args: tuple[str, ...]) -> str:
    if result.returncode != 0:
        raise SystemExit(f"seeds: dvc {' '.join(args)} failed:\n{(result.stdout or '')[-2000:]}\n{(result.stderr or '')[-2000:]}")
    return result.stdout


def reported_values(metrics: dict[str, dict], models: list[str]) -> dict[str, dict[str, float]]:
    """``{model: {"evaluate.json [accuracy]": 0.9, ...}}`` from ``{path: metrics}`` of one run."""
    values: dict[str, dict[str, float]] = {}
    for model in models:
        for name in MODEL_METRICS:
            data = metrics.get(f"metrics/models/{model}/{name}")
            for key, value in sorted(_flatten(data or {}).items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and not any(key.startswith(s) for s in SKIPPED):
                    values.setdefault(model, {})[f"{name} [{key}]"] = float(value)
    return values


def workspace_metrics(models: list[str]) -> dict[str, dict]:
    return {f"metrics/models/{m}/{n}": json.loads(Path("metrics", "models", m, n).read_text())
            for m in models for n in MODEL_METRICS if Path("metrics", "models", m, n).is_file()}


def run_sweep(experiments: dict[str, list[str]], jobs: int, poll_s: float = 20) -> dict[str, dict[str, dict]]:
    """Queue one experiment per name with its ``-S`` overrides, run the queue, return each one's metrics.

    ``{"seed-2023": ["train.seed=2023"], ...}`` -> ``{"seed-2023": {metrics path: metrics}, ...}``;
    several overrides per experiment sweep several parameters at once. Runs in the current folder's
    DVC project; ``tests/test_sweep.py`` runs it on a tiny one.
    """
    for name, overrides in experiments.items():
        dvc("exp", "run", "--queue", "-n", name, *[arg for override in overrides for arg in ("-S", override)])
    # The queue's workers outlive `dvc queue start`; with no pipe to inherit, it returns at once.
    _checked(subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], env=tool_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), ("queue", "start"))
    started = last_worker = time.perf_counter()
    while True:
        time.sleep(poll_s)
        status = dvc("queue", "status")
        active = [line for line in status.splitlines() if any(f" {s} " in f" {line} " for s in ("Queued", "Running"))]
        elapsed = time.perf_counter() - started
        print(f"sweep: {len(active)} experiment(s) queued or running after {elapsed:.0f} s", file=sys.stderr)
        if not active:
            break
        if "Worker status: 0 active, 0 idle" not in status:
            last_worker = time.perf_counter()
        elif time.perf_counter() - last_worker > NO_WORKER_S:
            raise SystemExit(f"sweep: no queue worker for {NO_WORKER_S} s with experiments still queued "
                             f"(see .dvc/tmp/exps/celery/*.out):\n{status}")
    failed = [line for line in dvc("queue", "status").splitlines()
              if "Failed" in line and set(line.split()) & set(experiments)]
    if failed:
        raise SystemExit("sweep: experiments failed (dvc queue logs NAME):\n" + "\n".join(failed))
    runs: dict[str, dict[str, dict]] = {}
    for baseline in json.loads(dvc("exp", "show", "--json")):
        for experiment in baseline.get("experiments") or []:
            revision = experiment["revs"][0]
            if revision.get("name") in experiments:
                runs[revision["name"]] = {path: entry["data"] for path, entry in revision["data"]["metrics"].items()}
    return runs


def summarise(by_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    models: dict[str, dict[str, dict]] = {}
    seeds = sorted(by_seed)
    for model in sorted({m for run in by_seed.values() for m in run}):
        for label in sorted({k for run in by_seed.values() for k in run.get(model, {})}):
            values = [by_seed[s][model][label] for s in seeds if label in by_seed[s].get(model, {})]
            if len(values) < 2:
                continue
            name, key = label.split(" [", 1)
            models.setdefault(model, {}).setdefault(name, {})[key.rstrip("]")] = {
                "mean": round(statistics.fmean(values), 6), "sd": round(statistics.stdev(values), 6),
                "min": round(min(values), 6), "max": round(max(values), 6),
                "values": {str(s): by_seed[s][model][label] for s in seeds if label in by_seed[s].get(model, {})},
            }
    return models


def experiments(vary: str, seeds: list[int], settings: list[str]) -> dict[str, list[str]]:
    """``{experiment name: its -S overrides}``: one experiment per seed, each with every setting."""
    if vary not in VARIED:
        raise SystemExit(f"seeds: --vary must be one of {sorted(VARIED)}, got {vary!r}")
    for setting in settings:
        key = setting.split("=", 1)[0]
        if "=" not in setting or not key or key in VARIED:
            raise SystemExit(f"seeds: --set takes KEY=VALUE for a parameter other than the seeds, got {setting!r}")
    return {f"{VARIED[vary]}{seed}": [f"{vary}={seed}", *settings] for seed in seeds}


def committed_sample(vary: str, settings: list[str], params: dict) -> int | None:
    """The seed whose run the workspace already holds, or None when the sweep changes a setting."""
    if settings:
        return None
    return finetune_seed(params) if vary == "finetune.seed" else int(params["train"]["seed"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2023, 2024, 2025, 2026],
                        help="seeds besides the committed one (at least 4, for 5 samples); with --set, every seed")
    parser.add_argument("--vary", default="train.seed", choices=sorted(VARIED),
                        help="the seed swept: train.seed (the whole training, default) or finetune.seed "
                             "(fine-tuning alone, from the committed backbones)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every experiment (dvc exp run -S), repeatable")
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (dvc queue start -j)")
    parser.add_argument("--keep", action="store_true", help="keep the experiments (dvc exp show lists them)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if (args.vary != "train.seed" or args.settings) and args.out == DEFAULT_OUT:
        raise SystemExit(f"seeds: {DEFAULT_OUT} holds the committed protocol's spread over train.seed (the "
                         "reproduction check's tolerances); give this sweep another --out")
    params = load_params()
    models = sorted(params["models"])
    committed_seed = committed_sample(args.vary, args.settings, params)
    if committed_seed in args.seeds:
        raise SystemExit(f"seeds: {committed_seed} is the committed run's seed; list only other seeds")
    if "Data and pipelines are up to date" not in dvc("status"):
        raise SystemExit("seeds: run `dvc repro` first: the committed run is the sweep's first sample, and "
                         "its stages are what the experiments restore from the run cache")
    queued = experiments(args.vary, args.seeds, args.settings)
    prefix = VARIED[args.vary]
    runs = {int(name[len(prefix):]): metrics for name, metrics in run_sweep(queued, args.jobs).items()}
    missing = sorted(set(args.seeds) - set(runs))
    if missing:
        raise SystemExit(f"seeds: no metrics for seed(s) {missing}")
    by_seed = {} if committed_seed is None else {committed_seed: reported_values(workspace_metrics(models), models)}
    by_seed.update({seed: reported_values(metrics, models) for seed, metrics in runs.items()})
    whole = args.vary == "train.seed"
    write_json(args.out, {
        "what": f"spread of every reported model metric over {'training' if whole else 'fine-tuning'} seeds "
                f"({args.vary}), embedded default" + ("" if whole else " with the committed pretrained backbones")
                + (f", with {', '.join(args.settings)}" if args.settings else "")
                + "; the data, split and code are fixed",
        "data_source": params["data"]["source"],
        "varied": args.vary, "settings": args.settings,
        "seeds": sorted(by_seed), "committed_seed": committed_seed,
        "tolerance_sds": TOLERANCE_SDS,
        "models": summarise(by_seed),
    })
    if not args.keep:
        dvc("exp", "remove", *queued)
    print(f"seeds: {len(by_seed)} seeds -> {args.out}")


if __name__ == "__main__":
    main()
