"""The report puts every model's numbers beside the paper's and labels the data source."""

import json
from pathlib import Path

import pytest

from stages.report import ordered_models, render

LEVELS = ("Level 1", "Level 2")


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _evaluation(model: str, tp1: int, fn1: int, fp1: int, tp2: int) -> dict:
    matrix = {"Level 1": {"Level 1": tp1, "Level 2": fn1}, "Level 2": {"Level 1": fp1, "Level 2": tp2}}
    n = tp1 + fn1 + fp1 + tp2
    return {"data_source": "synthetic", "model": model, "n": n, "accuracy": (tp1 + tp2) / n,
            "majority_class_rate": (fp1 + tp2) / n,
            "sensitivity": {"Level 1": tp1 / (tp1 + fn1), "Level 2": tp2 / (tp2 + fp1)},
            "ppv": {"Level 1": tp1 / (tp1 + fp1), "Level 2": tp2 / (tp2 + fn1)},
            "confusion_matrix": {"rows": "true", "columns": "predicted", "matrix": matrix}}


@pytest.fixture
def metrics(tmp_path):
    root = tmp_path / "metrics"
    _write(root / "cohort.json", {"images": 40, "patients": 20, "level1": {"images": 15, "patients": 9},
                                  "level2": {"images": 25, "patients": 14}})
    complexity = {"input_shape": [480, 480, 3], "tensorflow": "2.x", "flops_counted_by": "profiler",
                  "dense_units": 256, "models": {}}
    for model, total, basis_count, gflops in (("covidnet_cxr_s", 8_704_034, 8_704_034, 11.238),
                                              ("resnet50", 24_112_770, 23_587_712, 35.594)):
        basis = "total" if model == "covidnet_cxr_s" else "backbone"
        reference = {"covidnet_cxr_s": (8.8, 11.1, "COVID-Net CXR-S"), "resnet50": (23.6, 35.5, "ResNet-50")}[model]
        complexity["models"][model] = {
            "flops": int(gflops * 1e9), "gflops": gflops,
            "parameters": {"total": total, "backbone": basis_count if basis == "backbone" else total - 5, "head": 5},
            "paper": {"label": reference[2], "parameters_m": reference[0], "gflops": reference[1],
                      "parameters_compared": basis, "parameters_compared_means": basis,
                      "parameters_difference": round(basis_count / 1e6 / reference[0] - 1, 5),
                      "gflops_difference": round(gflops / reference[1] - 1, 5)}}
        _write(root / "models" / model / "evaluate.json", _evaluation(model, 5, 1, 2, 12))
        _write(root / "models" / model / "pretrain.json", {"train_images": 30, "epochs": 1,
                                                            "test": {"accuracy": 0.9, "n": 10}})
        _write(root / "models" / model / "finetune.json", {
            "input_size": 32, "parameters": total, "train_images": 12, "val_images": 4, "transferred_layers": 7,
            "selected_epoch": 1, "epochs": 2, "selected_by": "val_accuracy", "selected": {"val_accuracy": 0.75}})
    _write(root / "complexity.json", complexity)
    return root


def test_table2_says_the_cxr_s_row_is_calibrated_and_gives_its_backbone(metrics, tmp_path):
    """By hand: the fixture's CXR-S backbone is 8,704,029 parameters, 8.70 M, (8.704029 - 8.8) / 8.8
    = -1.09% -> "-1.1%"; ResNet-50's row is not calibrated."""
    text = render(metrics, tmp_path / "out", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert ("COVID-Net CXR-S's row is calibrated, not reproduced: its stage widths and stem (the paper gives "
            "neither) were chosen here so that the network at 480 px lands near the paper's 8.8 M "
            "parameters and 11.1 GFLOPs") in text
    assert "Its backbone alone has 8.70 M parameters (-1.1% from 8.8 M); the rest is the head, whose " \
           "256-unit dense layer is also ours." in text
    assert "ResNet-50's row is calibrated" not in text


def test_tables_beside_the_paper_and_labelled_synthetic(metrics, tmp_path):
    text = render(metrics, tmp_path / "reports", {"covidnet_cxr_s": {}, "resnet50": {}})
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert all("synthetic phantoms" in h or "no data involved" in h for h in headings)
    assert "| COVID-Net CXR-S | 8.70 | 8.8 | -1.1% | 11.24 | 11.1 | +1.2% |" in text
    assert "| ResNet-50 | 23.59 | 23.6 | -0.1% | 35.59 | 35.5 | +0.3% |" in text
    # Table 3: this run (from metrics) next to the paper's printed row, for every model
    assert "| ResNet-50 | this run | 83.33% | 85.71% | 71.43% | 92.31% | 85.00% |" in text
    assert "| ResNet-50 | paper | 91.84% | 78.85% | 89.11% | 83.67% | 87.33% |" in text
    assert "| COVID-Net CXR-S | paper | 92.3% | 92.85% |" in text
    # Table 4: the paper's printed (rows = predicted) matrix re-laid out as rows = true level
    assert "| Level 1 | 5 | 1 | 48 | 4 |" in text and "| Level 2 | 2 | 12 | 7 | 91 |" in text
    assert (tmp_path / "reports" / "figures" / "confusion_matrix.png").stat().st_size > 0


def test_report_is_byte_stable(metrics, tmp_path):
    render(metrics, tmp_path / "a", {"covidnet_cxr_s": {}, "resnet50": {}})
    render(metrics, tmp_path / "b", {"covidnet_cxr_s": {}, "resnet50": {}})
    for name in ("results.md", "results.html", "figures/confusion_matrix.png", "figures/finetune_curves.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_missing_model_metrics_named(metrics, tmp_path):
    with pytest.raises(SystemExit, match="densenet121/evaluate.json"):
        render(metrics, tmp_path / "reports", {"covidnet_cxr_s": {}, "densenet121": {}})


def test_models_in_the_papers_order():
    assert ordered_models({"covidnet_cxr_s": {}, "resnet50": {}, "densenet121": {}, "vgg": {}}) == [
        "densenet121", "resnet50", "covidnet_cxr_s", "vgg"]


def test_reader_agreement_sentence_when_measured(metrics, tmp_path):
    assert "Reader agreement" not in render(metrics, tmp_path / "a", {"covidnet_cxr_s": {}, "resnet50": {}})
    cohort = json.loads((metrics / "cohort.json").read_text())
    cohort["reader_agreement"] = {"studies_with_two_or_more_readers": 12, "fleiss_kappa_level": 0.61234,
                                  "fleiss_kappa_grade": 0.5, "cohen_kappa_level_first_two_readers": 0.7,
                                  "level_agreement_first_two_readers": 0.875}
    _write(metrics / "cohort.json", cohort)
    text = render(metrics, tmp_path / "b", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert ("over the 12 studies graded by two or more readers: Fleiss' kappa 0.612 on the level "
            "(Level 1 / Level 2 / invalid) and 0.500 on the grade; Cohen's kappa 0.700") in text
    assert "(raw agreement 87.5%)" in text


def test_leakage_sentence_when_audited(metrics, tmp_path):
    assert "Leakage audit" not in render(metrics, tmp_path / "a", {"covidnet_cxr_s": {}, "resnet50": {}})
    audit = {"mode": "exclude", "splits_guarded": ["test", "val"], "matched_guarded_severity_images": 7,
             "excluded_pretrain_images": 9, "cross_split_pairs": 0}
    _write(metrics / "leakage.json", audit)
    text = render(metrics, tmp_path / "b", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert ("Leakage audit (`validate.leakage: exclude`): 7 severity test/val images were found "
            "in the pretraining cohort") in text
    assert "9 pretraining images were excluded; 0 val/test images matched a severity train image" in text
    assert "Planted copies" not in text  # real data: nothing planted
    planted = {"planted": 3, "found": 2, "by_kind": {"copy": {"planted": 1, "found": 1},
                                                     "cropped": {"planted": 2, "found": 1}}}
    _write(metrics / "leakage.json", {**audit, "planted": planted})
    text = render(metrics, tmp_path / "c", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert "Planted copies found: 2 of 3 (copy 1/1, cropped 1/2)" in text


def test_table3_carries_intervals_and_the_papers_consistency(metrics, tmp_path):
    from stages.reference import paper
    from stages.reference.consistency import check

    for model in ("covidnet_cxr_s", "resnet50"):
        path = metrics / "models" / model / "evaluate.json"
        evaluation = json.loads(path.read_text())
        evaluation.update({
            "f1": {"Level 1": 0.769231, "Level 2": 0.888889}, "roc_auc": 0.9125, "expected_calibration_error": 0.071,
            "confidence_intervals": {"level": 0.95, "patients": 9, "resamples": 1000, "intervals": {
                "accuracy": {"low": 0.6, "high": 0.95, "defined": 1000},
                "roc_auc": {"low": 0.8, "high": 1.0, "defined": 990}}}})
        _write(path, evaluation)
    _write(metrics / "paper_consistency.json", check(paper()))
    text = render(metrics, tmp_path / "r", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert "95% confidence intervals from a bootstrap over the 9 test patients (1000 resamples" in text
    assert "| 85.00% (60.00-95.00) |" in text  # accuracy 17/20 with its interval
    assert "| COVID-Net CXR-S | 76.92% | 88.89% | 0.912 (0.800-1.000) | 0.071 |" in text
    assert "ResNet-50 (paper): whole counts on 150 images fitting every printed figure (Level 1 / Level 2): " \
           "98 / 52 true, TP 90 / 41; level names swapped." in text
    # Both of the text's sensitivity claims belong to the other level (REFERENCE.md: the text swaps them).
    assert "The text gives COVID-Net CXR-S's Level 2 sensitivity as 92.3%; Table 4 gives 92.8571% " \
           "(the text's figure is the Level 1 sensitivity)." in text
    assert "The text gives COVID-Net CXR-S's Level 1 sensitivity as 92.85%; Table 4 gives 92.3077% " \
           "(the text's figure is the Level 2 sensitivity)." in text
    assert (tmp_path / "r" / "figures").is_dir()


def _add_densenet121(metrics: Path) -> None:
    """densenet121's metrics files, copied from resnet50's (the report only needs their shape)."""
    for name in ("evaluate.json", "pretrain.json", "finetune.json"):
        _write(metrics / "models" / "densenet121" / name,
               json.loads((metrics / "models" / "resnet50" / name).read_text()))


def test_baseline_rows_are_also_shown_with_the_level_names_swapped_back(metrics, tmp_path):
    from stages.reference import paper
    from stages.reference.consistency import check

    _add_densenet121(metrics)
    models = {"covidnet_cxr_s": {}, "resnet50": {}, "densenet121": {}}
    without = render(metrics, tmp_path / "a", models)
    assert "swapped back" not in without  # no paper_consistency.json: the rows as printed only
    _write(metrics / "paper_consistency.json", check(paper()))
    text = render(metrics, tmp_path / "b", models)
    table3 = text[text.index("## Table 3"):text.index("Paper consistency")]
    # Oracles typed from REFERENCE.md's Table 3 by hand, Level 1 and Level 2 exchanged:
    # CheXNet printed 93.88 / 63.46 / 82.88 / 84.62 / 83.33, ResNet-50 91.84 / 78.85 / 89.11 / 83.67 / 87.33.
    assert "| CheXNet | paper | 93.88% | 63.46% | 82.88% | 84.62% | 83.33% |" in table3
    assert "| CheXNet | paper, level names swapped back | 63.46% | 93.88% | 84.62% | 82.88% | 83.33% |" in table3
    assert "| ResNet-50 | paper, level names swapped back | 78.85% | 91.84% | 83.67% | 89.11% | 87.33% |" in table3
    # The CXR-S row fits as printed: shown once.
    assert table3.count("| COVID-Net CXR-S | paper") == 1
    assert "| COVID-Net CXR-S | paper | 92.3% | 92.85% | 87.27% | 95.78% | 92.66% |" in table3
    # Each swapped-back row follows its model's own rows.
    lines = table3.splitlines()
    at = lines.index("| CheXNet | paper, level names swapped back | 63.46% | 93.88% | 84.62% | 82.88% | 83.33% |")
    assert lines[at - 1].startswith("| CheXNet | paper |")
    assert lines[at - 2].startswith("| DenseNet-121 (CheXNet architecture, trained here) | this run |")
    assert ("The paper's CheXNet and ResNet-50 rows are shown as printed, not comparable level by level, and "
            "again with the level names swapped back (Level 1 and Level 2 exchanged in sensitivity and PPV, "
            "accuracy unchanged): read so, they fit the test set's 52 Level 1 and 98 Level 2 images, as the "
            "COVID-Net CXR-S row does as printed.") in text
    assert "CheXNet (paper): whole counts on 150 images" in text


def test_swapped_back_row_follows_the_consistency_result_not_the_model(metrics, tmp_path):
    """A row is swapped back only where paper_consistency.json says its level names are swapped."""
    from stages.reference import paper
    from stages.reference.consistency import check

    result = check(paper())
    result["table3_rows"]["resnet50"]["level_names"] = "as printed"
    result["table3_rows"]["covidnet_cxr_s"]["level_names"] = "swapped"
    _write(metrics / "paper_consistency.json", result)
    text = render(metrics, tmp_path / "r", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert "| ResNet-50 | paper, level names swapped back |" not in text
    assert "| COVID-Net CXR-S | paper, level names swapped back | 92.85% | 92.3% | 95.78% | 87.27% | 92.66% |" in text


def test_table1_beside_the_papers_when_the_cohort_has_demographics(metrics, tmp_path):
    assert "Table 1" not in render(metrics, tmp_path / "a", {"covidnet_cxr_s": {}, "resnet50": {}})
    cohort = json.loads((metrics / "cohort.json").read_text())
    bins = dict.fromkeys(("<20", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+"), 0)
    bins.update({"50-59": 12, "90+": 7})
    cohort["demographics"] = {"patients": 20, "patients_with_age": 19, "age_mean": 61.5, "age_sd": 12.25,
                              "age_bins": bins, "sex": {"male": 11, "female": 8, "other": 0, "unknown": 1},
                              "view": {"AP": 30, "PA": 6, "unknown": 4}}
    _write(metrics / "cohort.json", cohort)
    text = render(metrics, tmp_path / "b", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert "## Table 1: demographics - synthetic phantoms" in text and "19 of 20 patients have an age" in text
    assert "| age, mean ± SD (years) | 61.50 ± 12.25 | 59.11 ± 16.19 |" in text
    # The paper's percentages come from its counts: 161 of 258 patients, 505 of 909 images.
    assert "| male | 11 (55.0%) | 161 (62.4%) |" in text and "| female | 8 (40.0%) | 97 (37.6%) |" in text
    assert "| sex other or not recorded | 1 (5.0%) | - |" in text
    assert "| view AP (images) | 30 (75.0%) | 505 (55.6%) |" in text
    assert "| view PA (images) | 6 (15.0%) | 5 (0.6%) |" in text
    assert "| age 90+ (patients) | 7 | 6 |" in text and "| age <20 (patients) | 0 | 2 |" in text


def _difference(value, low, high):
    return {"difference": value, "low": low, "high": high, "defined": 1000}


def test_paired_differences_rank_only_where_the_interval_excludes_zero(metrics, tmp_path):
    per_level = {"Level 1": _difference(0.0, -0.1, 0.1), "Level 2": _difference(0.05, -0.02, 0.12)}
    _write(metrics / "comparisons.json", {
        "reference": "covidnet_cxr_s", "level": 0.95, "patients": 9, "differences": {
            "resnet50": {"accuracy": _difference(0.12, 0.03, 0.2), "sensitivity": per_level,
                         "roc_auc": _difference(-0.01, -0.05, 0.04)},
            "densenet121": {"accuracy": _difference(-0.02, -0.09, 0.04), "sensitivity": per_level,
                            "roc_auc": _difference(0.0, -0.03, 0.03)}}})
    _add_densenet121(metrics)
    text = render(metrics, tmp_path / "r", {"covidnet_cxr_s": {}, "resnet50": {}, "densenet121": {}})
    assert "| ResNet-50 | +12.00 (+3.00 to +20.00) | +0.00 (-10.00 to +10.00) | +5.00 (-2.00 to +12.00) | " \
           "-0.010 (-0.050 to +0.040) |" in text
    assert ("On this test split the accuracy of COVID-Net CXR-S is higher than that of ResNet-50: the paired "
            "interval excludes zero (not checked over training seeds: no seed benchmark).") in text
    assert ("COVID-Net CXR-S is not ranked against DenseNet-121 (CheXNet architecture, trained here): the paired "
            "interval") in text
    assert "lower than that of DenseNet" not in text and "higher than that of DenseNet" not in text


def _seed_accuracies(**per_model):
    return {"seeds": [1, 2, 3], "models": {m: {"evaluate.json": {"accuracy": {
        "sd": 0.01, "values": dict(zip(("1", "2", "3"), values))}}} for m, values in per_model.items()}}


def test_a_ranking_must_hold_under_every_benchmarked_seed():
    from stages.reporting.comparison import comparison_lines, seed_differences

    per_level = {"Level 1": _difference(0.0, -0.1, 0.1), "Level 2": _difference(0.0, -0.1, 0.1)}
    comparisons = {"reference": "covidnet_cxr_s", "level": 0.95, "patients": 9, "differences": {
        "resnet50": {"accuracy": _difference(0.12, 0.03, 0.2), "sensitivity": per_level,
                     "roc_auc": _difference(0.0, -0.1, 0.1)},
        "densenet121": {"accuracy": _difference(-0.1, -0.2, -0.01), "sensitivity": per_level,
                        "roc_auc": _difference(0.0, -0.1, 0.1)}}}
    sizes = {"covidnet_cxr_s": 32, "densenet121": 32, "resnet50": 32}
    # CXR-S above ResNet-50 under all three seeds; below DenseNet-121 under two, above it under one.
    seeds = _seed_accuracies(covidnet_cxr_s=(0.90, 0.85, 0.95), resnet50=(0.80, 0.84, 0.70),
                             densenet121=(0.92, 0.88, 0.93))
    # By hand: 0.90-0.92, 0.85-0.88, 0.95-0.93 (floating point, so compared to 1e-12).
    assert seed_differences(seeds, "covidnet_cxr_s", "densenet121") == pytest.approx([-0.02, -0.03, 0.02], abs=1e-12)
    text = "\n".join(comparison_lines(sizes, comparisons, seeds))
    assert ("the accuracy of COVID-Net CXR-S is higher than that of ResNet-50: the paired interval excludes zero, "
            "and the difference had this sign under all 3 training seeds.") in text
    assert ("COVID-Net CXR-S is not ranked against DenseNet-121 (CheXNet architecture, trained here): the paired "
            "interval excludes zero on this split, but the accuracy difference changed sign over the 3 training "
            "seeds (higher under 1, lower under 2, equal under 0).") in text
    assert "lower than that of DenseNet" not in text
    # A tie under one seed breaks the ranking too; without a benchmark the ranking says it was not checked.
    seeds = _seed_accuracies(covidnet_cxr_s=(0.90, 0.85, 0.95), resnet50=(0.80, 0.85, 0.70),
                             densenet121=(0.92, 0.88, 0.96))
    text = "\n".join(comparison_lines(sizes, comparisons, seeds))
    assert "not ranked against ResNet-50: the paired interval excludes zero on this split" in text
    assert "(higher under 2, lower under 0, equal under 1)" in text
    assert "lower than that of DenseNet-121 (CheXNet architecture, trained here): the paired interval excludes " \
           "zero, and the difference had this sign under all 3 training seeds." in text
    text = "\n".join(comparison_lines(sizes, comparisons, None))
    assert "higher than that of ResNet-50: the paired interval excludes zero (not checked over training seeds: " \
           "no seed benchmark)." in text


def _explanation(source: str = "synthetic") -> dict:
    def score(gradcam, random, difference, low, high):
        return {"gradcam": {"mean": gradcam}, "random": {"mean": random},
                "difference": {"mean": difference, "low": low, "high": high}, "above_random": low > 0}

    def mean(value, low, high):
        return {"mean": value, "low": low, "high": high}

    explanation = {"data_source": source, "layer": "stage2_pepx4_out", "heatmap_grid": [4, 4], "images": 8,
                   "sanity_checks": {"randomised_weights": {"rank_correlation": {
                       "all": mean(-0.46, -0.56, -0.33), "Level 1": mean(0.1, -0.2, 0.3)}}}}
    if source != "synthetic":
        return {**explanation, "localisation": None, "reason": "data.source ricord has no planted truth"}
    explanation["localisation"] = {
        "all": {"images": 8, "mass_inside": score(0.232, 0.143, 0.089, 0.039, 0.142),
                "pointing_hit": score(0.025, 0.063, -0.038, -0.067, 0.008)},
        "Level 1": {"images": 4, "mass_inside": score(0.1, 0.05, 0.05, -0.01, 0.1),
                    "pointing_hit": score(0.0, 0.03, -0.03, -0.05, 0.0)}}
    explanation["sanity_checks"]["disease_effect"] = {"margin_drop": {
        "all": mean(6.979003, 5.529788, 8.826167), "Level 1": mean(3.26, 2.39, 4.29)}}
    return explanation


def test_explanations_table_from_the_explain_metrics(metrics, tmp_path):
    """By hand: each score as Grad-CAM vs random and the paired difference, bold only when its
    interval is above zero; the sanity checks signed to 3 decimals; rows per level in the report."""
    _write(metrics / "explain/covidnet_cxr_s/explain.json", _explanation())
    text = render(metrics, tmp_path / "out", {"covidnet_cxr_s": {}, "resnet50": {}})
    assert "## Explanations: Grad-CAM, checked - synthetic phantoms" in text
    assert "not on patients" in text
    assert ("| COVID-Net CXR-S | `stage2_pepx4_out` (4 x 4) | 8 | **0.232 vs 0.143: +0.089 (+0.039 to +0.142)** | "
            "0.025 vs 0.063: -0.038 (-0.067 to +0.008) | +6.979 (+5.530 to +8.826) | -0.460 (-0.560 to -0.330) |"
            ) in text
    assert ("| COVID-Net CXR-S, Level 1 | `stage2_pepx4_out` (4 x 4) | 4 | 0.100 vs 0.050: +0.050 (-0.010 to +0.100) | "
            "0.000 vs 0.030: -0.030 (-0.050 to +0.000) | +3.260 (+2.390 to +4.290) | +0.100 (-0.200 to +0.300) |") in text
    assert "| ResNet-50 |" in text and "ResNet-50, Level 1" not in text  # no explain metrics: no row


def test_explanations_on_real_data_show_only_the_randomisation_check(metrics, tmp_path):
    from stages.reporting.explanations import explanation_lines

    lines = explanation_lines({"covidnet_cxr_s": _explanation("ricord")}, "RICORD 1c")
    assert "No planted truth" in lines[2] and "| COVID-Net CXR-S | `stage2_pepx4_out` | 8 | -0.460 (-0.560 to -0.330) |" in lines
    assert explanation_lines({}, "RICORD 1c") == []
