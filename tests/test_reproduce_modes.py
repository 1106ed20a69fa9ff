"""The clean-reproduction check's two modes: exact on the reference platform, seed tolerance elsewhere,
and a tampered metric caught in both (``stages.checks.reproduce``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stages.checks import reproduce
from stages.checks.reproduce import compare_within, consistency, mode, seed_tolerances

REPO = Path(__file__).resolve().parents[1]
BENCH = {"models": {"resnet50": {"evaluate.json": {
    "accuracy": {"mean": 0.85, "sd": 0.01, "min": 0.84, "max": 0.86},
    "sensitivity.Level 1": {"mean": 0.8, "sd": 0.02, "min": 0.78, "max": 0.82},
    "n": {"mean": 87, "sd": 0.0, "min": 87, "max": 87}}}}}
LABEL = "metrics/models/resnet50/evaluate.json"


def test_tolerances_are_four_seed_sds():
    tolerances = seed_tolerances(BENCH)
    assert tolerances[f"{LABEL} [accuracy]"] == pytest.approx(0.04)
    assert tolerances[f"{LABEL} [sensitivity.Level 1]"] == pytest.approx(0.08)
    assert tolerances[f"{LABEL} [n]"] == 0.0  # the same on every seed: exact


def test_within_tolerance_passes_and_beyond_fails():
    tolerances = seed_tolerances(BENCH)
    committed = {"accuracy": 0.85, "sensitivity": {"Level 1": 0.8}, "n": 87, "roc_auc": 0.9}
    assert compare_within(LABEL, committed, {**committed, "accuracy": 0.88, "roc_auc": 0.5}, tolerances) == []
    problems = compare_within(LABEL, committed, {**committed, "accuracy": 0.9, "n": 88}, tolerances)
    assert problems == [f"{LABEL} [accuracy]: committed 0.85, reproduced 0.9, more than the tolerance 0.04 "
                        f"(4 seed SDs) apart",
                        f"{LABEL} [n]: committed 87, reproduced 88, more than the tolerance 0 (4 seed SDs) apart"]


@pytest.fixture
def metrics(tmp_path) -> Path:
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    return tmp_path / "metrics"


def test_committed_metrics_are_what_their_predictions_give(metrics):
    assert consistency(metrics) == []


def test_an_edited_metric_disagrees_with_the_predictions(metrics):
    path = metrics / "models/densenet121/evaluate.json"
    data = json.loads(path.read_text())
    true_value = data["accuracy"]
    data["accuracy"] = round(true_value + 0.01, 6)  # inside any seed tolerance, still caught
    data["sensitivity"]["Level 2"] = 0.5
    path.write_text(json.dumps(data))
    problems = consistency(metrics)
    assert any(p.startswith(f"metrics/models/densenet121/evaluate.json [accuracy]: {data['accuracy']}, "
                            f"but test_predictions.csv gives {true_value}") for p in problems), problems
    assert any("[sensitivity.Level 2]: 0.5, but" in p for p in problems), problems
    assert len(problems) == 2


def test_mode_names_its_reasons(monkeypatch):
    monkeypatch.setattr(reproduce.sys, "version_info", (3, 12, 1))
    check_mode, reasons = mode(REPO)
    assert check_mode == "tolerance" and any("not CPython 3.11" in r for r in reasons)
    monkeypatch.setenv("COVIDNET_CPU_PIN", "off")
    assert any("COVIDNET_CPU_PIN=off" in r for r in mode(REPO)[1])


def test_committed_comparisons_are_what_the_predictions_give_and_an_edit_is_caught(tmp_path):
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    assert reproduce.comparisons_consistency(tmp_path) == []
    path = tmp_path / "metrics" / "comparisons.json"
    data = json.loads(path.read_text())
    original = data["differences"]["resnet50"]["accuracy"]["high"]
    data["differences"]["resnet50"]["accuracy"]["high"] = 0.5 if original != 0.5 else 0.25
    path.write_text(json.dumps(data))
    # The recomputation gives back the value the pipeline wrote.
    assert reproduce.comparisons_consistency(tmp_path) == [
        f"metrics/comparisons.json [differences.resnet50.accuracy.high]: committed "
        f"{data['differences']['resnet50']['accuracy']['high']}, reproduced {original}"]


@pytest.mark.slow  # three models' bootstraps, twice: about 15 s here
def test_committed_explain_scores_are_what_the_per_image_table_gives_and_an_edit_is_caught(tmp_path):
    if not (REPO / "metrics/explain").is_dir():
        pytest.skip("no committed explain metrics")
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    assert reproduce.explain_consistency(tmp_path) == []
    path = tmp_path / "metrics/explain/covidnet_cxr_s/explain.json"
    data = json.loads(path.read_text())
    original = data["localisation"]["all"]["mass_inside"]["gradcam"]["mean"]
    data["localisation"]["all"]["mass_inside"]["gradcam"]["mean"] = 0.9
    path.write_text(json.dumps(data))
    assert reproduce.explain_consistency(tmp_path) == [
        f"metrics/explain/covidnet_cxr_s/explain.json localisation [all.mass_inside.gradcam.mean]: "
        f"committed 0.9, reproduced {original}"]
    data["localisation"]["all"]["mass_inside"]["gradcam"]["mean"] = original
    effect = data["sanity_checks"]["disease_effect"]["margin_drop"]["Level 2"]
    original_effect, effect["low"] = effect["low"], -1.0
    path.write_text(json.dumps(data))
    assert reproduce.explain_consistency(tmp_path) == [
        f"metrics/explain/covidnet_cxr_s/explain.json sanity_checks [disease_effect.margin_drop.Level 2.low]: "
        f"committed -1.0, reproduced {original_effect}"]


def test_explain_and_export_metrics_are_held_to_the_training_tolerance():
    assert reproduce._model_output("metrics/explain/resnet50/explain.json")
    assert reproduce._model_output("metrics/export/resnet50.json")
    assert not reproduce._model_output("metrics/cohort.json")
