"""End to end: the real dvc.yaml's data stages on a tiny config, in a temporary copy of the project.

The whole pipeline (every model, the report) runs from a clean copy in ``test_reproduce.py``,
which compares each output with the committed one; this file covers what the default config does
not reach: a corrupt file, planted leaks, and byte-identical forced reruns of the data stages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.checks.reproduce import dvc

# Slow tier: the real dvc.yaml's data stages in a temporary copy.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STAGES = ["acquire", "ingest", "group", "split", "validate", "complexity", "paper_consistency", "pretrain", "finetune",
          "evaluate", "explain", "export", "compare", "report"]
PER_MODEL = ["pretrain", "finetune", "evaluate", "explain", "export"]
DATA_STAGES = ["acquire", "ingest", "group", "split", "validate"]
TARGET = "validate"  # the last data stage; the model stages run in test_reproduce.py

TINY = {
    # Planted leaks: severity images copied, renamed and disguised into the pretraining list.
    "synthetic": {"n_patients": 30, "n_pretrain": 60, "n_corrupt_files": 1, "plant_leaks": 12},
    "ingest": {"max_reject_fraction": 0.2, "image_size": 32},
    "validate": {"min_images_per_level_per_split": 1},
}


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def test_dvc_yaml_has_the_issue_stages_in_order():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == STAGES
    for name, stage in stages.items():
        cmd = stage["do"]["cmd"] if name in PER_MODEL else stage["cmd"]
        assert cmd.startswith(f"python -m stages.{name} ") and "\n" not in cmd
        if name in PER_MODEL:  # one stage per model of the zoo, named <stage>@<model>
            assert stage["foreach"] == "${models}" and "--model ${key}" in cmd


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("pipeline")
    shutil.copy(REPO / "dvc.yaml", workdir / "dvc.yaml")
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The stages' own code is a dependency of each stage, so the copy carries it too.
    shutil.copytree(REPO / "stages", workdir / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    dvc(workdir, "init", "--no-scm", "-q")
    dvc(workdir, "repro", TARGET)
    return workdir


def test_repro_runs_every_data_stage_and_writes_its_outputs(tiny_project):
    for path in ["metrics/cohort.json", "metrics/split.json", "metrics/leakage.json", "reports/validation.md",
                 "metrics/validation/split.json", "data/tables/pretrain_audited.csv"]:
        assert (tiny_project / path).is_file(), path
    lock = yaml.safe_load((tiny_project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(DATA_STAGES)


def test_corrupt_file_recorded_in_rejects(tiny_project):
    rejects = (tiny_project / "data/tables/rejects.csv").read_text().splitlines()
    assert len(rejects) == 2 and rejects[1].startswith("ricord/images/")


def test_planted_leaks_are_found_and_kept_out_of_pretraining(tiny_project):
    """Every planted copy is found (by content alone: new name, new patient), each kind by its own
    hash; the copies of test/val images, and only those, are excluded from pretraining."""
    tables = tiny_project / "data/tables"
    leaks = pd.read_csv(tiny_project / "data/raw/synthetic_truth/planted_leaks.csv", dtype=str)
    images = pd.read_csv(tables / "severity_images.csv", dtype=str).set_index("raw_path")
    split = pd.read_csv(tables / "split.csv", dtype=str).set_index("image_id")["split"]
    leaks["severity_image_id"] = images.loc[leaks.source_raw_path, "image_id"].to_numpy()
    leaks["split"] = split.reindex(leaks.severity_image_id).to_numpy()
    leaks["pretrain_image_id"] = leaks.filename.str.rsplit(".", n=1).str[0]
    assert leaks.split.notna().all(), "every planted source reaches the split"
    expected = leaks[leaks.split.isin(["test", "val"])]
    assert len(expected) >= 2, "the tiny cohort should put some planted sources in test/val"
    audit = json.loads((tiny_project / "metrics/leakage.json").read_text())
    found = {(m["severity_image_id"], m["pretrain_image_id"]): m["methods"] for m in audit["matches"]}
    # What finds each kind: exact pixels, the whole-image hash, the box hash, the mirrored hash.
    finder = {"copy": "pixel_sha256", "rescaled": "phash", "rewindowed": "phash",
              "cropped": "phash_cropped", "flipped": "phash_mirrored"}
    assert set(found) == set(zip(leaks.severity_image_id, leaks.pretrain_image_id))
    for leak in leaks.itertuples():
        assert finder[leak.kind] in found[(leak.severity_image_id, leak.pretrain_image_id)].split(";")
    assert audit["planted"]["found"] == audit["planted"]["planted"] == len(leaks) == 12
    assert all(c["found"] == c["planted"] > 0 for c in audit["planted"]["by_kind"].values())
    assert audit["excluded"] == sorted(expected.pretrain_image_id)
    audited = pd.read_csv(tables / "pretrain_audited.csv", dtype=str)
    all_pretrain = pd.read_csv(tables / "pretrain_images.csv", dtype=str)
    assert set(all_pretrain.image_id) - set(audited.image_id) == set(expected.pretrain_image_id)
    # Copies of training images stay: seeing them in pretraining is not leakage into the test.
    assert set(leaks.pretrain_image_id) - set(expected.pretrain_image_id) <= set(audited.image_id)
    summary = (tiny_project / "reports/validation.md").read_text()
    assert (f"{len(expected)} images of the pretraining train list matched a test/val image and were "
            "excluded") in summary
    assert "Planted copies (synthetic source): 12 of 12 found." in summary


def test_without_the_crop_aware_hash_the_cropped_plants_escape(tiny_project):
    """The stage's own tables, audited again with each severity image's box hash replaced by its
    whole-image hash (as before issue 16): the cropped copies are no longer found, the rest are."""
    from stages.validation.leakage import AuditSettings, audit, score_planted

    tables = tiny_project / "data/tables"
    read = lambda name: pd.read_csv(tables / name, dtype=str, keep_default_na=False)  # noqa: E731
    severity, pretrain, split = read("severity_images.csv"), read("pretrain_images.csv"), read("split.csv")
    planted = pd.read_csv(tiny_project / "data/raw/synthetic_truth/planted_leaks.csv", dtype=str)
    blind = severity.assign(phash_cropped=severity["phash"])
    score = score_planted(planted, audit(split, blind, pretrain, AuditSettings()).matches, severity, pretrain)
    assert score["by_kind"]["cropped"] == {"planted": 2, "found": 0}
    assert all(c["found"] == c["planted"] for kind, c in score["by_kind"].items() if kind != "cropped")


def test_second_repro_is_a_no_op_and_status_clean(tiny_project):
    again = dvc(tiny_project, "repro", TARGET)
    assert "Running stage" not in again.stdout
    status = dvc(tiny_project, "status", TARGET)
    assert "up to date" in status.stdout


def test_forced_repro_gives_identical_outputs(tiny_project):
    checked = ["metrics/cohort.json", "metrics/split.json", "metrics/leakage.json"]
    before = {p: (tiny_project / p).read_bytes() for p in checked}
    lock_before = yaml.safe_load((tiny_project / "dvc.lock").read_text())
    forced = dvc(tiny_project, "repro", "-f", TARGET)
    assert all(f"Running stage '{stage}'" in forced.stdout for stage in DATA_STAGES)
    after = {p: (tiny_project / p).read_bytes() for p in checked}
    assert after == before
    lock_after = yaml.safe_load((tiny_project / "dvc.lock").read_text())
    # Every data stage reproduces its outputs byte for byte (raw DICOMs, PNGs, tables).
    for stage in DATA_STAGES:
        assert lock_after["stages"][stage] == lock_before["stages"][stage], stage
