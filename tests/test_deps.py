"""Every stage's ``deps`` in dvc.yaml cover the code it imports, and dvc.lock holds no stale stage."""

from __future__ import annotations

from pathlib import Path

import yaml

from stages.checks.deps import closure, folder_dep_problems, missing_deps

REPO = Path(__file__).resolve().parents[1]


def test_every_stage_declares_its_import_closure():
    assert missing_deps(REPO) == {}


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_closure_follows_function_level_relative_and_package_imports(tmp_path):
    root = _package(tmp_path, {
        "stages/__init__.py": "from stages.common import cpu\n",
        "stages/common/__init__.py": "",
        "stages/common/cpu.py": "import os\n",
        "stages/common/unused.py": "",
        "stages/train.py": "def main():\n    from stages.models import zoo\n    from . import schema\n",
        "stages/schema.py": "",
        "stages/models/__init__.py": "",
        "stages/models/zoo.py": "from .blocks import conv\nimport numpy\n",
        "stages/models/blocks.py": "",
        "stages/reference/__init__.py": "",
        "stages/reference/paper.yaml": "a: 1\n",
        "stages/report.py": "from stages.reference import paper\n",
    })
    assert {p.as_posix() for p in closure(root, "stages.train")} == {
        "stages/__init__.py", "stages/common/__init__.py", "stages/common/cpu.py", "stages/train.py",
        "stages/schema.py", "stages/models/__init__.py", "stages/models/zoo.py", "stages/models/blocks.py"}
    # A package's data files come with it (paper.yaml is read by stages.reference).
    assert "stages/reference/paper.yaml" in {p.as_posix() for p in closure(root, "stages.report")}


def test_a_missing_dep_is_named(tmp_path):
    root = _package(tmp_path, {
        "stages/__init__.py": "",
        "stages/common/__init__.py": "",
        "stages/common/io.py": "",
        "stages/evaluate.py": "def main():\n    from stages.common import io\n",
    })
    stage = {"cmd": "python -m stages.evaluate --out x", "deps": ["stages/evaluate.py", "stages/__init__.py"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {"foreach": ["a"], "do": stage}}}))
    assert missing_deps(root) == {"evaluate": ["stages/common/__init__.py", "stages/common/io.py"]}
    stage["deps"].append("stages/common")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    assert missing_deps(root) == {}


def _stage_names(dvc_yaml: dict, params: dict) -> set[str]:
    names = set()
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            assert stage["foreach"] == "${models}"
            names.update(f"{name}@{key}" for key in params["models"])
        else:
            names.add(name)
    return names


def test_dvc_lock_holds_only_stages_of_dvc_yaml():
    expected = _stage_names(yaml.safe_load((REPO / "dvc.yaml").read_text()),
                            yaml.safe_load((REPO / "params.yaml").read_text()))
    locked = set(yaml.safe_load((REPO / "dvc.lock").read_text())["stages"])
    assert locked == expected, f"stale in dvc.lock: {sorted(locked - expected)}; missing: {sorted(expected - locked)}"


def test_stages_read_data_folders_through_their_manifests():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert folder_dep_problems(dvc_yaml) == []


def test_a_folder_dependency_and_a_missing_manifest_are_named():
    manifests = {"data/images": "data/manifests/images.csv"}
    dvc_yaml = {"stages": {
        "ingest": {"cmd": "python -m stages.ingest --images data/images", "outs": ["data/images"]},
        "train": {"foreach": ["a"], "do": {"cmd": "python -m stages.train --images data/images",
                                            "deps": ["data/images"]}},
        "report": {"cmd": "python -m stages.report --images data/images",
                   "deps": ["data/manifests/images.csv"]},
    }}
    assert folder_dep_problems(dvc_yaml, manifests) == [
        "ingest: writes data/images but not its manifest data/manifests/images.csv",
        "train: depends on the folder data/images; depend on data/manifests/images.csv instead",
        "train: reads data/images but does not depend on data/manifests/images.csv",
    ]
    dvc_yaml["stages"]["ingest"]["outs"].append({"data/manifests/images.csv": {"cache": True}})
    dvc_yaml["stages"]["train"]["do"]["deps"] = ["data/manifests/images.csv"]
    assert folder_dep_problems(dvc_yaml, manifests) == []
