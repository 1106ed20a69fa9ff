"""``predict``: the pipeline's preprocessing on any file ingest reads, clear per-file errors, the
synthetic-data refusal, and the same probabilities as the pipeline's own path.

The models here are small CXR-S networks with seeded random weights (no training), so the tests
run anywhere; ``test_predict_reproduces_evaluate_on_the_raw_test_dicoms`` also checks the committed
model against ``evaluate``'s predictions where the DVC outputs are checked out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages import predict
from stages.models import build_model, model_params, save_weights
from stages.sources.phantom import render_chest
from tests.test_dicom_codecs import dataset, encode, save

REPO = Path(__file__).resolve().parents[1]
MODEL = "covidnet_cxr_s"
PARAMS = {
    "preset": "embedded", "presets": {"embedded": {}}, "train": {"seed": 3},
    "ingest": {"image_size": 48, "crop_top_fraction": 0.08, "square": "center_crop"},
    "model_defaults": {"input_size": 32, "width": 0.25, "dense_units": 8}, "models": {MODEL: {}},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A params file, random-weight CXR-S weights, and finetune.json files for each data source."""
    root = tmp_path_factory.mktemp("predict")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    model = build_model(model_params(PARAMS, MODEL), 2, "severity")
    rng = np.random.default_rng(0)
    # Random weights everywhere (a fresh CXR-S zeroes each PEPX extension's scale) and variances > 0.
    model.set_weights([np.abs(rng.normal(1.0, 0.3, w.shape)).astype("float32") if "variance" in v.path
                       else rng.normal(0, 0.3, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])
    save_weights(model, root / "finetune.weights.h5")
    for source in ("ricord", "synthetic"):
        (root / f"{source}.json").write_text(json.dumps({"data_source": source}))
    return root, model


@pytest.fixture(scope="module", autouse=True)
def built_once():
    """Build each runner once per module (building the network dominates a call's time)."""
    original, built = predict.keras_runner, {}

    def cached(params, model, weights, explain):
        key = (model, str(weights), explain)
        if key not in built:
            built[key] = original(params, model, weights, explain)
        return built[key]

    predict.keras_runner = cached
    yield
    predict.keras_runner = original


def run(setup, capsys, *args: str, source: str = "ricord") -> tuple[int, str, str]:
    root, _ = setup
    code = predict.main([*args, "--model", MODEL, "--params", str(root / "params.yaml"),
                         "--weights", str(root / "finetune.weights.h5"),
                         "--training-metrics", str(root / f"{source}.json")])
    out, err = capsys.readouterr()
    return code, out, err


def chest(rows: int = 200, columns: int = 240, bits: int = 12) -> np.ndarray:
    """A phantom chest radiograph as unsigned ``bits``-bit values."""
    display = render_chest(np.random.default_rng(5), [0, 1, 4], rows, columns)
    return np.rint(display * (2**bits - 1)).astype(np.int64)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One radiograph as DICOM in several transfer syntaxes, plus PNG, JPEG and broken files."""
    folder = tmp_path_factory.mktemp("images")
    pixels12, pixels8 = chest(), chest(bits=8)
    paths = {codec: save(encode(dataset(pixels12, 12), codec, pixels12), folder / f"{codec}.dcm")
             for codec in ("explicit", "j2k-lossless", "rle", "jpeg-ls-sv1")}
    paths["dicom8"] = save(dataset(pixels8, 8), folder / "eight.dcm")
    Image.fromarray(pixels8.astype(np.uint8)).save(folder / "eight.png")
    Image.fromarray(pixels8.astype(np.uint8)).save(folder / "eight.jpg", quality=90)
    paths["png"], paths["jpeg"] = folder / "eight.png", folder / "eight.jpg"
    whole = paths["explicit"].read_bytes()
    (folder / "truncated.dcm").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    paths["truncated"], paths["text"] = folder / "truncated.dcm", folder / "notes.txt"
    return paths


def test_every_lossless_transfer_syntax_gives_the_uncompressed_result(setup, capsys, files):
    codecs = ["explicit", "j2k-lossless", "rle", "jpeg-ls-sv1"]
    code, out, _ = run(setup, capsys, *[str(files[c]) for c in codecs], "--json")
    payload = json.loads(out)
    assert code == 0 and payload["failed"] == 0 and payload["data_source"] == "ricord"
    probabilities = [r["probability_level2"] for r in payload["results"]]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    # Lossless codecs decode to the same pixels, so the model sees the same input.
    assert probabilities == [probabilities[0]] * len(codecs)
    assert [r["level"] for r in payload["results"]] == [("Level 2" if p > 0.5 else "Level 1") for p in probabilities]


def test_png_equals_the_same_pixels_as_dicom_and_jpeg_runs(setup, capsys, files):
    code, out, _ = run(setup, capsys, str(files["dicom8"]), str(files["png"]), str(files["jpeg"]), "--json")
    results = json.loads(out)["results"]
    assert code == 0 and all(r["error"] is None for r in results)
    # Same 8-bit pixels, no window: both readers stretch min-max, so the model input is the same.
    assert results[0]["probability_level2"] == results[1]["probability_level2"]
    assert abs(results[2]["probability_level2"] - results[1]["probability_level2"]) < 0.05  # JPEG q90


def test_predict_equals_ingest_then_the_training_input_pipeline(setup, capsys, files, tmp_path):
    """Oracle: ingest's single-file command writes the PNG, the evaluation tf.data pipeline decodes and
    area-resizes it, Keras' predict scores it; predict must give the same probability."""
    from stages import ingest
    from stages.training.data import evaluation_dataset

    root, model = setup
    ingest.main([str(files["explicit"]), "--out", str(tmp_path / "one.png"), "--params", str(root / "params.yaml")])
    capsys.readouterr()
    expected = model.predict(evaluation_dataset(tmp_path, ["one.png"], [0], 1, image_size=32), verbose=0)[0, 1]
    _, out, _ = run(setup, capsys, str(files["explicit"]), "--json")
    assert json.loads(out)["results"][0]["probability_level2"] == pytest.approx(float(expected), abs=2e-6)


def test_a_broken_file_is_named_and_the_others_still_run(setup, capsys, files):
    code, out, err = run(setup, capsys, str(files["truncated"]), str(files["explicit"]), str(files["text"]))
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{files['explicit']}: Level ")
    assert f"{files['truncated']}: cannot decode" in err and f"{files['text']}: not a DICOM file" in err
    assert "2 of 3 files failed" in err


def test_missing_file_is_named(setup, capsys, tmp_path):
    code, out, err = run(setup, capsys, str(tmp_path / "absent.dcm"), "--json")
    result = json.loads(out)["results"][0]
    assert code == 1 and result["error"].startswith(str(tmp_path / "absent.dcm")) and result["level"] is None


def test_a_synthetic_model_is_refused_unless_allowed_and_then_every_output_says_so(setup, capsys, files, tmp_path):
    code, out, err = run(setup, capsys, str(files["explicit"]), source="synthetic")
    assert code == 2 and out == "" and "SYNTHETIC phantoms" in err and "--allow-synthetic" in err
    code, out, _ = run(setup, capsys, str(files["explicit"]), "--allow-synthetic", source="synthetic")
    assert code == 0 and "trained on SYNTHETIC phantoms" in out
    code, out, _ = run(setup, capsys, str(files["explicit"]), "--allow-synthetic", "--json",
                       "--heatmap", str(tmp_path / "maps"), source="synthetic")
    payload = json.loads(out)
    assert payload["trained_on_synthetic_phantoms"] is True
    assert all(r["data_source"] == "synthetic" for r in payload["results"])
    with Image.open(payload["results"][0]["heatmap"]) as heatmap:
        assert "SYNTHETIC" in heatmap.text["Description"] and heatmap.size == (256, 256)
    code, out, _ = run(setup, capsys, str(files["explicit"]), "--json")
    assert json.loads(out)["trained_on_synthetic_phantoms"] is False


def test_heatmaps_of_inputs_with_one_name_are_both_kept(setup, capsys, files, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    copy = other / files["explicit"].name
    copy.write_bytes(files["explicit"].read_bytes())
    code, out, _ = run(setup, capsys, str(files["explicit"]), str(copy), "--json", "--heatmap", str(tmp_path / "maps"))
    names = sorted(Path(r["heatmap"]).name for r in json.loads(out)["results"])
    assert code == 0 and names == ["explicit-2.gradcam.png", "explicit.gradcam.png"]


def test_console_script_is_declared():
    scripts = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["covidnet-predict"] == "stages.predict:cli"


def _real_radiographs() -> list[Path]:
    data = pytest.importorskip("pydicom.data")
    try:
        return [Path(data.get_testdata_file(name, download=False)) for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")]
    except Exception as err:  # pydicom-data (the test extra) absent: pydicom would download them
        pytest.skip(f"pydicom-data's real radiographs are not installed ({err})")


def test_real_full_size_cr_uncompressed_and_jpeg2000(setup, capsys, tmp_path):
    """pydicom's RG1: a real CR chest film, 1955 x 1841, 15-bit MONOCHROME1; J2KR is its lossless JPEG 2000."""
    import pydicom

    paths = _real_radiographs()
    if any(p is None or not p.is_file() for p in paths):
        pytest.skip("pydicom-data's RG1 files are not installed")
    header = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert (header.Rows, header.Columns, header.BitsStored, header.PhotometricInterpretation) == (
        1955, 1841, 15, "MONOCHROME1")
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(paths[1].read_bytes()[:200_000])
    code, out, err = run(setup, capsys, str(paths[0]), str(truncated), str(paths[1]), "--json",
                         "--heatmap", str(tmp_path / "maps"))
    results = json.loads(out)["results"]
    assert code == 1 and results[1]["error"].startswith(str(truncated)) and results[1]["level"] is None
    assert results[0]["probability_level2"] == results[2]["probability_level2"]  # lossless: same pixels
    for result in (results[0], results[2]):
        assert result["level"] in ("Level 1", "Level 2") and Path(result["heatmap"]).is_file()


@pytest.mark.slow
def test_predict_reproduces_evaluate_on_the_raw_test_dicoms():
    """Oracle: evaluate's committed P(Level 2) for test images (ingest's PNG, TF input pipeline, Keras
    predict), against predict on the raw DICOM. Images with a COVID-Net crop box are left out (predict
    takes whole files)."""
    predictions = REPO / "metrics/models" / MODEL / "test_predictions.csv"
    needed = [REPO / "data/raw/ricord", REPO / "data/tables/severity_images.csv", REPO / "models" / MODEL]
    if not all(p.exists() for p in needed):
        pytest.skip("DVC outputs not checked out (dvc checkout, or dvc repro)")
    images = pd.read_csv(REPO / "data/tables/severity_images.csv", dtype=str)
    boxed = {line.split()[0].rsplit(".", 1)[0] for line in
             (REPO / "data/raw/covidnet/ricord_data_set.txt").read_text().splitlines() if len(line.split()) > 1}
    rows = pd.read_csv(predictions, dtype={"image_id": str}).merge(images[["image_id", "raw_path"]], on="image_id")
    rows = rows[~rows.image_id.isin(boxed)].head(6)
    command = [sys.executable, "-m", "stages.predict", *[str(REPO / "data/raw" / p) for p in rows.raw_path],
               "--model", MODEL, "--json", "--allow-synthetic"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    got = [r["probability_level2"] for r in json.loads(done.stdout)["results"]]
    np.testing.assert_allclose(got, rows.probability_level2, atol=2e-6)


@pytest.fixture(scope="module")
def tflite(setup, tmp_path_factory) -> Path:
    from stages.export import write_exports, write_gradcam_litert
    from stages.models.folding import fold_batch_norms

    root = tmp_path_factory.mktemp("exported")
    folded = fold_batch_norms(setup[1])
    write_exports(folded, root / "saved_model", root / "model.tflite")
    write_gradcam_litert(folded, "stage2_pepx4_out", "severity", 32, root / "gradcam.tflite")
    return root / "model.tflite"


@pytest.mark.slow
def test_litert_backend_gives_the_keras_result_and_names_broken_files(setup, capsys, files, tflite, tmp_path):
    paths = [str(files["explicit"]), str(files["truncated"]), str(files["png"])]
    _, out, _ = run(setup, capsys, *paths, "--json")
    expected = [r["probability_level2"] for r in json.loads(out)["results"]]
    code, out, err = run(setup, capsys, *paths, "--json", "--backend", "litert", "--tflite", str(tflite),
                         "--heatmap", str(tmp_path / "maps"), "--gradcam-tflite", str(tflite.with_name("gradcam.tflite")))
    payload = json.loads(out)
    with Image.open(payload["results"][0]["heatmap"]) as heatmap:
        assert "central differences, LiteRT" in heatmap.text["Description"]
    got = [r["probability_level2"] for r in payload["results"]]
    assert code == 1 and payload["backend"] == "litert" and got[1] is None and expected[1] is None
    assert payload["results"][1]["error"].startswith(str(files["truncated"]))
    np.testing.assert_allclose([got[0], got[2]], [expected[0], expected[2]], atol=1e-3)


@pytest.mark.slow
def test_real_full_size_cr_with_litert_in_a_process_without_tensorflow(setup, tflite, tmp_path):
    root, _ = setup
    paths = _real_radiographs()
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(paths[0].read_bytes()[:100_000])
    script = ("import json, sys; from stages import predict; "
              f"code = predict.main({[str(paths[0]), str(truncated), str(paths[1])]!r} + ['--json', '--backend', 'litert', "
              f"'--tflite', '{tflite}', '--params', '{root / 'params.yaml'}', '--training-metrics', '{root / 'ricord.json'}', "
              f"'--heatmap', '{tmp_path / 'maps'}', '--gradcam-tflite', '{tflite.with_name('gradcam.tflite')}']); "
              "print(json.dumps({'code': code, 'tf': 'tensorflow' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    status, payload = json.loads(lines[-1]), json.loads("\n".join(lines[:-1]))
    assert status == {"code": 1, "tf": False}
    results = payload["results"]
    assert results[1]["error"].startswith(str(truncated)) and f"{truncated}" in done.stderr
    assert results[0]["level"] in ("Level 1", "Level 2") and results[0]["probability_level2"] == results[2]["probability_level2"]
    assert Path(results[0]["heatmap"]).is_file() and Path(results[2]["heatmap"]).is_file()


def test_litert_backend_never_imports_tensorflow(tmp_path):
    """The LiteRT path loads ai_edge_litert, not TensorFlow (stopped at the missing .tflite)."""
    check = ("import sys; from stages import predict; "
             f"code = predict.main(['x.png', '--backend', 'litert', '--tflite', '{tmp_path}/none.tflite', "
             "'--allow-synthetic'])")
    done = subprocess.run([sys.executable, "-c", check + "\n", "--"], cwd=REPO, capture_output=True, text=True)
    assert "none.tflite not found" in done.stderr
    probe = subprocess.run([sys.executable, "-c", "import sys; from stages import predict; "
                            "import ai_edge_litert.interpreter; print('tensorflow' in sys.modules)"],
                           cwd=REPO, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"

