"""The model registry is the one place a model is declared; these tests name what else it needs."""

import json
from pathlib import Path

import pytest
import yaml

from stages import models as zoo
from stages.common.params import load_params
from stages.reference import paper
from stages.report import render
from tests.test_report import _evaluation, _write

ROOT = Path(__file__).resolve().parents[1]


def _params_models() -> list[str]:
    return sorted(load_params(ROOT / "params.yaml")["models"])


def test_every_model_in_params_is_registered():
    missing = [m for m in _params_models() if m not in zoo.MODELS]
    assert not missing, f"params.yaml models without a ModelSpec in stages/models/__init__.py MODELS: {missing}"


def test_every_per_model_plot_in_dvc_yaml_names_every_model():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    problems = []
    for plot in plots:
        (title, spec), = plot.items()
        files = list((spec.get("y") or {}).keys())
        if not any(f.startswith("metrics/models/") for f in files):
            continue
        # The file this plot reads for one model, with the model's name as a placeholder.
        shapes = sorted({"/".join(["metrics/models/{model}"] + f.split("/")[3:]) for f in files})
        for shape in shapes:
            for model in _params_models():
                if shape.format(model=model) not in files:
                    problems.append(f"dvc.yaml plots '{title}': add y: {shape.format(model=model)}")
    assert not problems, "\n".join(problems)


def test_paper_rows_and_parameter_bases_agree():
    table2 = paper()["table2"]
    for name, spec in zoo.MODELS.items():
        if name in table2:
            assert spec.paper_parameter_basis in zoo.PARAMETER_BASES, \
                f"{name}: the paper's Table 2 has a row for it; set paper_parameter_basis in its ModelSpec " \
                f"to one of {sorted(zoo.PARAMETER_BASES)}"
        else:
            assert spec.paper_parameter_basis is None, f"{name}: no Table 2 row in paper.yaml to compare with"


def test_labels_are_unique_and_order_follows_the_registry():
    labels = [spec.label for spec in zoo.MODELS.values()]
    assert len(set(labels)) == len(labels)
    assert zoo.ordered(["covidnet_cxr_s", "zzz_new", "densenet121", "aaa_new"]) == \
        ["densenet121", "covidnet_cxr_s", "aaa_new", "zzz_new"]
    assert zoo.label("not_registered") == "not_registered"


def test_densenet121_is_not_called_chexnet_except_for_the_papers_row():
    """Issue 16: ours is DenseNet-121 trained here from random weights; "CheXNet" is the paper's row."""
    assert zoo.label("densenet121") == "DenseNet-121 (CheXNet architecture, trained here)"
    assert zoo.paper_label("densenet121") == "CheXNet"
    assert zoo.short_label("densenet121") == "DenseNet-121"
    for name in ("resnet50", "covidnet_cxr_s"):
        assert zoo.label(name) == zoo.paper_label(name) == zoo.short_label(name)
    assert zoo.paper_label("not_registered") == zoo.short_label("not_registered") == "not_registered"


def test_unknown_model_and_width_on_a_fixed_width_model_are_clear_errors():
    with pytest.raises(SystemExit, match="model name must be one of"):
        zoo.build_model({"name": "vgg16", "input_size": 32, "dense_units": 8}, n_classes=2, head="x")
    with pytest.raises(SystemExit, match="resnet50: has no width multiplier"):
        zoo.build_model({"name": "resnet50", "input_size": 32, "dense_units": 8, "width": 0.5}, n_classes=2, head="x")


def test_a_model_the_paper_has_no_row_for_shows_a_dash(tmp_path):
    """A fourth model (not registered, not in the paper): the report fills the paper's columns with "-"."""
    root = tmp_path / "metrics"
    _write(root / "cohort.json", {"images": 40, "patients": 20, "level1": {"images": 15, "patients": 9},
                                  "level2": {"images": 25, "patients": 14}})
    _write(root / "complexity.json", {
        "input_shape": [480, 480, 3], "tensorflow": "2.x", "flops_counted_by": "profiler",
        "models": {"newnet": {"flops": 4_000_000_000, "gflops": 4.0,
                              "parameters": {"total": 5_300_000, "backbone": 5_000_000, "head": 300_000}}}})
    _write(root / "models" / "newnet" / "evaluate.json", _evaluation("newnet", 5, 1, 2, 12))
    _write(root / "models" / "newnet" / "pretrain.json", {"train_images": 30, "epochs": 1,
                                                           "test": {"accuracy": 0.9, "n": 10}})
    _write(root / "models" / "newnet" / "finetune.json", {
        "input_size": 32, "parameters": 5_300_000, "train_images": 12, "val_images": 4, "transferred_layers": 7,
        "selected_epoch": 1, "epochs": 2, "selected_by": "val_accuracy", "selected": {"val_accuracy": 0.75}})
    text = render(root, tmp_path / "reports", {"newnet": {}})
    assert "| newnet | 5.30 | - | - | 4.00 | - | - |" in text
    assert "| newnet | paper | - | - | - | - | - |" in text
    json.loads((root / "complexity.json").read_text())  # inputs untouched
