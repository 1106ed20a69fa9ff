"""Benchmark: which feature map Grad-CAM should explain, chosen on the validation split.

    python benchmarks/gradcam_layers.py        # after dvc repro; writes metrics/bench_gradcam_layers.json

For each model, every candidate the registry lists (``ModelSpec.gradcam_candidates``: the last
output of each stage with at least a 2 x 2 map at the embedded input) is scored as stage
``explain`` scores its layer (:mod:`stages.explanation.localisation`: share of heatmap mass inside
the phantom's opacified zones, pointing game, each beside random maps on the same grid), on every
**validation** image of the embedded cohort. The rule (ours): the candidate whose worse level has
the larger mass-inside gain over random. The registry's ``gradcam_layer`` is set to it by hand,
and ``explain`` then scores that layer on the **test** split, which played no part in the choice.
Synthetic phantoms, not patients.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import stages  # noqa: E402,F401  (pins the CPU code paths before numpy loads: the truth is redrawn)
import numpy as np  # noqa: E402

from stages.common.io import read_table, write_json  # noqa: E402
from stages.common.params import load_params  # noqa: E402
from stages.common.progress import progress  # noqa: E402
from stages.models import MODELS, load_model, model_params  # noqa: E402

SPLIT = "val"
RANDOM_MAPS = 50


def score_candidates(params: dict, model_name: str, root: Path) -> dict:
    import keras
    import tensorflow as tf

    from stages.explanation.gradcam import level2_logit_margin, upsample
    from stages.explanation.localisation import SCORES, random_scores, scores
    from stages.explanation.truth import PhantomTruth, inside
    from stages.model_input import Preprocessing
    from stages.tasks import SEVERITY, level_targets
    from stages.training.data import evaluation_dataset
    from stages.training.setup import make_deterministic

    make_deterministic(int(params["train"]["seed"]))
    split = read_table(root / "data/tables/split.csv")
    images = read_table(root / "data/tables/severity_images.csv")[["image_id", "raw_path"]]
    sample = (split[split.split == SPLIT].merge(images, on="image_id", how="left")
              .sort_values("image_id").reset_index(drop=True))
    architecture = model_params(params, model_name)
    size = int(architecture["input_size"])
    model = load_model(architecture, len(SEVERITY.class_names), SEVERITY.head,
                       root / "models" / model_name / "finetune.weights.h5")
    targets = level_targets(sample.airspace_level)
    inputs = next(iter(evaluation_dataset(root / "data/images", list(sample.image_path), targets, len(sample),
                                          image_size=size)))[0]
    truth = PhantomTruth(root / "data/raw", params["synthetic"], Preprocessing.from_params(params["ingest"]))
    masks = [inside(truth.zones_mask(row.raw_path, row.image_id)[0], size) for row in sample.itertuples()]
    candidates = list(MODELS[model_name].gradcam_candidates)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in candidates]
                        + [model.get_layer(f"{SEVERITY.head}_dense").output])
    with tf.GradientTape() as tape:
        *features, dense = probe(inputs, training=False)
        margin, _ = level2_logit_margin(dense, model.get_layer(f"{SEVERITY.head}_output"))
    gradients = tape.gradient(margin, features)
    result = {}
    for name, feature, gradient in zip(candidates, features, gradients):
        cams = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(gradient, axis=(1, 2), keepdims=True) * feature, -1)).numpy()
        grid = cams.shape[1:]
        per_level = {}
        for level in (1, 2):
            rows = [i for i in range(len(sample)) if targets[i] + 1 == level]
            got = [scores(upsample(cams[i], size), masks[i]) for i in rows]
            drawn = [random_scores(grid, masks[i], RANDOM_MAPS, np.random.default_rng([0, i])) for i in rows]
            per_level[f"Level {level}"] = {"images": len(rows), **{
                score: {"gradcam": round(float(np.mean([g[score] for g in got])), 4),
                        "random": round(float(np.mean([d[score] for d in drawn])), 4)} for score in SCORES}}
        gain = min(v["mass_inside"]["gradcam"] - v["mass_inside"]["random"] for v in per_level.values())
        result[name] = {"grid": list(grid), "worse_level_mass_inside_gain": round(gain, 4), **per_level}
    chosen = max(result, key=lambda name: result[name]["worse_level_mass_inside_gain"])
    return {"candidates": result, "chosen": chosen, "registry_layer": MODELS[model_name].gradcam_layer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_gradcam_layers.json"))
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    if params["data"]["source"] != "synthetic":
        raise SystemExit("gradcam_layers: needs the embedded synthetic cohort (the phantom's planted zones)")
    models = {}
    for name in progress(sorted(MODELS), desc="gradcam layers", unit="model"):
        models[name] = score_candidates(params, name, root)
        print(f"gradcam_layers: {name}: chosen {models[name]['chosen']} (registry {models[name]['registry_layer']})")
    write_json(args.out, {
        "what": ("Grad-CAM candidate layers scored on every validation image (synthetic phantoms, not patients); "
                 "rule: the largest worse-level gain of mass inside the opacified zones over random maps"),
        "split": SPLIT, "random_maps_per_image": RANDOM_MAPS, "data_source": "synthetic", "models": models})


if __name__ == "__main__":
    main()
