"""DVC knows what every stage depends on: each stage's code closure against its ``deps``.

A stage runs ``python -m stages.<module>``; everything that module imports from the ``stages``
package (at the top or inside a function, transitively, with each package's ``__init__.py`` and
the data files a package ships, such as ``stages/reference/paper.yaml``) is code the outputs
depend on. If ``dvc.yaml`` misses one of those files, an edit there leaves ``dvc status`` clean
while the outputs are stale. ::

    python -m stages.checks.deps      # lists every file a stage imports but does not declare

It also checks the data side of the same promise for the folders that have a manifest
(:data:`stages.common.manifest.MANIFESTS`): a stage whose command names such a folder depends on
the folder's manifest, never on the folder (DVC would re-hash its files at every status), and the
stage that writes the folder writes the manifest too.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

PACKAGE = "stages"
# Files a package reads at run time besides its modules (``package-data`` in pyproject.toml).
DATA_SUFFIXES = (".yaml", ".yml", ".json")


def module_file(root: Path, module: str) -> Path | None:
    """The file of ``module`` under ``root`` (a module or a package's ``__init__.py``), if any."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Every ``stages`` module ``path`` imports, anywhere in the file (absolute or relative)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # ``from stages.models import covidnet`` may name a submodule rather than an attribute.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def closure(root: Path, module: str) -> set[Path]:
    """Files (relative to ``root``) that running ``python -m <module>`` executes or reads."""
    files: set[Path] = set()
    pending = [module]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = module_file(root, name)
        if path is None:
            continue  # an attribute of a module, not a module
        files.add(path.relative_to(root))
        if path.name == "__init__.py":
            files.update(p.relative_to(root) for p in sorted(path.parent.iterdir())
                         if p.is_file() and p.suffix in DATA_SUFFIXES)
        pending.extend(imported_modules(path, name))
    return files


def stage_modules(dvc_yaml: dict) -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (module its command runs, declared deps); ``foreach`` stages by their template."""
    stages = {}
    for name, stage in dvc_yaml.get("stages", {}).items():
        body = stage.get("do", stage)
        match = re.search(r"python -m ([\w.]+)", body["cmd"])
        if match and match.group(1).startswith(PACKAGE + "."):
            stages[name] = (match.group(1), [str(d) for d in body.get("deps", [])])
    return stages


def covered(path: Path, deps: list[str]) -> bool:
    text = path.as_posix()
    return any(text == dep.rstrip("/") or text.startswith(dep.rstrip("/") + "/") for dep in deps)


def loaded_by_name() -> dict[str, tuple[str, ...]]:
    """Modules a stage imports by name at run time (``importlib``), which the walk over import
    statements cannot see: ``acquire`` loads the adapter of :data:`stages.sources.SOURCES`."""
    from stages.sources import SOURCES

    return {"stages.acquire": tuple(source.module for source in SOURCES.values())}


def missing_deps(root: Path) -> dict[str, list[str]]:
    """Stage -> code files its module imports (transitively) that its ``deps`` do not cover."""
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    dynamic = loaded_by_name()
    missing = {}
    for stage, (module, deps) in stage_modules(dvc_yaml).items():
        files = closure(root, module).union(*(closure(root, m) for m in dynamic.get(module, ())))
        absent = sorted(p.as_posix() for p in files if not covered(p, deps))
        if absent:
            missing[stage] = absent
    return missing


def folder_dep_problems(dvc_yaml: dict, manifests: dict[str, str] | None = None) -> list[str]:
    """What breaks the manifest rule (see the module) in ``dvc_yaml``, one line per problem."""
    if manifests is None:
        from stages.common.manifest import MANIFESTS as manifests
    problems = []
    for name, stage in dvc_yaml.get("stages", {}).items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        deps = [str(d) for d in body.get("deps", [])]
        outs = [str(next(iter(o))) if isinstance(o, dict) else str(o) for o in body.get("outs", [])]
        for folder, listing in manifests.items():
            if folder in outs:
                if listing not in outs:
                    problems.append(f"{name}: writes {folder} but not its manifest {listing}")
                continue
            if folder in deps:
                problems.append(f"{name}: depends on the folder {folder}; depend on {listing} instead")
            if folder in words and listing not in deps:
                problems.append(f"{name}: reads {folder} but does not depend on {listing}")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    missing = missing_deps(args.root)
    for stage, files in missing.items():
        print(f"{stage}: dvc.yaml deps miss {', '.join(files)}", file=sys.stderr)
    folders = folder_dep_problems(yaml.safe_load((args.root / "dvc.yaml").read_text()))
    for line in folders:
        print(line, file=sys.stderr)
    if missing or folders:
        raise SystemExit(f"deps: {len(missing)} stage(s) import code that dvc.yaml does not list; "
                         f"{len(folders)} folder dependency problem(s)")
    print("deps: every stage lists every file of its import closure, and data folders by their manifests")


if __name__ == "__main__":
    main()
