"""The paper's settings stay one switch away and cannot rot: every model of the zoo, built as
``preset: paper`` builds it (480 x 480, full width, its dense head), takes one training step on two
images with the pipeline's optimiser and schedule, and predicts probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from stages.models import build_model, model_params
from stages.training.fit import compile_for_training
from tests.test_params import REPO_PARAMS, paper_params

MODELS = sorted(yaml.safe_load(REPO_PARAMS.read_text())["models"])


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_paper_sized_model_trains_one_step(name, tmp_path):
    params = paper_params(tmp_path)
    architecture = model_params(params, name)
    assert architecture["input_size"] == 480
    model = build_model(architecture, n_classes=2, head="severity")
    cfg = params["finetune"]
    compile_for_training(model, float(cfg["learning_rate"]), total_steps=int(cfg["epochs"]),
                         warmup_fraction=float(cfg.get("warmup_fraction", 0.0)))
    images = np.random.default_rng(0).uniform(0, 255, (2, 480, 480, 3)).astype(np.float32)
    before = model.trainable_weights[0].numpy().copy()
    logs = model.train_on_batch(images, np.array([0, 1]), return_dict=True)
    assert np.isfinite(logs["loss"])
    assert not np.array_equal(before, model.trainable_weights[0].numpy())  # the step moved the weights
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
