"""Issue 17's acceptance: ``dvc exp run -S data.source=ricord`` (IDC source) runs end to end against
local servers and gives the paper's 150 test images by COVID-Net's names.

A DVC project in tmp holds this repository's ``dvc.yaml``, ``params.yaml`` and ``stages/`` (git's
files), with the ``ricord`` URLs pointed at the servers of ``tests/ricord_idc_world.py`` (moto's S3
as IDC's buckets, a static server as GitHub and MD.ai): the set-up a machine with a mirror would
commit. The experiment then switches only what the acceptance names: ``data.source=ricord`` and
``split.mode=reference`` (COVID-Net's lists). It runs to the target ``split`` (acquire, ingest,
group, split): the 150 test images are the split's output. Training would add minutes and nothing
to check; validate rightly fails on this 136-study part of the cohort (no COVIDx images served, the
paper's 909 images expected, too few train and val images per level).

Crop boxes stay on (unlike ``test_ricord_idc.py``): the images of studies with COVID-Net boxes are
large enough that each box starts inside them, so ingest crops every image by its box, looked up by
COVID-Net's name, and rejects none.

Two things stand in for the world: IDC's index is the real one with each series' size replaced by
that of its generated files (a stand-in package ``idc_index_data`` first on PYTHONPATH, read as
the stages read the real one), and pixels are generated.

The oracles are COVID-Net's files in ../shared/data, read here line by line: ``test_COVIDxSev.txt``
(the 150 names), ``train_COVIDxSev.txt`` (the 3 listed images of studies with a lateral series: the
150 test names alone do not tell COVID-Net's image order from the series-UID order, these do) and
``ricord_data_set.txt`` (which images have a crop box).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.checks.reproduce import git_files, tool_env

pytest.importorskip("moto.server", reason="moto (test extra) is not installed")
pytest.importorskip("boto3", reason="boto3 (with moto, test extra) is not installed")
pytest.importorskip("idc_index_data", reason="idc-index-data (test extra) is not installed: IDC's index")
pytest.importorskip("pyarrow", reason="pyarrow (test extra) reads idc_index.parquet")

from tests.ricord_idc_world import local_ricord_params, served_world, study_key, study_of_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "ricord-idc"
pytestmark = pytest.mark.slow  # ~25 s: dvc exp run of acquire, ingest, group, split in subprocesses


def _run(cwd: Path, env: dict[str, str], *command: str) -> str:
    result = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout


def _index_stand_in(folder: Path, index) -> Path:
    """A package ``idc_index_data`` whose parquet is ``index`` (the generated files' sizes)."""
    package = folder / "idc_index_data"
    package.mkdir(parents=True)
    index.to_parquet(folder / "idc_index.parquet", index=False)
    (package / "__init__.py").write_text(
        f"IDC_INDEX_PARQUET_FILEPATH = {str(folder / 'idc_index.parquet')!r}\n"
        "__version__ = 'test: the real index, with the generated files as sizes'\n")
    return folder


def _project(root: Path, ricord: dict) -> Path:
    """This repository's pipeline (git's files of dvc.yaml, params.yaml, stages/) as a committed DVC project."""
    root.mkdir()
    for name in git_files(REPO):
        if name in ("dvc.yaml", ".dvcignore") or name.startswith("stages/"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ricord"].update(ricord)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = tool_env()
    _run(root, env, "git", "init", "-q", "-b", "main")
    _run(root, env, sys.executable, "-m", "dvc", "init", "-q")
    _run(root, env, "git", "add", "-A")
    _run(root, env, "git", "-c", "user.name=exp", "-c", "user.email=exp@localhost", "-c", "commit.gpgsign=false",
         "commit", "-q", "-m", "pipeline, ricord URLs on the local servers")
    return root


def _listed_names(shared: Path, name: str) -> list[str]:
    """The image names of COVID-Net's ``<name>_COVIDxSev.txt`` (``patient filename level source`` per line)."""
    lines = (shared / "ricord-covidnet" / f"{name}_COVIDxSev.txt").read_text().splitlines()
    return sorted(line.split()[1].removesuffix(".png") for line in lines if line.strip())


def _boxes(shared: Path) -> dict[str, tuple[int, ...]]:
    """COVID-Net's crop boxes (``ricord_data_set.txt``: ``name xmin ymin xmax ymax``) by image name."""
    lines = (shared / "ricord-covidnet" / "ricord_data_set.txt").read_text().splitlines()
    return {fields[0].removesuffix(".png"): tuple(int(v) for v in fields[1:])
            for fields in map(str.split, lines) if len(fields) == 5}


def _experiments(shown: list[dict]) -> dict[str, dict]:
    """``dvc exp show --json``: experiment name -> its data (params, metrics)."""
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                found[rev.get("name")] = rev.get("data") or {}
    return found


def test_dvc_exp_run_ricord_gives_the_papers_150_test_images(tmp_path, shared_covidnet):
    with served_world(tmp_path / "world", shared_covidnet, boxes_inside=True) as world:
        project = _project(tmp_path / "project", local_ricord_params(world))
        env = {**tool_env(), "PYTHONPATH": str(_index_stand_in(tmp_path / "index", world["index"]))}
        _run(project, env, sys.executable, "-m", "dvc", "exp", "run", "split", "-n", EXPERIMENT,
             "-S", "data.source=ricord", "-S", "split.mode=reference")

    split = pd.read_csv(project / "data" / "tables" / "split.csv", dtype=str)
    test_names = sorted(split.image_id[split.split == "test"])
    assert len(test_names) == 150 and test_names == _listed_names(shared_covidnet, "test")
    # The 3 listed train images of the studies with a lateral series: the lateral comes first in
    # COVID-Net's order, so another numbering gives the lateral the listed name (and leaves it out).
    served = {study_key(p, s) for p, s in zip(world["index"].PatientID, world["index"].StudyInstanceUID)}
    train = [n for n in _listed_names(shared_covidnet, "train") if study_of_name(n) in served]
    assert len(train) == 3 and set(train) <= set(split.image_id[split.split != "test"]), train
    images = pd.read_csv(project / "data" / "tables" / "severity_images.csv", dtype=str)
    boxes = _boxes(shared_covidnet)
    # Each image is cropped by the box of its COVID-Net name: a box that starts past the top-left
    # corner changes the image, one that starts there holds the whole generated image.
    cut = images.image_id.map(lambda name: name in boxes and boxes[name][:2] != (0, 0))
    assert cut.sum() == 45, cut.sum()  # the test list's 49 boxed images less 4 at (0, 0); no other has a box
    assert (images.phash_cropped[cut] != images.phash[cut]).all()
    assert (images.phash_cropped[~cut] == images.phash[~cut]).all()
    rejects = pd.read_csv(project / "data" / "tables" / "rejects.csv", dtype=str)
    assert not (rejects.kind == "unreadable").any(), rejects[rejects.kind == "unreadable"]  # no box outside
    severity = rejects[rejects.cohort == "severity"]  # only the lateral series are left out
    assert len(severity) and severity.reason.str.contains("view LATERAL is not in ingest.views").all(), severity

    experiments = _experiments(json.loads(_run(project, tool_env(), sys.executable, "-m", "dvc", "exp", "show",
                                               "--json")))
    assert EXPERIMENT in experiments, experiments.keys()
    params = experiments[EXPERIMENT]["params"]["params.yaml"]["data"]
    assert params["data"]["source"] == "ricord" and params["split"]["mode"] == "reference"
    assert params["ricord"]["service"] == "idc"
    split_metrics = experiments[EXPERIMENT]["metrics"]["metrics/split.json"]["data"]
    assert split_metrics["test"]["images"] == 150
