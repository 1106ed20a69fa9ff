"""Grad-CAM, its localisation scores and the phantom truth they are scored against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.explanation.gradcam import GradCam, upsample
from stages.explanation.localisation import random_scores, scores, summarise


def _tiny_model():
    import keras

    inputs = keras.Input((8, 8, 3), name="image")
    features = keras.layers.Conv2D(4, 1, activation="relu", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="severity_pool")(features)
    dense = keras.layers.Dense(5, activation="relu", name="severity_dense")(pooled)
    outputs = keras.layers.Dense(2, activation="softmax", name="severity_output")(dense)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_gradcam_equals_the_hand_derived_gradient():
    """Oracle in numpy: A = relu(x Wc + bc); score = z2 - z1 of the head; dscore/dA is the same at every
    pixel, (1/64) sum_u (W2[u,1] - W2[u,0]) [h_u > 0] W1[c,u]; CAM = relu(sum_c alpha_c A_c)."""
    model = _tiny_model()
    x = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    wc, bc, w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    features = np.maximum(x @ wc + bc, 0)
    hidden = np.maximum(features.mean(axis=(1, 2)) @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    alpha = ((hidden > 0) * (w2[:, 1] - w2[:, 0])) @ w1.T / 64.0  # (batch, channels)
    expected = np.maximum(np.einsum("bijc,bc->bij", features, alpha), 0)
    probabilities, cams = GradCam(model, "features", "severity")(x)
    np.testing.assert_allclose(cams, expected, rtol=1e-4, atol=1e-5)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, softmax, rtol=1e-5)
    np.testing.assert_allclose(probabilities, model(x).numpy(), rtol=1e-5)


def test_margins_are_the_hand_computed_logit_differences():
    model = _tiny_model()
    x = np.random.default_rng(2).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    wc, bc, w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    hidden = np.maximum(np.maximum(x @ wc + bc, 0).mean(axis=(1, 2)) @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    np.testing.assert_allclose(GradCam(model, "features", "severity").margins(x), logits[:, 1] - logits[:, 0],
                               rtol=1e-5, atol=1e-5)


def test_gradcam_names_a_missing_layer():
    with pytest.raises(SystemExit, match="no layer 'stage9'"):
        GradCam(_tiny_model(), "stage9", "severity")


def test_registry_layers_exist_are_candidates_and_keep_a_spatial_map_at_32_px():
    from stages.models import MODELS, build_model

    for name, spec in MODELS.items():
        model = build_model({"name": name, "input_size": 32, "width": 1.0, "dense_units": 8}, 2, "severity")
        assert spec.gradcam_layer in spec.gradcam_candidates, name
        for layer in spec.gradcam_candidates:
            height, width = model.get_layer(layer).output.shape[1:3]
            assert height == width >= 2, (name, layer)


def test_registry_layer_is_the_validation_choice_of_the_committed_benchmark():
    """metrics/bench_gradcam_layers.json picks a layer per model on the validation split; the
    registry must name that layer (re-run the benchmark and update the registry together)."""
    import json

    from stages.models import MODELS

    path = Path(__file__).resolve().parents[1] / "metrics" / "bench_gradcam_layers.json"
    chosen = {name: entry["chosen"] for name, entry in json.loads(path.read_text())["models"].items()}
    assert chosen == {name: spec.gradcam_layer for name, spec in MODELS.items()}


def test_scores_by_hand():
    inside = np.zeros((4, 4), bool)
    inside[:2, :2] = True
    heatmap = np.zeros((4, 4))
    heatmap[0, 0], heatmap[3, 3] = 3.0, 1.0
    assert scores(heatmap, inside) == {"mass_inside": 0.75, "pointing_hit": 1.0}
    heatmap[3, 3] = 5.0
    assert scores(heatmap, inside) == {"mass_inside": 3 / 8, "pointing_hit": 0.0}
    assert scores(np.zeros((4, 4)), inside) == {"mass_inside": 0.0, "pointing_hit": 0.0}


def test_random_maps_score_about_the_mask_area():
    inside = np.zeros((32, 32), bool)
    inside[:, :8] = True  # a quarter of the image
    drawn = random_scores((4, 4), inside, 400, np.random.default_rng(0))
    assert drawn["mass_inside"] == pytest.approx(0.25, abs=0.02)
    assert drawn["pointing_hit"] == pytest.approx(0.25, abs=0.06)


def test_upsample_keeps_a_constant_map_constant():
    np.testing.assert_allclose(upsample(np.full((4, 4), 2.0, np.float32), 32), 2.0)


def test_summary_means_intervals_and_the_paired_difference():
    patients = ["a", "a", "b", "c"]
    gradcam = {"mass_inside": [0.6, 0.8, 0.5, 0.7], "pointing_hit": [1, 1, 0, 1]}
    random = {"mass_inside": [0.2, 0.2, 0.3, 0.3], "pointing_hit": [0.25, 0.25, 0.3, 0.3]}
    result = summarise(gradcam, random, patients, resamples=200, level=0.95, seed=0)
    mass = result["mass_inside"]
    assert mass["gradcam"]["mean"] == pytest.approx(0.65) and mass["random"]["mean"] == pytest.approx(0.25)
    assert mass["difference"]["mean"] == pytest.approx(0.4)
    assert mass["difference"]["low"] > 0 and mass["above_random"] is True
    assert result["pointing_hit"]["gradcam"]["low"] <= 0.75 <= result["pointing_hit"]["gradcam"]["high"]
    assert (result["patients"], result["images"]) == (3, 4)
    worse = summarise(random, gradcam, patients, resamples=200, level=0.95, seed=0)
    assert worse["mass_inside"]["above_random"] is False


@pytest.fixture(scope="module")
def phantom_raw(tmp_path_factory):
    from stages.sources import phantom
    from tests.test_phantom import TINY_CONFIG

    config = {**TINY_CONFIG, "n_corrupt_files": 0, "crop_box_fraction": 0.5}
    raw = tmp_path_factory.mktemp("raw") / "raw"
    phantom.generate(raw, config)
    return raw, config


def test_derived_zone_masks_cover_the_drawn_opacity(phantom_raw):
    """Oracle: the same image drawn again with no zones (same random streams) differs from the file's
    image only by the planted opacity; that difference must lie inside the derived zone masks, after
    the same preprocessing (crop box included)."""
    import pandas as pd

    from stages import schema
    from stages.explanation.truth import PhantomTruth, plan_by_path, redraw_with_zones
    from stages.model_input import Preprocessing
    from stages.sources.covidnet_files import ricord_image_id
    from stages.sources.phantom.anatomy import sample_acquisition
    from stages.sources.phantom.ids import STREAM_IMAGE, STREAM_STUDY
    from stages.sources.phantom.render import render_image

    raw, config = phantom_raw
    settings = Preprocessing(64, 0.08, "center_crop")
    truth = PhantomTruth(raw, config, settings)
    plan = plan_by_path(config)
    table = pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv", dtype=str)
    boxed = 0
    for row in table.itertuples():
        planned = plan[row.raw_path]
        image = planned.image
        index = sorted(i.raw_path for i in planned.study.images).index(row.raw_path)
        image_id = ricord_image_id(image.patient_id, image.study_uid, index)
        boxed += image_id in truth.boxes
        mask, zones = truth.zones_mask(row.raw_path, image_id)
        assert ";".join(map(str, zones)) == row.opacity_zones
        with_zones, _ = redraw_with_zones(config["seed"], planned)
        rng = np.random.default_rng([config["seed"], STREAM_IMAGE, image.patient_index, image.study_index,
                                     image.image_index])
        acquisition, texture, noise = rng.spawn(3)
        opacity = np.random.default_rng([config["seed"], STREAM_STUDY, image.patient_index, image.study_index, 1])
        without, _ = render_image(planned.patient.anatomy, sample_acquisition(acquisition), (), opacity, texture,
                                  noise, image.rows, image.columns, ("R", "x", "2020-01-01", "CHEST"))
        # The opacity is drawn times the soft zone mask: visible opacity (> 0.04 of full scale) lies where
        # the mask is above 0.1, strong opacity (> 0.16) where it is at least 0.5 ("inside"), up to the tone
        # curve (a power law) that bends the difference a little. A mirrored mask or a missed crop box
        # scores 0.6-0.87 here.
        drawn = settings.apply(np.clip(with_zones - without, 0, 1) * 4, truth.boxes.get(image_id))
        assert (drawn > 40).sum() > 20, "the planted opacity should be visible"
        assert (mask[drawn > 40] > 0.1).mean() > 0.99 and (mask[drawn > 160] >= 0.5).mean() > 0.98
    assert boxed > 0  # crop boxes were exercised


def test_other_params_than_the_files_were_drawn_with_are_refused(phantom_raw):
    from stages.explanation.truth import PhantomTruth, TruthMismatch
    from stages.model_input import Preprocessing

    raw, config = phantom_raw
    truth = PhantomTruth(raw, config, Preprocessing(64, 0.08, "center_crop"))
    first = next(iter(truth.plan))
    truth.zones_mask(first, "any")
    wrong = PhantomTruth(raw, {**config, "reader_zone_noise": 0.0}, Preprocessing(64, 0.08, "center_crop"))
    wrong.seed += 1  # as if another seed had drawn the files
    with pytest.raises(TruthMismatch, match="cannot be derived"):
        wrong.zones_mask(first, "any")


def test_counterfactual_with_the_own_zones_is_the_stored_image_and_without_them_only_the_zones_change(phantom_raw):
    """Oracle for the own zones: ingest's own decoding of the file on disk (stages.model_input.prepare).
    Without the zones: darker inside them (the opacity is light), the same (within the soft masks' 1/255
    tails) where every zone mask is below 0.01."""
    import pandas as pd

    from stages import schema
    from stages.explanation.truth import PhantomTruth, plan_by_path
    from stages.model_input import Preprocessing, prepare
    from stages.sources.covidnet_files import ricord_image_id

    raw, config = phantom_raw
    truth = PhantomTruth(raw, config, Preprocessing(64, 0.08, "center_crop"))
    plan = plan_by_path(config)
    table = pd.read_csv(raw / schema.SYNTHETIC_TRUTH_DIR / "ricord_images.csv", dtype=str)
    checked = 0
    for row in table.itertuples():
        planned = plan[row.raw_path]
        index = sorted(i.raw_path for i in planned.study.images).index(row.raw_path)
        image_id = ricord_image_id(planned.image.patient_id, planned.image.study_uid, index)
        _, stored = prepare(raw / row.raw_path, truth.settings, truth.boxes.get(image_id))
        own = truth.stored_with_zones(row.raw_path, image_id, tuple(planned.study.zones))
        assert own.dtype == stored.dtype and np.array_equal(own, stored), row.raw_path
        if not planned.study.zones:
            continue
        healthy = truth.stored_with_zones(row.raw_path, image_id)
        mask, _ = truth.zones_mask(row.raw_path, image_id)
        change = healthy.astype(int) - stored.astype(int)
        assert change[mask >= 0.5].mean() < -10, row.raw_path
        assert np.abs(change[mask < 0.01]).max() <= 1, row.raw_path
        checked += 1
    assert checked > 3
