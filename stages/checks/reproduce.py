"""The committed pipeline outputs and ``dvc.lock`` against a clean ``dvc repro`` of the same code.

The files git knows (tracked, or new and not ignored) are copied into an empty folder, which
becomes a one-commit git repository; ``dvc repro`` runs there from nothing (no ``data/``, no
``models/``, no DVC cache), exactly as ``make repro`` does on a fresh clone. Then:

- every committed output of the pipeline (the ``cache: false`` metrics, plots and reports that
  ``dvc.lock`` lists) is compared with the reproduced one: JSON value by value, text line by line,
  anything else byte for byte;
- every hash, size and parameter of ``dvc.lock`` is compared with the reproduced lock file.

The pipeline is deterministic (seeds, op determinism, stable ordering, no timestamps), so the
comparison is exact: the stated tolerance is zero. A difference is reported with the file, the
key and both values::

    metrics/models/densenet121/evaluate.json [accuracy]: committed 0.9, reproduced 0.885057

Usage::

    python -m stages.checks.reproduce [--workdir DIR]   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

RELATIVE_TOLERANCE = 0.0  # exact: see the module docstring
TEXT_SUFFIXES = {".json", ".csv", ".tsv", ".md", ".txt", ".yaml"}


def tool_env() -> dict[str, str]:
    """The environment ``make repro`` gives: this interpreter's tools first, a fixed hash seed."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONHASHSEED": "0", "DVC_NO_ANALYTICS": "1"}


def run(workdir: Path, *command: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``command`` in ``workdir``; a failure raises with the end of its output."""
    result = subprocess.run(list(command), cwd=workdir, env=tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` in {workdir} exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dvc(workdir: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return run(workdir, sys.executable, "-m", "dvc", *args, timeout=timeout)


def git_files(repo: Path) -> list[str]:
    """Files git knows in ``repo``: tracked, plus new ones that are not ignored (sorted)."""
    listed = run(repo, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    return sorted({name for name in listed.split("\0") if name and (repo / name).is_file()})


def clean_copy(repo: Path, dest: Path) -> list[str]:
    """Copy git's files of ``repo`` into ``dest`` and commit them on branch ``main``."""
    files = git_files(repo)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
    run(dest, "git", "init", "-q", "-b", "main")
    run(dest, "git", "add", "-A")
    run(dest, "git", "-c", "user.name=reproduce", "-c", "user.email=reproduce@localhost",
        "-c", "commit.gpgsign=false", "commit", "-q", "-m", "committed state")
    return files


def _flatten(data, key: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        flat: dict[str, object] = {}
        for name, value in data.items():
            flat.update(_flatten(value, f"{key}.{name}" if key else str(name)))
        return flat
    if isinstance(data, list):
        flat = {}
        for index, value in enumerate(data):
            flat.update(_flatten(value, f"{key}[{index}]"))
        return flat or {key: []}
    return {key: data}


def _equal(committed, reproduced, tolerance: float) -> bool:
    numbers = (int, float)
    if (isinstance(committed, numbers) and isinstance(reproduced, numbers)
            and not isinstance(committed, bool) and not isinstance(reproduced, bool)):
        return abs(committed - reproduced) <= tolerance * max(abs(committed), abs(reproduced))
    return committed == reproduced


def compare_values(label: str, committed: dict, reproduced: dict, tolerance: float = RELATIVE_TOLERANCE) -> list[str]:
    """Every key of two nested mappings whose values differ, named with both values."""
    old, new = _flatten(committed), _flatten(reproduced)
    problems = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            problems.append(f"{label} [{key}]: committed {old[key]!r}, missing from the reproduction")
        elif key not in old:
            problems.append(f"{label} [{key}]: not committed, reproduced {new[key]!r}")
        elif not _equal(old[key], new[key], tolerance):
            problems.append(f"{label} [{key}]: committed {old[key]!r}, reproduced {new[key]!r}")
    return problems


def compare_file(name: str, committed: Path, reproduced: Path, tolerance: float = RELATIVE_TOLERANCE) -> list[str]:
    """One committed output against its reproduction."""
    if not reproduced.is_file():
        return [f"{name}: committed, but the reproduction did not write it"]
    if committed.suffix == ".json":
        return compare_values(name, json.loads(committed.read_text()), json.loads(reproduced.read_text()), tolerance)
    if committed.suffix in TEXT_SUFFIXES:
        old, new = committed.read_text().splitlines(), reproduced.read_text().splitlines()
        for number, (was, now) in enumerate(zip(old, new), start=1):
            if was != now:
                return [f"{name}:{number}: committed {was!r}, reproduced {now!r}"]
        if len(old) != len(new):
            return [f"{name}: committed {len(old)} lines, reproduced {len(new)}"]
        return []
    old, new = committed.read_bytes(), reproduced.read_bytes()
    if old != new:
        return [f"{name}: bytes differ (md5 committed {hashlib.md5(old).hexdigest()}, "
                f"reproduced {hashlib.md5(new).hexdigest()})"]
    return []


def _lock_entries(lock: dict) -> dict[str, object]:
    """``dvc.lock`` keyed by stage, section and path (lists of deps/outs become mappings)."""
    keyed = {}
    for stage, entry in lock.get("stages", {}).items():
        for section, value in entry.items():
            if isinstance(value, list):
                value = {item["path"]: {k: v for k, v in item.items() if k != "path"} for item in value}
            keyed[f"{stage}.{section}"] = value
    return keyed


def compare_lock(committed: dict, reproduced: dict) -> list[str]:
    return compare_values("dvc.lock", _lock_entries(committed), _lock_entries(reproduced))


def committed_outputs(lock: dict, files: list[str]) -> list[str]:
    """Git's files that are outputs of a stage in ``lock`` (the metrics, plots and reports)."""
    outs = {out["path"].rstrip("/") for entry in lock.get("stages", {}).values() for out in entry.get("outs", [])}
    return [name for name in files if any(name == out or name.startswith(out + "/") for out in outs)]


def compare_tree(committed: Path, reproduced: Path, files: list[str]) -> list[str]:
    """Every committed output and ``dvc.lock`` of ``committed`` against ``reproduced``."""
    lock = yaml.safe_load((committed / "dvc.lock").read_text())
    reproduced_lock = yaml.safe_load((reproduced / "dvc.lock").read_text())
    problems = compare_lock(lock, reproduced_lock)
    outputs = committed_outputs(lock, files)
    for name in outputs:
        problems += compare_file(name, committed / name, reproduced / name)
    for out in sorted({o["path"] for e in reproduced_lock.get("stages", {}).values() for o in e.get("outs", [])
                       if o.get("cache") is False} - set(outputs)):
        if (reproduced / out).is_file():
            problems.append(f"{out}: written by the pipeline (cache: false) but not committed")
    return problems


def reproduce(repo: Path, workdir: Path) -> list[str]:
    """Copy ``repo`` into ``workdir``, ``dvc repro`` there, and list every difference."""
    files = clean_copy(repo, workdir)
    dvc(workdir, "repro")
    return compare_tree(repo, workdir, files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--workdir", type=Path, help="an empty folder for the clean copy (default: a temporary one)")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory(prefix="reproduce-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"reproduce: clean copy of {repo} in {workdir}; dvc repro (about 10 minutes on 2 cores)")
        problems = reproduce(repo, workdir)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(f"reproduce: {len(problems)} committed value(s) differ from a clean dvc repro")
    print("reproduce: every committed output and dvc.lock entry matches a clean dvc repro exactly")


if __name__ == "__main__":
    main()
