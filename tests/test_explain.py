"""Stage ``explain`` end to end on a tiny phantom cohort, with a random-weight CXR-S (no training)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages import explain, ingest, schema
from stages.models import build_model, model_params, save_weights
from stages.sources import phantom
from tests.test_phantom import TINY_CONFIG

SYNTHETIC = {**TINY_CONFIG, "n_corrupt_files": 0, "crop_box_fraction": 0.3, "n_patients": 10}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    raw, images, tables = root / "raw", root / "images", root / "tables"
    phantom.generate(raw, SYNTHETIC)
    params = {"data": {"source": "synthetic"}, "synthetic": SYNTHETIC, "train": {"seed": 1},
              "ingest": {"image_size": 48, "crop_top_fraction": 0.08, "square": "center_crop",
                         "max_reject_fraction": 0.5},
              "model_defaults": {"input_size": 32, "width": 0.125, "dense_units": 8},
              "models": {"covidnet_cxr_s": {}}, "evaluate": {"bootstrap_resamples": 50, "ci_level": 0.95},
              "explain": {"images_per_level": 4, "random_maps": 10, "figure_images": 4}}
    ingest.run(raw, images, tables, params, workers=1)
    severity = pd.read_csv(tables / "severity_images.csv", dtype=str)
    truth = pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv", dtype=str)
    levels = dict(zip(truth.raw_path, truth.n_zones.astype(int).map(lambda n: 2 if n >= 3 else 1)))
    pd.DataFrame({"image_id": severity.image_id, "patient_id": severity.patient_id, "split": "test",
                  "airspace_level": severity.raw_path.map(levels), "image_path": severity.image_path}
                 ).to_csv(tables / "split.csv", index=False)
    model = build_model(model_params(params, "covidnet_cxr_s"), 2, "severity")
    rng = np.random.default_rng(0)
    model.set_weights([np.abs(rng.normal(1.0, 0.3, w.shape)).astype("float32") if "variance" in v.path
                       else rng.normal(0, 0.3, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])
    save_weights(model, root / "finetune.weights.h5")
    return root, params


def _paths(root, name):
    return explain.Paths.for_model("covidnet_cxr_s", root / "tables", root / "images", root / "raw",
                                   root / "finetune.weights.h5", root / name / "explain.json", root / name / "figures")


def test_explain_scores_heatmaps_against_the_planted_zones(workspace):
    root, params = workspace
    metrics = explain.run(params, "covidnet_cxr_s", _paths(root, "a"))
    written = json.loads((root / "a/explain.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert "not on patients" in written["scope"] and written["data_source"] == "synthetic"
    assert written["layer"] == "stage2_pepx4_out" and written["heatmap_grid"] == [4, 4]
    table = pd.read_csv(root / "a/explain_images.csv")
    assert len(table) == written["images"] == 8 and set(table.level) == {"Level 1", "Level 2"}
    assert table.mass_inside.between(0, 1).all() and set(table.pointing_hit) <= {0.0, 1.0}
    assert (table.data_source == "synthetic").all()
    for group in ("all", "Level 1", "Level 2"):
        entry = written["localisation"][group]
        for score in ("mass_inside", "pointing_hit"):
            gradcam = entry[score]["gradcam"]
            assert gradcam["low"] <= gradcam["mean"] <= gradcam["high"]
            assert entry[score]["difference"]["mean"] == pytest.approx(
                entry[score]["gradcam"]["mean"] - entry[score]["random"]["mean"], abs=2e-6)
    assert written["localisation"]["all"]["images"] == 8
    # Sanity checks: the margin is the explained score, the disease effect its fall without the opacities.
    assert np.allclose(table.disease_effect, table.margin - table.healthy_margin, atol=2e-6)
    assert table.randomised_rank_correlation.dropna().between(-1, 1).all()
    checks = written["sanity_checks"]
    for group in ("all", "Level 1", "Level 2"):
        effect = checks["disease_effect"]["margin_drop"][group]
        rows = table if group == "all" else table[table.level == group]
        assert effect["mean"] == pytest.approx(rows.disease_effect.mean(), abs=2e-6)
        assert effect["low"] <= effect["mean"] <= effect["high"] and effect["images"] == len(rows)
        correlation = checks["randomised_weights"]["rank_correlation"][group]
        assert correlation["images"] == rows.randomised_rank_correlation.notna().sum()
    assert written["sanity_checks"] == json.loads(json.dumps(explain.sanity_checks(table, params)))
    assert (root / "a/figures/gradcam.png").stat().st_size > 0
    # Deterministic: a second run writes the same bytes.
    explain.run(params, "covidnet_cxr_s", _paths(root, "b"))
    for name in ("explain.json", "explain_images.csv", "figures/gradcam.png"):
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name


def test_real_data_is_drawn_but_not_scored(workspace):
    root, params = workspace
    metrics = explain.run({**params, "data": {"source": "ricord"}}, "covidnet_cxr_s", _paths(root, "c"))
    assert metrics["localisation"] is None and "no planted truth" in metrics["reason"]
    # No truth, no disease effect; the weight-randomisation check needs none.
    assert set(metrics["sanity_checks"]) == {"randomised_weights"}
    assert "disease_effect" not in pd.read_csv(root / "c/explain_images.csv")
    assert (root / "c/figures/gradcam.png").is_file()
    assert "mass_inside" not in pd.read_csv(root / "c/explain_images.csv").columns


def test_sample_is_stratified_and_fixed_by_the_seed(workspace):
    root, _ = workspace
    first = explain.sample_test_images(root / "tables", 3, seed=5)
    assert first.equals(explain.sample_test_images(root / "tables", 3, seed=5))
    assert first.airspace_level.value_counts().to_dict() == {1: 3, 2: 3}
    assert list(first.image_id) == sorted(first.image_id)
