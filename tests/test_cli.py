"""The stages' shared command line (stages.common.cli)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml

from stages.common import cli
from stages.common.cli import model_stage_arguments, stage_arguments

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loaded(monkeypatch):
    """Record which params file was loaded instead of reading it."""
    seen = []
    monkeypatch.setattr(cli, "load_params", lambda path: seen.append(path) or {"from": str(path)})
    return seen


def test_defaults_flags_and_params(loaded):
    args, params = stage_arguments("doc", [], raw=Path("data/raw"), out_dir=Path("metrics/x.json"))
    assert (args.raw, args.out_dir, args.params) == (Path("data/raw"), Path("metrics/x.json"), Path("params.yaml"))
    assert params == {"from": "params.yaml"} and loaded == [Path("params.yaml")]
    args, params = stage_arguments("doc", ["--out-dir", "o", "--raw", "r", "--params", "q.yaml"],
                                   raw=Path("data/raw"), out_dir=Path("metrics/x.json"))
    assert (args.raw, args.out_dir, args.params) == (Path("r"), Path("o"), Path("q.yaml"))
    assert params == {"from": "q.yaml"}


def test_loads_the_params_file():
    _, params = stage_arguments(None, ["--params", str(ROOT / "params.yaml")], out=Path("o"))
    assert "split" in params and "group" in params


def test_unknown_option_is_refused(loaded, capsys):
    with pytest.raises(SystemExit):
        stage_arguments("doc", ["--tables", "t"], raw=Path("data/raw"))
    assert "--tables" in capsys.readouterr().err and loaded == []


def test_help_lists_defaults_and_extra_help(loaded, capsys):
    with pytest.raises(SystemExit):
        stage_arguments("The stage.\n\nTwo lines.", ["--help"], downloads=Path("data/downloads"),
                        helps={"downloads": "kept between runs"})
    text = capsys.readouterr().out
    assert "The stage.\n\nTwo lines." in text  # the docstring's layout is kept
    assert "kept between runs; default: data/downloads" in " ".join(text.split())
    assert "default: params.yaml" in text


@dataclasses.dataclass(frozen=True)
class _Paths:
    weights: Path
    model_out: Path

    @classmethod
    def for_model(cls, model, weights=None, model_out=None):
        return cls(weights or Path(f"models/{model}/w.h5"), model_out or Path(f"models/{model}/out.h5"))


def test_model_stage_arguments(loaded):
    model, params, paths = model_stage_arguments("doc", _Paths, ["--model", "m", "--model-out", "x.h5"])
    assert model == "m" and params == {"from": "params.yaml"}
    assert paths == _Paths(Path("models/m/w.h5"), Path("x.h5"))
    model, _, paths = model_stage_arguments("doc", _Paths, [])
    assert model == cli.DEFAULT_MODEL and paths.weights == Path(f"models/{cli.DEFAULT_MODEL}/w.h5")


def _dvc_commands():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        cmd = stage.get("cmd") or stage.get("do", {}).get("cmd")
        words = shlex.split(cmd.replace("${key}", "covidnet_cxr_s"))
        if words[:2] == ["python", "-m"] and words[2] in {
                "stages.acquire", "stages.group", "stages.split", "stages.validate", "stages.complexity",
                "stages.compare"}:
            yield words[2], words[3:]


@pytest.mark.parametrize(("module", "argv"), list(_dvc_commands()))
def test_dvc_yaml_command_lines_parse(module, argv, monkeypatch):
    """Each dvc.yaml command line is accepted, every option landing where main reads it."""
    import importlib

    stage = importlib.import_module(module)

    class Parsed(Exception):
        pass

    def stop(description, argv_, **kwargs):
        args, _ = stage_arguments(description, argv_, **kwargs)
        raise Parsed(vars(args))

    monkeypatch.setattr(stage, "stage_arguments", stop)
    monkeypatch.setattr(cli, "load_params", lambda path: {})
    with pytest.raises(Parsed) as parsed:
        stage.main(argv)
    given = dict(zip(argv[::2], argv[1::2]))
    assert {f"--{k.replace('_', '-')}": str(v) for k, v in parsed.value.args[0].items() if k != "params"} == given
