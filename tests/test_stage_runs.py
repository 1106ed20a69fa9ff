"""Smoke runs of the training stages' ``run`` functions on a tiny made-up cohort (fast tier).

Each stage's ``main`` only parses arguments and calls ``run(params, model, paths)``; these tests
call ``run`` directly: pretrain -> finetune -> evaluate for one small model, one epoch each, on
random 32 px images, and check what each writes (not how well it learns: random images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import evaluate, finetune, pretrain
from stages.common.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def _tiny_params() -> dict:
    params = load_params(ROOT / "params.yaml")
    params["model_defaults"] = {**params.get("model_defaults", {}), "input_size": 32, "dense_units": 8}
    params["models"] = {"covidnet_cxr_s": {"width": 0.125}}
    params["pretrain"].update({"epochs": 1, "batch_size": 4})
    params["finetune"].update({"epochs": 1, "batch_size": 4})
    params["evaluate"] = {**(params.get("evaluate") or {}), "bootstrap_resamples": 20}
    return params


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    rows = []
    for i in range(24):
        name = f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(images / name)
        rows.append(name)
    tables = root / "tables"
    tables.mkdir()
    pd.DataFrame({"image_path": rows[:16], "label": ["negative", "positive"] * 8,
                  "list": ["train"] * 12 + ["test"] * 4}).to_csv(tables / "pretrain_audited.csv", index=False)
    pd.DataFrame({"image_id": [r[:-4] for r in rows], "image_path": rows,
                  "patient_id": [f"p{i // 2}" for i in range(24)], "airspace_level": [1, 2] * 12,
                  "split": ["train"] * 12 + ["val"] * 4 + ["test"] * 8}).to_csv(tables / "split.csv", index=False)
    return root


def test_pretrain_finetune_evaluate_run_and_write_their_outputs(cohort):
    """Only evaluate may read the test split: pretrain and finetune run with the test images
    moved away (a read of one would fail naming it); evaluate needs them back."""
    params, model = _tiny_params(), "covidnet_cxr_s"
    out = cohort / "out"
    split_table = pd.read_csv(cohort / "tables" / "split.csv")
    test_images = [cohort / "images" / p for p in split_table[split_table.split == "test"].image_path]
    hidden = cohort / "hidden"
    hidden.mkdir()
    for path in test_images:
        path.rename(hidden / path.name)
    trained = pretrain.run(params, model, pretrain.Paths.for_model(
        model, cohort=cohort / "tables" / "pretrain_audited.csv", images=cohort / "images",
        model_out=out / "pretrain.weights.h5", metrics=out / "pretrain.json"))
    assert trained["test"]["n"] == 4 and trained["train_images"] == 12
    assert json.loads((out / "pretrain.json").read_text()) == json.loads(json.dumps(trained))

    tuned = finetune.run(params, model, finetune.Paths.for_model(
        model, tables=cohort / "tables", images=cohort / "images", pretrained=out / "pretrain.weights.h5",
        model_out=out / "finetune.weights.h5", metrics=out / "finetune.json", live=out / "curves"))
    assert tuned["transferred_layers"] > 0 and tuned["selected_epoch"] == 1
    assert (out / "curves" / "plots" / "metrics" / "val_loss_balanced.tsv").is_file()

    evaluation_paths = evaluate.Paths.for_model(
        model, tables=cohort / "tables", images=cohort / "images", weights=out / "finetune.weights.h5",
        metrics=out / "evaluate.json", predictions=out / "test_predictions.csv")
    with pytest.raises(FileNotFoundError, match=test_images[0].name):
        evaluate.run(params, model, evaluation_paths)
    for path in test_images:
        (hidden / path.name).rename(path)
    scored = evaluate.run(params, model, evaluation_paths)
    assert scored["n"] == 8 and scored["patients"] == 4
    assert set(scored["sensitivity"]) == {"Level 1", "Level 2"}
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert len(predictions) == 8 and predictions.probability_level2.between(0, 1).all()
    assert set(predictions.data_source) == {params["data"]["source"]}
    for name in ("roc.csv", "pr.csv", "calibration.csv"):
        assert (out / name).is_file()


def test_stage_mains_default_their_paths_by_model():
    assert finetune.Paths.for_model("resnet50").pretrained == Path("models/resnet50/pretrain.weights.h5")
    assert evaluate.Paths.for_model("resnet50").predictions == Path("metrics/models/resnet50/test_predictions.csv")
    assert pretrain.Paths.for_model("resnet50").cohort == Path("data/tables/pretrain_audited.csv")
