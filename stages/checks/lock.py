"""The locked environment: ``requirements.lock`` read back, against pyproject.toml and this venv.

``make lock`` writes the lock with ``uv pip compile --universal --generate-hashes``: one entry per
package (``name==version``, an optional environment marker, its sha256 hashes, and ``# via``
lines naming what needs it). This module reads it without asking a package index:

- :func:`disagreements`: what pyproject.toml asks for that the lock does not give (a missing or
  out-of-range package, a dropped dependency still locked, an entry without a hash);
- :func:`installed_differences`: where this interpreter's packages differ from the lock (the
  clean-reproduction check compares exactly only in the locked environment).
"""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "covidnet-cxr-s-pipeline"
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$")
# The platforms the lock must serve: pyproject's Pythons on the two Linux architectures.
ENVIRONMENTS = [
    {"python_version": py, "python_full_version": f"{py}.0", "platform_machine": machine,
     "sys_platform": "linux", "implementation_name": "cpython", "platform_system": "Linux",
     "os_name": "posix", "platform_python_implementation": "CPython", "extra": extra}
    for py in ("3.11", "3.12") for machine in ("x86_64", "aarch64") for extra in ("", "test")
]


def parse_lock(text: str) -> list[dict]:
    """Entries of a ``uv pip compile`` lock: name, version, marker, hash count, direct dependency."""
    entries: list[dict] = []
    for line in text.splitlines():
        match = ENTRY.match(line)
        if match:
            entries.append({"name": canonicalize_name(match["name"]), "version": match["version"],
                            "marker": Marker(match["marker"]) if match["marker"] else None,
                            "hashes": 0, "direct": False})
        elif entries and line.strip().startswith("--hash=sha256:"):
            entries[-1]["hashes"] += 1
        elif entries and f"{PROJECT} (pyproject.toml)" in line:
            entries[-1]["direct"] = True
    return entries


def pyproject_requirements(pyproject: Path) -> list[Requirement]:
    """The dependencies and optional dependencies (each marked with its extra) of pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra, listed in project.get("optional-dependencies", {}).items():
        for text in listed:
            requirement = Requirement(text)
            extra_marker = f'extra == "{extra}"'
            requirement.marker = Marker(f"({requirement.marker}) and {extra_marker}" if requirement.marker
                                        else extra_marker)
            requirements.append(requirement)
    return requirements


def disagreements(lock_text: str, requirements: list[Requirement]) -> list[str]:
    """Every way the lock fails ``requirements`` on the platforms of :data:`ENVIRONMENTS`."""
    entries = parse_lock(lock_text)
    problems = [f"{e['name']}=={e['version']}: no --hash" for e in entries if not e["hashes"]]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        for environment in ENVIRONMENTS:
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            installed = [e for e in entries if e["name"] == name
                         and (e["marker"] is None or e["marker"].evaluate(environment))]
            where = f"Python {environment['python_version']} on {environment['platform_machine']}"
            if not installed:
                problems.append(f"{requirement}: not in requirements.lock for {where}")
            for entry in installed:
                if not requirement.specifier.contains(entry["version"], prereleases=True):
                    problems.append(f"{requirement}: requirements.lock has {entry['version']} for {where}")
    wanted = {canonicalize_name(r.name) for r in requirements}
    problems += [f"{e['name']}: locked as a dependency of pyproject.toml, which no longer asks for it"
                 for e in entries if e["direct"] and e["name"] not in wanted]
    return sorted(set(problems))


def installed_differences(lock: Path, extra: str = "test") -> list[str]:
    """Packages of the lock that this interpreter has at another version, or not at all."""
    environment = {**default_environment(), "extra": extra}
    problems = []
    for entry in parse_lock(lock.read_text()):
        if entry["marker"] is not None and not entry["marker"].evaluate(environment):
            continue
        try:
            version = metadata.version(entry["name"])
        except metadata.PackageNotFoundError:
            problems.append(f"{entry['name']}: locked {entry['version']}, not installed")
            continue
        if version != entry["version"]:
            problems.append(f"{entry['name']}: locked {entry['version']}, installed {version}")
    return problems


def describe() -> str:
    """This interpreter and machine, in a few words (for the check's messages)."""
    return f"CPython {platform.python_version()} on {platform.machine()} ({sys.platform})"
