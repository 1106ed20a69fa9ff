import re
from pathlib import Path

import pytest

from stages.common.io import read_table, write_csv, write_json
from stages.common.params import load_params, section

PARAMS = """
preset: embedded
presets:
  embedded: {}
  paper:
    models: {covidnet_cxr_s: {input_size: 480, width: 1.0}}
    finetune: {epochs: 137}
models:
  covidnet_cxr_s: {input_size: 64, width: 0.125}
  resnet50: {input_size: 32}
finetune: {epochs: 15, batch_size: 16}
"""


def test_embedded_preset_keeps_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert section("models", path)["covidnet_cxr_s"] == {"input_size": 64, "width": 0.125}


def test_paper_preset_is_one_switch(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.replace("preset: embedded", "preset: paper"))
    params = load_params(path)
    # a preset overrides one model's keys and leaves the other models alone
    assert params["models"] == {"covidnet_cxr_s": {"input_size": 480, "width": 1.0}, "resnet50": {"input_size": 32}}
    assert params["finetune"] == {"epochs": 137, "batch_size": 16}


REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def paper_params(tmp_path: Path) -> dict:
    """The repository's parameters with ``preset: paper``."""
    path = tmp_path / "params.yaml"
    path.write_text(re.sub(r"^preset: \w+", "preset: paper", REPO_PARAMS.read_text(), count=1, flags=re.M))
    return load_params(path)


def test_repository_paper_preset_has_the_paper_settings(tmp_path):
    import yaml

    from stages.models import model_params

    raw = yaml.safe_load(REPO_PARAMS.read_text())
    paper = raw["presets"]["paper"]
    params = paper_params(tmp_path)
    for name in raw["models"]:  # every model of the zoo at the paper's size and full width
        assert model_params(params, name)["input_size"] == 480
        assert model_params(params, name).get("width", 1.0) == 1.0
    assert paper["ingest"]["image_size"] == 480
    assert raw["complexity"] == {"input_size": 480, "width": 1.0, "dense_units": 256}
    assert paper["finetune"] == {"epochs": 137, "batch_size": 50, "learning_rate": 1.0e-4}


def test_embedded_default_is_like_for_like():
    """One input size and full width for every network of the zoo (no model overrides them)."""
    from stages.models import model_params

    params = load_params(REPO_PARAMS)
    settings = [model_params(params, name) for name in params["models"]]
    assert len({s["input_size"] for s in settings}) == 1
    assert all(s.get("width", 1.0) == 1.0 for s in settings)
    assert len({s["dense_units"] for s in settings}) == 1


def test_model_defaults_apply_under_each_model(tmp_path):
    from stages.models import model_params

    path = tmp_path / "params.yaml"
    path.write_text(PARAMS + "model_defaults: {input_size: 48, dense_units: 8}\n")
    assert model_params(load_params(path), "resnet50") == {"name": "resnet50", "input_size": 32, "dense_units": 8}
    assert model_params(load_params(path), "covidnet_cxr_s")["dense_units"] == 8


def test_model_params_names_an_unknown_model(tmp_path):
    from stages.models import model_params

    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert model_params(load_params(path), "resnet50") == {"name": "resnet50", "input_size": 32}
    with pytest.raises(SystemExit, match="vgg16"):
        model_params(load_params(path), "vgg16")


def test_unknown_preset_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.replace("preset: embedded", "preset: huge"))
    with pytest.raises(ValueError, match="huge"):
        load_params(path)


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_json_is_byte_stable_and_csv_keeps_ids(tmp_path):
    import pandas as pd

    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, None]})
    write_json(tmp_path / "b.json", {"a": [1.5, None], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    write_csv(tmp_path / "t.csv", pd.DataFrame({"image_id": ["00123"], "rows": [5]}))
    table = read_table(tmp_path / "t.csv")
    assert table.image_id[0] == "00123" and table.rows[0] == 5
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_failed_write_leaves_old_file(tmp_path):
    from stages.common.io import atomic_write

    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and not list(tmp_path.glob(".keep.txt.*"))
