"""Stage ``explain``: Grad-CAM heatmaps of a sample of test images, scored against the phantom's truth.

Run once per model (``explain@<model>``). ``explain.images_per_level`` test images of each level
(drawn with ``train.seed``; the same images for every model) go through the fine-tuned model and
Grad-CAM on the layer the registry names (:mod:`stages.explanation.gradcam`). With the embedded
cohort, each heatmap is scored against the opacified zones the phantom planted
(:mod:`stages.explanation.truth`, :mod:`stages.explanation.localisation`): the share of its mass
inside them and the pointing game, per level, beside random heatmaps on the same grid, with
patient-bootstrap intervals. Two sanity checks go beside them (:mod:`stages.explanation.sanity`):
the rank correlation of each map with the map of a randomly initialised copy of the network (a map
that shows what the model learned must change), and, on phantoms, how much each image's Level 2
margin falls when the same radiograph is redrawn without its opacities (does the model use the
planted disease at all?). **This checks the explanations on synthetic phantoms, not on patients**:
a map that finds drawn opacities says nothing about a radiologist's reading of a real film. Real
data (``data.source: ricord``) has no planted truth: the stage then draws the heatmaps and writes
no localisation score and no disease effect (the randomisation check needs no truth and runs).

Writes ``metrics/explain/<model>/explain.json`` (the scores), ``explain_images.csv`` beside it (one
row per image) and ``reports/explain/<model>/gradcam.png`` (``reports/figures/`` is the report
stage's output folder, which DVC does not let a second stage write into).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.cli import model_stage_arguments
from stages.common.io import read_table, write_csv, write_json
from stages.common.progress import progress
from stages.tasks import LEVEL_NAMES, SEVERITY, level_targets

RANDOMISED_WEIGHTS = ("Spearman rank correlation of each image's Grad-CAM map with the map of the same "
                      "architecture freshly initialised (seeded with train.seed), over the layer's grid: near 1, "
                      "the map shows the architecture, not what the model learned (Adebayo et al., NeurIPS 2018)")
DISEASE_EFFECT = ("explained score z2 - z1 of each image minus that of the same radiograph redrawn without its "
                  "planted opacities (same anatomy, exposure, noise, decoding and preprocessing): above 0, the "
                  "model's Level 2 evidence comes from the planted disease")
SCOPE = ("Grad-CAM checked against the opacified zones planted in the synthetic phantoms: this checks the "
         "explanation on phantoms, not on patients")


@dataclass(frozen=True)
class Paths:
    tables: Path
    images: Path
    raw: Path
    weights: Path
    metrics: Path  # explain.json; explain_images.csv goes beside it
    figures: Path

    @classmethod
    def for_model(cls, model: str, tables: Path | None = None, images: Path | None = None, raw: Path | None = None,
                  weights: Path | None = None, metrics: Path | None = None, figures: Path | None = None) -> "Paths":
        return cls(tables or Path("data/tables"), images or Path("data/images"), raw or Path("data/raw"),
                   weights or Path("models", model, "finetune.weights.h5"),
                   metrics or Path("metrics", "explain", model, "explain.json"),
                   figures or Path("reports", "explain", model))


def sample_test_images(tables: Path, per_level: int, seed: int) -> pd.DataFrame:
    """Up to ``per_level`` test images of each level, drawn without replacement, sorted by image id."""
    split = read_table(tables / "split.csv")
    images = read_table(tables / "severity_images.csv")[["image_id", "raw_path"]]
    test = split[split.split == "test"].merge(images, on="image_id", how="left").sort_values("image_id")
    if test.empty:
        raise SystemExit("explain: the test split is empty")
    rng = np.random.default_rng(seed)
    chosen = []
    for level in sorted(test.airspace_level.unique()):
        rows = test[test.airspace_level == level]
        chosen.append(rows.iloc[np.sort(rng.choice(len(rows), size=min(per_level, len(rows)), replace=False))])
    return pd.concat(chosen).sort_values("image_id", kind="stable").reset_index(drop=True)


def _groups(table: pd.DataFrame) -> dict[str, pd.Index]:
    return {group: rows for group, rows in
            {"all": table.index, **{name: table.index[table.level == name] for name in LEVEL_NAMES}}.items() if len(rows)}


def _bootstrap(params: dict) -> dict:
    """The patient bootstrap's settings: evaluate's resamples and level, seeded with train.seed."""
    evaluate = params.get("evaluate") or {}
    return {"resamples": int(evaluate.get("bootstrap_resamples", 1000)),
            "level": float(evaluate.get("ci_level", 0.95)), "seed": int(params["train"]["seed"])}


def localisation(table: pd.DataFrame, params: dict) -> dict:
    """Per group (all images, each level): the scores' summary from the per-image table
    (explain_images.csv), so the committed summary can be recomputed from the committed table."""
    from stages.explanation.localisation import SCORES, summarise

    return {group: {**summarise({name: table.loc[rows, name] for name in SCORES},
                                {name: table.loc[rows, f"random_{name}"] for name in SCORES},
                                table.loc[rows, "patient_id"], **_bootstrap(params)),
                    "empty_heatmaps": int(table.loc[rows, "empty_heatmap"].sum())}
            for group, rows in _groups(table).items()}


def sanity_checks(table: pd.DataFrame, params: dict) -> dict:
    """Per group: the weight-randomisation rank correlation and (phantoms) the disease effect, from
    the per-image table (explain_images.csv), so the committed summary can be recomputed from it."""
    from stages.explanation.sanity import summarise_mean

    groups, settings = _groups(table), _bootstrap(params)

    def summary(column: str) -> dict:
        return {group: summarise_mean(table.loc[rows, column], table.loc[rows, "patient_id"], **settings)
                for group, rows in groups.items()}

    checks = {"randomised_weights": {"what": RANDOMISED_WEIGHTS, "rank_correlation": summary("randomised_rank_correlation")}}
    if "disease_effect" in table:
        checks["disease_effect"] = {"what": DISEASE_EFFECT, "margin_drop": summary("disease_effect")}
    return checks


def healthy_inputs(truth, sample: pd.DataFrame, size: int) -> np.ndarray:
    """The network inputs of the sample's radiographs redrawn without their opacities, decoded by
    the same dataset code as the stored images (written as PNGs to a temporary folder first)."""
    import tempfile

    from PIL import Image

    from stages.training.data import evaluation_dataset

    with tempfile.TemporaryDirectory(prefix="healthy-") as folder:
        names = []
        for index, image in enumerate(progress(list(sample.itertuples()), desc="explain: healthy redraws", unit="img",
                                               leave=False)):
            names.append(f"{index:04d}.png")
            Image.fromarray(truth.stored_with_zones(image.raw_path, image.image_id)).save(Path(folder) / names[-1])
        batches = evaluation_dataset(Path(folder), names, np.zeros(len(names), dtype=int), len(names), image_size=size)
        return next(iter(batches))[0].numpy()


def run(params: dict, model_name: str, paths: Paths) -> dict:
    import keras

    from stages.explanation.figures import gradcam_grid
    from stages.explanation.gradcam import GradCam, upsample
    from stages.explanation.localisation import random_scores, scores
    from stages.explanation.sanity import rank_correlation
    from stages.explanation.truth import PhantomTruth, inside
    from stages.model_input import Preprocessing
    from stages.models import build_model, load_model, model_params, spec
    from stages.training.data import evaluation_dataset
    from stages.training.setup import make_deterministic

    settings = params["explain"]
    seed = int(params["train"]["seed"])
    make_deterministic(seed)
    sample = sample_test_images(paths.tables, int(settings["images_per_level"]), seed)
    architecture = model_params(params, model_name)
    size = int(architecture["input_size"])
    layer = spec(model_name).gradcam_layer
    model = load_model(architecture, len(SEVERITY.class_names), SEVERITY.head, paths.weights)
    targets = level_targets(sample.airspace_level)
    batches = evaluation_dataset(paths.images, list(sample.image_path), targets, len(sample), image_size=size)
    inputs = next(iter(batches))[0].numpy()
    gradcam = GradCam(model, layer, SEVERITY.head)
    probabilities, cams = gradcam(inputs)
    margins = gradcam.margins(inputs)
    keras.utils.set_random_seed(seed)  # the same fresh weights whatever ran before
    untrained = build_model(architecture, n_classes=len(SEVERITY.class_names), head=SEVERITY.head)
    _, untrained_cams = GradCam(untrained, layer, SEVERITY.head)(inputs)
    source = params["data"]["source"]
    synthetic = source == "synthetic"
    truth = PhantomTruth(paths.raw, params["synthetic"], Preprocessing.from_params(params["ingest"])) if synthetic else None
    healthy_margins = gradcam.margins(healthy_inputs(truth, sample, size)) if truth is not None else None

    rows, masks = [], []
    for index, image in enumerate(progress(list(sample.itertuples()), desc=f"explain {model_name}: scoring", unit="img",
                                           leave=False)):
        row = {"data_source": source, "image_id": image.image_id, "patient_id": image.patient_id,
               "level": LEVEL_NAMES[targets[index]], "probability_level2": round(float(probabilities[index, 1]), 6),
               # All zero after Grad-CAM's ReLU: no positive evidence for Level 2 at this layer (scores 0).
               "empty_heatmap": bool(cams[index].max() <= 0),
               "margin": round(float(margins[index]), 6)}
        correlation = rank_correlation(cams[index], untrained_cams[index])
        row["randomised_rank_correlation"] = np.nan if correlation is None else round(correlation, 6)
        if truth is not None:
            mask, zones = truth.zones_mask(image.raw_path, image.image_id)
            target = inside(mask, size)
            masks.append(mask)
            drawn = random_scores(cams[index].shape, target, int(settings["random_maps"]),
                                  np.random.default_rng([seed, index]))
            healthy = round(float(healthy_margins[index]), 6)
            row.update({"healthy_margin": healthy, "disease_effect": round(row["margin"] - healthy, 6)})
            row.update({"opacified_zones": ";".join(map(str, zones)), "zone_area_fraction": round(float(target.mean()), 6),
                        **{name: round(value, 6) for name, value in scores(upsample(cams[index], size), target).items()},
                        **{f"random_{name}": round(value, 6) for name, value in drawn.items()}})
        rows.append(row)
    table = pd.DataFrame(rows)

    metrics = {"data_source": source, "model": model_name, "layer": layer, "split": "test",
               "explained_score": "Level 2 logit margin z2 - z1 (Grad-CAM, tf.GradientTape)",
               "input_size": size, "heatmap_grid": list(cams.shape[1:]), "images": len(sample)}
    if truth is None:
        metrics.update({"localisation": None,
                        "reason": f"data.source {source} has no planted truth: heatmaps are drawn, not scored",
                        "sanity_checks": sanity_checks(table, params)})
    else:
        metrics.update({
            "scope": SCOPE,
            "inside_threshold": "zone mask >= 0.5 (the phantom's own cut-off), at the network's input size",
            "random_maps_per_image": int(settings["random_maps"]),
            "localisation": localisation(table, params),
            "sanity_checks": sanity_checks(table, params),
        })
    write_json(paths.metrics, metrics)
    write_csv(paths.metrics.with_name("explain_images.csv"), table)

    from PIL import Image

    shown = [i for name in LEVEL_NAMES for i in table.index[table.level == name][: int(settings["figure_images"]) // 2]]
    panels = []
    for i in shown:
        with Image.open(paths.images / sample.image_path[i]) as png:
            stored = np.asarray(png)
        caption = f"{table.level[i]}, P(L2) {table.probability_level2[i]:.2f}"
        if truth is not None:
            caption += f"\nmass inside {table.mass_inside[i]:.2f}, hit {int(table.pointing_hit[i])}"
        panels.append({"stored": stored, "cam": cams[i], "caption": caption,
                       "inside": (masks[i] >= 0.5) if truth is not None else None})
    title = (f"Grad-CAM ({layer}) of {model_name}, test images; white: planted opacified zones. "
             f"SYNTHETIC phantoms, not patients" if truth is not None else
             f"Grad-CAM ({layer}) of {model_name}, test images ({source})")
    gradcam_grid(panels, title, paths.figures / "gradcam.png")
    return metrics


def main(argv: list[str] | None = None) -> None:
    model, params, paths = model_stage_arguments(__doc__, Paths, argv)
    metrics = run(params, model, paths)
    randomised = metrics["sanity_checks"]["randomised_weights"]["rank_correlation"]["all"]
    print(f"explain: {model}: rank correlation with a randomly initialised copy's maps {randomised['mean']} "
          f"[{randomised['low']}, {randomised['high']}] on {randomised['images']} images")
    localisation = metrics.get("localisation")
    if localisation is None:
        print(f"explain: {model}: {metrics['reason']}")
        return
    for group, effect in metrics["sanity_checks"]["disease_effect"]["margin_drop"].items():
        print(f"explain: {model} {group}: Level 2 margin falls by {effect['mean']} [{effect['low']}, {effect['high']}] "
              f"without the planted opacities [synthetic phantoms, not patients]")
    for group, values in localisation.items():
        mass, hit = values["mass_inside"], values["pointing_hit"]
        print(f"explain: {model} {group}: mass inside {mass['gradcam']['mean']:.3f} (random {mass['random']['mean']:.3f}), "
              f"pointing game {hit['gradcam']['mean']:.3f} (random {hit['random']['mean']:.3f}) on "
              f"{values['images']} images, {values['empty_heatmaps']} heatmaps empty [synthetic phantoms, not patients]")


if __name__ == "__main__":
    main()
