"""The evaluate stage's wiring, with the network replaced by scripted probabilities (issue 20):
it reads the test split and only the test split, scores P(Level 2) against Level 2, and its
calibration error, AUC and predictions are the hand values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stages.models
import stages.training.data
import stages.training.fit
from stages import evaluate
from stages.common.params import load_params

ROOT = Path(__file__).resolve().parents[1]

# Six test images of four patients; column 1 of each row is the network's P(Level 2).
TEST = pd.DataFrame({"image_id": ["t1", "t2", "t3", "t4", "t5", "t6"],
                     "patient_id": ["A", "A", "B", "C", "D", "D"],
                     "airspace_level": [1, 1, 2, 2, 2, 1]})
LEVEL2 = np.array([0.05, 0.15, 0.95, 0.85, 0.55, 0.12])


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    tables = tmp_path / "tables"
    tables.mkdir()
    others = pd.DataFrame({"image_id": ["r1", "r2", "v1"], "patient_id": ["X", "Y", "Z"],
                           "airspace_level": [1, 2, 2], "split": ["train", "train", "val"]})
    table = pd.concat([TEST.assign(split="test"), others], ignore_index=True)
    table["image_path"] = "severity/" + table.image_id + ".png"
    table.sample(frac=1, random_state=1).to_csv(tables / "split.csv", index=False)  # order must not matter
    requested: list[list[str]] = []

    def dataset(root, paths, labels, batch_size, image_size=None):
        requested.append(list(paths))
        return list(zip(paths, labels))

    monkeypatch.setattr(stages.models, "load_model", lambda *args, **kwargs: "model")
    monkeypatch.setattr(stages.training.data, "evaluation_dataset", dataset)
    by_image = dict(zip(TEST.image_id, LEVEL2))
    monkeypatch.setattr(stages.training.fit, "predict_proba", lambda model, data: np.array(
        [[1 - by_image[Path(p).stem], by_image[Path(p).stem]] for p, _ in data]))
    params = load_params(ROOT / "params.yaml")
    params["evaluate"] = {"bootstrap_resamples": 50, "ci_level": 0.95, "calibration_bins": 10}
    paths = evaluate.Paths.for_model("covidnet_cxr_s", tables=tables, images=tmp_path / "images",
                                     weights=tmp_path / "w.h5", metrics=tmp_path / "out" / "evaluate.json",
                                     predictions=tmp_path / "out" / "test_predictions.csv")
    return params, paths, requested


def test_evaluate_scores_level_2_probabilities_on_the_test_split_only(scripted):
    params, paths, requested = scripted
    metrics = evaluate.run(params, "covidnet_cxr_s", paths)
    # Only the six test images are read (the train and val rows are never requested).
    assert len(requested) == 1 and sorted(requested[0]) == sorted("severity/" + TEST.image_id + ".png")
    assert metrics["n"] == 6 and metrics["patients"] == 4 and metrics["split"] == "test"
    # Predicted Level 2 where P(Level 2) > 0.5: t3, t4, t5 -> all of the Level 2 images, none of Level 1.
    assert metrics["accuracy"] == 1.0 and metrics["sensitivity"] == {"Level 1": 1.0, "Level 2": 1.0}
    assert metrics["confusion_matrix"]["matrix"] == {"Level 1": {"Level 1": 3, "Level 2": 0},
                                                     "Level 2": {"Level 1": 0, "Level 2": 3}}
    # AUC with Level 2 positive: every Level 2 score (0.95, 0.85, 0.55) beats every Level 1 score.
    assert metrics["roc_auc"] == 1.0
    # Calibration of P(Level 2), 10 bins, by hand: bin 0 {0.05: L1}, bin 1 {0.15: L1, 0.12: L1},
    # bin 5 {0.55: L2}, bin 8 {0.85: L2}, bin 9 {0.95: L2}; gaps 0.05, 0.135 (x2), 0.45, 0.15, 0.05.
    ece = (0.05 + 2 * 0.135 + 0.45 + 0.15 + 0.05) / 6
    assert metrics["expected_calibration_error"] == pytest.approx(ece, abs=1e-6)
    assert metrics["majority_class_rate"] == 0.5
    assert metrics["confidence_intervals"]["resamples"] == 50 and metrics["confidence_intervals"]["patients"] == 4
    assert json.loads(paths.metrics.read_text()) == json.loads(json.dumps(metrics))

    predictions = pd.read_csv(paths.predictions).set_index("image_id")
    assert predictions.loc["t5"].to_dict() == {"data_source": params["data"]["source"], "patient_id": "D",
                                               "actual": "Level 2", "predicted": "Level 2",
                                               "probability_level2": 0.55}
    assert set(predictions.index) == set(TEST.image_id)
    calibration = pd.read_csv(paths.predictions.parent / "calibration.csv")
    assert calibration.bin.tolist() == [0, 1, 5, 8, 9] and calibration.n.tolist() == [1, 2, 1, 1, 1]
    assert (paths.predictions.parent / "roc.csv").is_file() and (paths.predictions.parent / "pr.csv").is_file()


def test_evaluate_refuses_an_empty_test_split(scripted):
    params, paths, _ = scripted
    table = pd.read_csv(paths.tables / "split.csv")
    table[table.split != "test"].to_csv(paths.tables / "split.csv", index=False)
    with pytest.raises(SystemExit, match="evaluate: the test split is empty"):
        evaluate.run(params, "covidnet_cxr_s", paths)
