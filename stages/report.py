"""Stage ``report``: ``reports/results.md`` with this run's tables beside the paper's, and figures.

Every number comes from ``metrics/`` (this run) or ``stages/reference/paper.yaml`` (the paper, as
printed); nothing is typed by hand. The data source is stated in the heading of every table, so
numbers from the synthetic phantoms can never pass for clinical ones.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stages import schema  # noqa: E402
from stages.common.io import atomic_write, write_text  # noqa: E402
from stages.common.params import load_params  # noqa: E402
from stages.reference import paper  # noqa: E402

# Table order of the paper: the two baselines, then COVID-Net CXR-S.
MODEL_ORDER = ("densenet121", "resnet50", "covidnet_cxr_s")
MODEL_LABELS = {"densenet121": "CheXNet (DenseNet-121)", "resnet50": "ResNet-50",
                "covidnet_cxr_s": "COVID-Net CXR-S"}
LEVELS = ("Level 1", "Level 2")

SOURCE_TITLES = schema.SOURCE_TITLES


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _printed_pct(value) -> str:
    """A percentage as the paper printed it (already in percent)."""
    return f"{value}%"


def _signed_pct(fraction: float) -> str:
    return f"{100 * fraction:+.1f}%"


def ordered_models(names) -> list[str]:
    """The zoo's models (``models`` in params.yaml) in the paper's table order, then any others."""
    names = sorted(names)
    if not names:
        raise SystemExit("report: params.yaml lists no models")
    return [m for m in MODEL_ORDER if m in names] + [m for m in names if m not in MODEL_ORDER]


def _load(metrics: Path, name: str) -> dict:
    path = metrics / name
    if not path.exists():
        raise SystemExit(f"report: {path} not found (did the stage that writes it run?)")
    return json.loads(path.read_text())


def _read_tsv(path: Path, column: str) -> list[float]:
    if not path.exists():
        return []
    with path.open() as handle:
        return [float(row[column]) for row in csv.DictReader(handle, delimiter="\t")]


def _save_figure(figure, path: Path) -> None:
    # No "Software"/date metadata: the same numbers give byte-identical PNGs.
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    plt.close(figure)


def confusion_figure(evaluations: dict[str, dict], title: str, path: Path) -> None:
    """One confusion-matrix panel per model (rows: true level, columns: predicted)."""
    figure, axes = plt.subplots(1, len(evaluations), figsize=(3.8 * len(evaluations), 3.6), squeeze=False)
    for axis, (model, evaluation) in zip(axes[0], evaluations.items()):
        matrix = evaluation["confusion_matrix"]["matrix"]
        names = list(matrix)
        values = [[matrix[t][p] for p in names] for t in names]
        axis.imshow(values, cmap="Blues")
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                axis.text(j, i, str(value), ha="center", va="center",
                          color="white" if value > max(map(max, values)) / 2 else "black")
        axis.set_xticks(range(len(names)), names)
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("predicted level")
        axis.set_ylabel("true level")
        axis.set_title(MODEL_LABELS.get(model, model), fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)


def curves_figure(metrics: Path, models: list[str], title: str, path: Path) -> None:
    """Fine-tuning curves of every model: train loss and validation accuracy per epoch."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for model in models:
        plots = metrics / "models" / model / "finetune_curves" / "plots" / "metrics"
        label = MODEL_LABELS.get(model, model)
        for axis, name in zip(axes, ("loss", "val_accuracy")):
            values = _read_tsv(plots / f"{name}.tsv", name)
            axis.plot(range(1, len(values) + 1), values, label=label)
    for axis, name in zip(axes, ("training loss", "validation accuracy")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)


def cohort_lines(cohort: dict, test_images: int, data: str) -> list[str]:
    reference = paper()["cohort"]
    return [
        f"## Cohort - {data}", "",
        "| | this run | paper (RICORD 1c) |", "| --- | --- | --- |",
        f"| images | {cohort['images']} | {reference['images']} |",
        f"| patients | {cohort['patients']} | {reference['patients']} |",
        f"| Level 1 images / patients | {cohort['level1']['images']} / {cohort['level1']['patients']} | "
        f"{reference['level1']['images']} / {reference['level1']['patients']} |",
        f"| Level 2 images / patients | {cohort['level2']['images']} / {cohort['level2']['patients']} | "
        f"{reference['level2']['images']} / {reference['level2']['patients']} |",
        f"| test images | {test_images} | {reference['test_images']} |",
        "",
    ] + agreement_lines(cohort.get("reader_agreement"))


def agreement_lines(agreement: dict | None) -> list[str]:
    """One sentence on how far the readers agree (from ``group``), when it was measured."""
    if not agreement or "fleiss_kappa_level" not in agreement:
        return []
    return [
        f"Reader agreement over the {agreement['studies_with_two_or_more_readers']} studies graded by two "
        f"or more readers: Fleiss' kappa {agreement['fleiss_kappa_level']:.3f} on the level "
        f"(Level 1 / Level 2 / invalid) and {agreement['fleiss_kappa_grade']:.3f} on the grade; "
        f"Cohen's kappa {agreement['cohen_kappa_level_first_two_readers']:.3f} between each study's "
        f"first two readers (raw agreement {agreement['level_agreement_first_two_readers']:.1%}).",
        "",
    ]


def leakage_lines(leakage: dict | None) -> list[str]:
    """One sentence on validate's leakage audit (``metrics/leakage.json``), when it ran."""
    if not leakage:
        return []
    splits = "/".join(leakage["splits_audited"])
    return [
        f"Leakage audit (`validate.leakage: {leakage['mode']}`): {leakage['matched_severity_images']} of "
        f"{leakage['severity_images_audited']} severity {splits} images were found in the pretraining "
        f"cohort by patient id, file name, exact pixels or perceptual hash; "
        f"{leakage['excluded_pretrain_images']} pretraining images were excluded "
        f"(details in `reports/validation.md`).",
        "",
    ]


def table2_lines(complexity: dict) -> list[str]:
    size = "x".join(str(v) for v in complexity["input_shape"])
    lines = [
        f"## Table 2: complexity at {size} - model architecture only (no data involved)", "",
        f"FLOPs: {complexity['flops_counted_by']} (TensorFlow {complexity['tensorflow']}). Parameters "
        "are compared on the basis the paper's figure matches (last column); the difference is "
        "(this run - paper) / paper.", "",
        "| network | parameters (M), this run | paper | difference | GFLOPs, this run | paper | difference "
        "| parameters compared |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in [m for m in MODEL_ORDER if m in complexity["models"]]:
        row = complexity["models"][model]
        reference = row["paper"]
        counted = row["parameters"][reference["parameters_compared"]]
        lines.append(
            f"| {reference['label']} | {counted / 1e6:.2f} | {reference['parameters_m']} | "
            f"{_signed_pct(reference['parameters_difference'])} | {row['gflops']:.2f} | {reference['gflops']} | "
            f"{_signed_pct(reference['gflops_difference'])} | {reference['parameters_compared_means']} |")
    lines += ["", "All parameter counts of this run (backbone / head / total as trained here):", ""]
    for model in [m for m in MODEL_ORDER if m in complexity["models"]]:
        counts = complexity["models"][model]["parameters"]
        extra = (f"; with the 1000-class ImageNet top {counts['with_imagenet_top']:,}"
                 if "with_imagenet_top" in counts else "")
        lines.append(f"- {MODEL_LABELS[model]}: {counts['backbone']:,} / {counts['head']:,} / "
                     f"{counts['total']:,}{extra}.")
    return lines + [""]


def table3_lines(evaluations: dict[str, dict], data: str, input_sizes: dict[str, int]) -> list[str]:
    table3 = paper()["table3"]
    lines = [
        f"## Table 3: test performance - {data}", "",
        "| network | | sensitivity Level 1 | sensitivity Level 2 | PPV Level 1 | PPV Level 2 | accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, evaluation in evaluations.items():
        label = MODEL_LABELS.get(model, model)
        lines.append(f"| {label} | this run | " + " | ".join(
            [_pct(evaluation["sensitivity"][level]) for level in LEVELS]
            + [_pct(evaluation["ppv"][level]) for level in LEVELS] + [_pct(evaluation["accuracy"])]) + " |")
        if model in table3:
            row = table3[model]
            lines.append(f"| {label} | paper | " + " | ".join(_printed_pct(row[key]) for key in (
                "sensitivity_level1", "sensitivity_level2", "ppv_level1", "ppv_level2", "accuracy")) + " |")
    lines += [
        "",
        "The paper's baseline rows solve for whole counts on 150 test images only with the level "
        "names swapped relative to the COVID-Net CXR-S row (see ../shared/REFERENCE.md), so their "
        "per-level columns are printed as the paper has them and are not comparable level by level.",
        "",
    ]
    if len(set(input_sizes.values())) > 1:
        sizes = ", ".join(f"{MODEL_LABELS.get(m, m)} {size} px" for m, size in input_sizes.items())
        lines += [f"Input sizes differ in this run ({sizes}): the embedded default shrinks the "
                  "baselines to fit its CPU time budget, so this is not a like-for-like comparison of "
                  "the architectures.", ""]
    return lines


def table4_lines(evaluation: dict, data: str) -> list[str]:
    # The paper prints the prediction in rows; re-laid out here as rows = true level.
    printed = paper()["table4"]["matrix"]
    lines = [
        f"## Table 4: COVID-Net CXR-S confusion matrix (rows: true level, columns: predicted) - {data}", "",
        "| true \\ predicted | this run: Level 1 | this run: Level 2 | paper: Level 1 | paper: Level 2 |",
        "| --- | --- | --- | --- | --- |",
    ]
    matrix = evaluation["confusion_matrix"]["matrix"]
    for level, key in zip(LEVELS, ("level1", "level2")):
        lines.append(f"| {level} | {matrix[level]['Level 1']} | {matrix[level]['Level 2']} | "
                     f"{printed['level1'][key]} | {printed['level2'][key]} |")
    return lines + [""]


def training_lines(metrics: Path, finetunes: dict[str, dict], data: str) -> list[str]:
    lines = [f"## Training - {data}", ""]
    for model, finetune in finetunes.items():
        pretrain = _load(metrics, f"models/{model}/pretrain.json")
        lines.append(
            f"- {MODEL_LABELS.get(model, model)} (`{model}`, {finetune['input_size']} px input, "
            f"{finetune['parameters']:,} parameters): pretraining on {pretrain['train_images']} images for "
            f"{pretrain['epochs']} epochs, held-out accuracy {_pct(pretrain['test']['accuracy'])} on "
            f"{pretrain['test']['n']} images; fine-tuning on {finetune['train_images']} train / "
            f"{finetune['val_images']} val images, {finetune['transferred_layers']} backbone layers "
            f"transferred by name, epoch {finetune['selected_epoch']} of {finetune['epochs']} selected by "
            f"{finetune['selected_by']} (val accuracy {_pct(finetune['selected'].get('val_accuracy'))}).")
    return lines + [""]


def render(metrics: Path, out: Path, model_names) -> str:
    cohort = _load(metrics, "cohort.json")
    complexity = _load(metrics, "complexity.json")
    models = ordered_models(model_names)
    evaluations = {model: _load(metrics, f"models/{model}/evaluate.json") for model in models}
    finetunes = {model: _load(metrics, f"models/{model}/finetune.json") for model in models}
    sources = {evaluation["data_source"] for evaluation in evaluations.values()}
    if len(sources) != 1:
        raise SystemExit(f"report: evaluations from different data sources {sorted(sources)}; rerun dvc repro")
    source = sources.pop()
    data = SOURCE_TITLES.get(source, source)
    figures = out / "figures"
    confusion_figure(evaluations, f"Test confusion matrices - {data}", figures / "confusion_matrix.png")
    curves_figure(metrics, models, f"Fine-tuning curves - {data}", figures / "finetune_curves.png")

    lines = [
        "# COVID-Net CXR-S reproduction: results",
        "",
        "Generated by `dvc repro` (stage `report`) from `metrics/`; do not edit by hand.",
        "",
    ]
    if source == "synthetic":
        lines += [
            "> **Synthetic data.** These numbers come from the embedded cohort of digital phantoms, "
            "generated offline by `stages.sources.phantom`. They check that the pipeline works; they "
            "are not clinical results and are not comparable to the paper's.", ""]
    # Every model is evaluated on the same test split.
    test_split = next(iter(evaluations.values()))
    lines += cohort_lines(cohort, test_split["n"], data)
    leakage = metrics / "leakage.json"
    lines += leakage_lines(json.loads(leakage.read_text()) if leakage.exists() else None)
    lines += table2_lines(complexity)
    lines += table3_lines(evaluations, data, {model: finetunes[model]["input_size"] for model in models})
    lines.append(f"Majority-class rate of this test split: {_pct(test_split['majority_class_rate'])}.")
    lines.append("")
    if "covidnet_cxr_s" in evaluations:
        lines += table4_lines(evaluations["covidnet_cxr_s"], data)
    lines += ["![confusion matrices](figures/confusion_matrix.png)", ""]
    lines += training_lines(metrics, finetunes, data)
    lines += ["![fine-tuning curves](figures/finetune_curves.png)", ""]
    text = "\n".join(lines)
    write_text(out / "results.md", text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    render(args.metrics, args.out, load_params(args.params)["models"])
    print(f"report: wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
