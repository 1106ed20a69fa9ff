"""Stage ``report``: ``reports/results.md`` with this run's tables beside the paper's, and figures;
``reports/results.html``, the same as one self-contained page with interactive charts.

Every number comes from ``metrics/`` (this run) or ``stages/reference/paper.yaml`` (the paper, as
printed); nothing is typed by hand. The data source is stated in the heading of every table, so
numbers from the synthetic phantoms can never pass for clinical ones.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from stages import models as zoo
from stages import schema
from stages.common.io import write_text
from stages.common.params import load_params
from stages.common.tracked import track, untrack
from stages.evaluation.classification import METRICS
from stages.reference import PAPER_FILE
from stages.reference import paper as _paper_as_printed
from stages.reporting.charts import charts, paper_matrix_by_true_level
from stages.reporting.comparison import comparison_lines
from stages.reporting.explanations import explanation_lines
from stages.reporting.formatting import NO_PAPER
from stages.reporting.formatting import pct as _pct
from stages.reporting.formatting import printed_pct as _printed_pct
from stages.reporting.formatting import signed_pct as _signed_pct
from stages.reporting.figures import write_figures
from stages.reporting.html import page as results_page
from stages.reporting.paper_rows import consistency_lines, paper_rows
from stages.tasks import LEVEL_NAMES as LEVELS

SOURCE_TITLES = schema.SOURCE_TITLES


def ordered_models(names) -> list[str]:
    """The zoo's models (``models`` in params.yaml) in the paper's table order, then any others."""
    if not names:
        raise SystemExit("report: params.yaml lists no models")
    return zoo.ordered(names)


def paper() -> dict:
    """The paper's figures, each number tracked to its key in ``paper.yaml``."""
    return track(_paper_as_printed(), f"stages/reference/{PAPER_FILE.name}")


def _load(metrics: Path, name: str, required: bool = True) -> dict | None:
    """A metrics file with every number tracked to its file and key (see ``stages.common.tracked``)."""
    path = metrics / name
    if not path.exists():
        if not required:
            return None
        raise SystemExit(f"report: {path} not found (did the stage that writes it run?)")
    return track(json.loads(path.read_text()), path.as_posix())


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


def _share(count, total) -> str:
    return f"{count} ({100 * count / total:.1f}%)" if total else f"{count}"


def table1_lines(demographics: dict | None, data: str) -> list[str]:
    """Table 1 beside the paper's: age and sex per patient, view per image (``metrics/cohort.json``)."""
    if not demographics:
        return []
    printed = paper()["table1"]
    patients, printed_patients = demographics["patients"], sum(printed["sex"].values())
    views, printed_views = demographics["view"], printed["view"]
    images, printed_images = sum(views.values()), sum(printed_views.values())
    age = ("n/a" if demographics["age_mean"] is None else
           f"{demographics['age_mean']:.2f} ± " + ("n/a" if demographics["age_sd"] is None
                                                   else f"{demographics['age_sd']:.2f}"))
    lines = [f"## Table 1: demographics - {data}", "",
             f"Age and sex per patient (the age at the patient's first study, from the DICOM header; ages "
             f"over 89 are kept as 90+), view per image. {demographics['patients_with_age']} of {patients} "
             "patients have an age.", "",
             "| | this run | paper (RICORD 1c) |", "| --- | --- | --- |",
             f"| age, mean ± SD (years) | {age} | {printed['age']['mean']} ± {printed['age']['sd']} |"]
    for key, label in (("male", "male"), ("female", "female")):
        lines.append(f"| {label} | {_share(demographics['sex'][key], patients)} | "
                     f"{_share(printed['sex'][key], printed_patients)} |")
    unknown_sex = demographics["sex"]["other"] + demographics["sex"]["unknown"]
    lines.append(f"| sex other or not recorded | {_share(unknown_sex, patients)} | - |")
    for key, label in (("AP", "AP"), ("PA", "PA"), ("unknown", "unknown")):
        lines.append(f"| view {label} (images) | {_share(views[key], images)} | "
                     f"{_share(printed_views[key], printed_images)} |")
    for age_bin in schema.AGE_BINS:
        lines.append(f"| age {age_bin} (patients) | {demographics['age_bins'][age_bin]} | "
                     f"{printed['age_bins'][age_bin]} |")
    return lines + [""]


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
    """What validate's leakage audit (``metrics/leakage.json``) found, and, on the synthetic
    source, how many of its planted copies it found."""
    if not leakage:
        return []
    splits = "/".join(leakage["splits_guarded"])
    planted = leakage.get("planted")
    kinds = ", ".join(f"{kind} {c['found']}/{c['planted']}" for kind, c in (planted or {}).get("by_kind", {}).items())
    return [
        f"Leakage audit (`validate.leakage: {leakage['mode']}`): {leakage['matched_guarded_severity_images']} "
        f"severity {splits} images were found in the pretraining cohort by patient id, file name, exact "
        f"pixels or perceptual hash (whole, cropped to COVID-Net's box, mirrored); "
        f"{leakage['excluded_pretrain_images']} pretraining images were excluded; "
        f"{leakage['cross_split_pairs']} val/test images matched a severity train image"
        + (f". Planted copies found: {planted['found']} of {planted['planted']} ({kinds})" if planted else "")
        + " (details in `reports/validation.md`).",
        "",
    ]


# Models whose free design choices were tuned to land on the paper's Table 2 figures (docs/settings.md):
# their agreement there is calibrated, not reproduced.
CALIBRATED_TO_TABLE2 = {"covidnet_cxr_s": "its stage widths and stem (the paper gives neither)"}


def calibration_lines(complexity: dict) -> list[str]:
    """For each calibrated model with a paper row: what was tuned, and the backbone-only count."""
    lines = []
    for model, what in CALIBRATED_TO_TABLE2.items():
        row = complexity["models"].get(model)
        if not row or not row.get("paper"):
            continue
        backbone, printed = row["parameters"]["backbone"], row["paper"]["parameters_m"]
        lines.append(
            f"{zoo.label(model)}'s row is calibrated, not reproduced: {what} were chosen here so that the "
            f"network at {complexity['input_shape'][0]} px lands near the paper's {printed} M parameters and "
            f"{row['paper']['gflops']} GFLOPs (`docs/settings.md`). Its backbone alone has "
            f"{backbone / 1e6:.2f} M parameters ({_signed_pct((backbone / 1e6 - printed) / printed)} from "
            f"{printed} M); the rest is the head, whose {complexity['dense_units']}-unit dense layer is also ours.")
    return [""] + lines if lines else []


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
    for model in zoo.ordered(complexity["models"]):
        row = complexity["models"][model]
        reference = row.get("paper")
        if not reference:  # the paper has no row for this model: ours only
            lines.append(f"| {zoo.label(model)} | {row['parameters']['total'] / 1e6:.2f} | {NO_PAPER} | {NO_PAPER} | "
                         f"{row['gflops']:.2f} | {NO_PAPER} | {NO_PAPER} | {zoo.PARAMETER_BASES['total']} |")
            continue
        counted = row["parameters"][reference["parameters_compared"]]
        lines.append(
            f"| {zoo.label(model)} | {counted / 1e6:.2f} | {reference['parameters_m']} | "
            f"{_signed_pct(reference['parameters_difference'])} | {row['gflops']:.2f} | {reference['gflops']} | "
            f"{_signed_pct(reference['gflops_difference'])} | {reference['parameters_compared_means']} |")
    lines += calibration_lines(complexity)
    lines += ["", "All parameter counts of this run (backbone / head / total as trained here):", ""]
    for model in zoo.ordered(complexity["models"]):
        counts = complexity["models"][model]["parameters"]
        extra = (f"; with the 1000-class ImageNet top {counts['with_imagenet_top']:,}"
                 if "with_imagenet_top" in counts else "")
        lines.append(f"- {zoo.label(model)}: {counts['backbone']:,} / {counts['head']:,} / "
                     f"{counts['total']:,}{extra}.")
    return lines + [""]


def _pct_ci(value, interval: dict | None) -> str:
    """``90.80% (85.06-95.40)``: the point estimate and its bootstrap interval, when there is one."""
    if not interval or interval.get("low") is None:
        return _pct(value)
    return f"{_pct(value)} ({100 * interval['low']:.2f}-{100 * interval['high']:.2f})"


def table3_lines(evaluations: dict[str, dict], data: str, input_sizes: dict[str, int],
                 consistency: dict | None = None, comparisons: dict | None = None,
                 seeds: dict | None = None) -> list[str]:
    table3 = paper()["table3"]
    first = next(iter(evaluations.values()))
    ci = first.get("confidence_intervals")
    lines = [f"## Table 3: test performance - {data}", ""]
    if ci:
        lines += [f"This run's figures carry {ci['level']:.0%} confidence intervals from a bootstrap over the "
                  f"{ci['patients']} test patients ({ci['resamples']} resamples; a patient's images are "
                  "resampled together).", ""]
    lines += [
        "| network | | sensitivity Level 1 | sensitivity Level 2 | PPV Level 1 | PPV Level 2 | accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, evaluation in evaluations.items():
        intervals = (evaluation.get("confidence_intervals") or {}).get("intervals", {})
        lines.append(f"| {zoo.label(model)} | this run | " + " | ".join(
            [_pct_ci(evaluation["sensitivity"][level], intervals.get("sensitivity", {}).get(level)) for level in LEVELS]
            + [_pct_ci(evaluation["ppv"][level], intervals.get("ppv", {}).get(level)) for level in LEVELS]
            + [_pct_ci(evaluation["accuracy"], intervals.get("accuracy"))]) + " |")
        lines += paper_rows(model, table3.get(model), consistency)
    lines.append("")
    lines += consistency_lines(consistency)
    beyond = [metric for metric in METRICS if not metric.in_paper]
    if any("roc_auc" in e for e in evaluations.values()):
        columns = [f"{m.label} {level}" if m.kind == "per_class" else m.label for m in beyond for level in
                   (LEVELS if m.kind == "per_class" else [None])] + ["expected calibration error"]
        lines += [f"Beyond the paper - {data}:", "", "| network | " + " | ".join(columns) + " |",
                  "| --- |" + " --- |" * len(columns)]
        for model, evaluation in evaluations.items():
            intervals = (evaluation.get("confidence_intervals") or {}).get("intervals", {})
            cells = []
            for metric in beyond:
                if metric.kind == "per_class":
                    cells += [_pct_ci(evaluation[metric.key][level], intervals.get(metric.key, {}).get(level))
                              for level in LEVELS]
                elif metric.kind == "score":
                    cells.append(_decimal_ci(evaluation.get(metric.key), intervals.get(metric.key)))
                else:
                    cells.append(_pct_ci(evaluation.get(metric.key), intervals.get(metric.key)))
            cells.append(f"{evaluation['expected_calibration_error']:.3f}")
            lines.append(f"| {zoo.label(model)} | " + " | ".join(cells) + " |")
        lines += ["", "![ROC, precision-recall and calibration](figures/curves.png)", ""]
    return lines + comparison_lines(input_sizes, comparisons, seeds)


def _decimal_ci(value, interval: dict | None) -> str:
    """``0.912 (0.850-0.960)``: a score such as ROC AUC to 3 decimals, with its interval when there is one."""
    if value is None:
        return "n/a"
    if not interval or interval.get("low") is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({interval['low']:.3f}-{interval['high']:.3f})"


def table4_lines(evaluation: dict, data: str) -> list[str]:
    # The paper prints the prediction in rows; re-laid out here as rows = true level.
    printed = paper_matrix_by_true_level(paper()["table4"]["matrix"])
    lines = [
        f"## Table 4: COVID-Net CXR-S confusion matrix (rows: true level, columns: predicted) - {data}", "",
        "| true \\ predicted | this run: Level 1 | this run: Level 2 | paper: Level 1 | paper: Level 2 |",
        "| --- | --- | --- | --- | --- |",
    ]
    matrix = evaluation["confusion_matrix"]["matrix"]
    for level in LEVELS:
        lines.append(f"| {level} | {matrix[level]['Level 1']} | {matrix[level]['Level 2']} | "
                     f"{printed[level]['Level 1']} | {printed[level]['Level 2']} |")
    return lines + [""]


def training_lines(metrics: Path, finetunes: dict[str, dict], data: str) -> list[str]:
    lines = [f"## Training - {data}", ""]
    for model, finetune in finetunes.items():
        pretrain = _load(metrics, f"models/{model}/pretrain.json")
        lines.append(
            f"- {zoo.label(model)}, `{model}`: {finetune['input_size']} px input, "
            f"{finetune['parameters']:,} parameters; pretraining on {pretrain['train_images']} images for "
            f"{pretrain['epochs']} epochs, held-out accuracy {_pct(pretrain['test']['accuracy'])} on "
            f"{pretrain['test']['n']} images; fine-tuning on {finetune['train_images']} train / "
            f"{finetune['val_images']} val images, {finetune['transferred_layers']} backbone layers "
            f"transferred by name, epoch {finetune['selected_epoch']} of {finetune['epochs']} selected by "
            f"{finetune['selected_by']} ("
            + (f"{finetune['selected']['val_loss_balanced']:.3f}; " if "val_loss_balanced" in finetune["selected"] else "")
            + f"val accuracy {_pct(finetune['selected'].get('val_accuracy'))}).")
    return lines + [""]


@dataclass
class Results:
    """Everything the report shows, loaded from ``metrics/`` with each number tracked to its key."""
    metrics: Path
    models: list[str]
    source: str
    cohort: dict
    complexity: dict
    evaluations: dict[str, dict]
    finetunes: dict[str, dict]
    leakage: dict | None
    consistency: dict | None
    comparisons: dict | None = None  # metrics/comparisons.json (stage compare)
    seeds: dict | None = None  # metrics/bench_seeds.json (benchmarks/seeds.py)
    explanations: dict[str, dict] = field(default_factory=dict)  # metrics/explain/<model>/explain.json

    @property
    def data(self) -> str:
        return SOURCE_TITLES.get(self.source, self.source)


def load_results(metrics: Path, model_names) -> Results:
    models = ordered_models(model_names)
    evaluations = {model: _load(metrics, f"models/{model}/evaluate.json") for model in models}
    sources = {evaluation["data_source"] for evaluation in evaluations.values()}
    if len(sources) != 1:
        raise SystemExit(f"report: evaluations from different data sources {sorted(sources)}; rerun dvc repro")
    return Results(metrics=metrics, models=models, source=sources.pop(), cohort=_load(metrics, "cohort.json"),
                   complexity=_load(metrics, "complexity.json"), evaluations=evaluations,
                   finetunes={model: _load(metrics, f"models/{model}/finetune.json") for model in models},
                   leakage=_load(metrics, "leakage.json", required=False),
                   consistency=_load(metrics, "paper_consistency.json", required=False),
                   comparisons=_load(metrics, "comparisons.json", required=False),
                   seeds=_load(metrics, "bench_seeds.json", required=False),
                   explanations={model: explanation for model in models
                                 if (explanation := _load(metrics, f"explain/{model}/explain.json", required=False))})


def synthetic_warning(results: Results) -> list[str]:
    if results.source != "synthetic":
        return []
    return ["> **Synthetic data.** These numbers come from the embedded cohort of digital phantoms, "
            "generated offline by `stages.sources.phantom`. They check that the pipeline works; they "
            "are not clinical results and are not comparable to the paper's.", ""]


def results_text(results: Results) -> str:
    """``reports/results.md``, with every number still marked by its origin (``untrack`` cleans it)."""
    evaluations, data = results.evaluations, results.data
    lines = ["# COVID-Net CXR-S reproduction: results", "",
             "Generated by `dvc repro` (stage `report`) from `metrics/`; do not edit by hand.", ""]
    lines += synthetic_warning(results)
    # Every model is evaluated on the same test split.
    test_split = next(iter(evaluations.values()))
    lines += cohort_lines(results.cohort, test_split["n"], data)
    lines += table1_lines(results.cohort.get("demographics"), data)
    lines += leakage_lines(results.leakage)
    lines += table2_lines(results.complexity)
    lines += table3_lines(evaluations, data, {m: results.finetunes[m]["input_size"] for m in results.models},
                          results.consistency, results.comparisons, results.seeds)
    lines.append(f"Majority-class rate of this test split: {_pct(test_split['majority_class_rate'])}.")
    lines.append("")
    if "covidnet_cxr_s" in evaluations:
        lines += table4_lines(evaluations["covidnet_cxr_s"], data)
    lines += ["![confusion matrices](figures/confusion_matrix.png)", ""]
    lines += training_lines(results.metrics, results.finetunes, data)
    lines += ["![fine-tuning curves](figures/finetune_curves.png)", ""]
    lines += explanation_lines(results.explanations, data)
    if results.explanations:
        lines += ["Heatmap figures: `reports/explain/<model>/gradcam.png` (stage `explain`).", ""]
    return "\n".join(lines)


def readme_text(results: Results) -> str:
    """The README's results section: the headline figures, each beside the paper's."""
    evaluations, data, table3 = results.evaluations, results.data, paper()["table3"]
    cohort, reference = results.cohort, paper()["cohort"]
    test_split = next(iter(evaluations.values()))
    lines = [f"#### Test performance - {data}", ""] + synthetic_warning(results) + [
        f"{test_split['n']} test images; 95% intervals from a bootstrap over test patients. "
        "Per-level figures, Table 4 and the figures are in `reports/results.md`.", "",
        "| network | accuracy, this run | paper | sensitivity Level 1 / 2 | PPV Level 1 / 2 | ROC AUC |",
        "| --- | --- | --- | --- | --- | --- |"]
    for model, evaluation in evaluations.items():
        intervals = (evaluation.get("confidence_intervals") or {}).get("intervals", {})
        printed = table3.get(model)
        auc = evaluation.get("roc_auc")
        lines.append(
            f"| {zoo.label(model)} | {_pct_ci(evaluation['accuracy'], intervals.get('accuracy'))} | "
            f"{_printed_pct(printed['accuracy']) if printed else NO_PAPER} | "
            + " / ".join(_pct(evaluation["sensitivity"][level]) for level in LEVELS) + " | "
            + " / ".join(_pct(evaluation["ppv"][level]) for level in LEVELS) + " | "
            + ("n/a" if auc is None else f"{auc:.3f}") + " |")
    lines += [""] + comparison_lines({m: results.finetunes[m]["input_size"] for m in results.models},
                                     results.comparisons, results.seeds)
    lines += explanation_lines(results.explanations, data, heading="####", groups=("all",))
    lines += [f"#### Cohort - {data}", "",
              f"{cohort['images']} images of {cohort['patients']} patients (Level 1: {cohort['level1']['images']}, "
              f"Level 2: {cohort['level2']['images']}); the paper's RICORD 1c cohort: {reference['images']} images "
              f"of {reference['patients']} patients ({reference['level1']['images']} / "
              f"{reference['level2']['images']}).", "",
              "#### Table 2: complexity at 480 x 480 x 3 - model architecture only (no data involved)", "",
              "| network | parameters (M), this run | paper | GFLOPs, this run | paper |",
              "| --- | --- | --- | --- | --- |"]
    for model in zoo.ordered(results.complexity["models"]):
        row = results.complexity["models"][model]
        printed = row.get("paper")
        if not printed:
            lines.append(f"| {zoo.label(model)} | {row['parameters']['total'] / 1e6:.2f} | {NO_PAPER} | "
                         f"{row['gflops']:.2f} | {NO_PAPER} |")
            continue
        lines.append(f"| {zoo.label(model)} | {row['parameters'][printed['parameters_compared']] / 1e6:.2f} | "
                     f"{printed['parameters_m']} | {row['gflops']:.2f} | {printed['gflops']} |")
    return "\n".join(lines + [""])


def render(metrics: Path, out: Path, model_names) -> str:
    """``results.md`` with its PNG figures, and ``results.html``: the same text with the figures as
    interactive charts, self-contained (opens offline)."""
    results = load_results(metrics, model_names)
    write_figures(results.evaluations, results.metrics, results.models, results.data, out / "figures")
    text, _ = untrack(results_text(results))
    write_text(out / "results.md", text)
    paper_table4 = paper()["table4"] if "covidnet_cxr_s" in results.evaluations else None
    write_text(out / "results.html", results_page(text, charts(results.evaluations, results.metrics, results.models,
                                                               paper_table4, results.data)))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    render(args.metrics, args.out, load_params(args.params)["models"])
    print(f"report: wrote {args.out / 'results.md'} and {args.out / 'results.html'}")


if __name__ == "__main__":
    main()
