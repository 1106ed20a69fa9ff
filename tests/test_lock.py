"""The locked environment (``requirements.lock``) agrees with ``pyproject.toml``.

``make lock`` re-resolves the lock from pyproject.toml; this test fails when someone edits one
without the other: a dependency added, dropped or moved out of the locked version's range, or a
locked package without a hash. The check reads both files (no package index is asked).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from stages.checks.lock import PROJECT, disagreements, installed_differences, parse_lock, pyproject_requirements

REPO = Path(__file__).resolve().parents[1]


def test_lock_agrees_with_pyproject():
    problems = disagreements((REPO / "requirements.lock").read_text(), pyproject_requirements(REPO / "pyproject.toml"))
    assert not problems, "requirements.lock is stale; run `make lock`:\n" + "\n".join(problems)


def test_bootstrap_lock_pins_uv_with_hashes():
    entries = parse_lock((REPO / "requirements-bootstrap.lock").read_text())
    makefile = (REPO / "Makefile").read_text()
    version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M).group(1)
    assert [(e["name"], e["version"]) for e in entries] == [("uv", version)]
    assert entries[0]["hashes"] > 0


LOCK = """\
numpy==2.4.6 ; python_full_version < '3.12' \\
    --hash=sha256:aa
    # via {project} (pyproject.toml)
numpy==2.5.5 ; python_full_version >= '3.12' \\
    --hash=sha256:bb
    # via
    #   {project} (pyproject.toml)
    #   pandas
pandas==3.1.1 \\
    --hash=sha256:cc
    # via {project} (pyproject.toml)
""".format(project=PROJECT)


@pytest.mark.parametrize("requirements, expected", [
    (["numpy>=1.26", "pandas>=2.2"], []),
    (["numpy>=2.5", "pandas>=2.2"], ["numpy>=2.5: requirements.lock has 2.4.6 for Python 3.11 on aarch64",
                                     "numpy>=2.5: requirements.lock has 2.4.6 for Python 3.11 on x86_64"]),
    (["numpy>=1.26", "pandas>=2.2", "pillow>=10"], ["pillow>=10: not in requirements.lock for Python 3.11 on "
                                                    "aarch64", "pillow>=10: not in requirements.lock for Python "
                                                    "3.11 on x86_64", "pillow>=10: not in requirements.lock for "
                                                    "Python 3.12 on aarch64", "pillow>=10: not in "
                                                    "requirements.lock for Python 3.12 on x86_64"]),
    (["numpy>=1.26"], ["pandas: locked as a dependency of pyproject.toml, which no longer asks for it"]),
])
def test_disagreements_are_named(requirements, expected):
    assert disagreements(LOCK, [Requirement(r) for r in requirements]) == expected


def test_an_entry_without_hash_is_named():
    assert disagreements("six==1.16.0\n    # via {p} (pyproject.toml)\n".format(p=PROJECT),
                         [Requirement("six")]) == ["six==1.16.0: no --hash"]


def test_this_environment_is_the_locked_one():
    """``make test`` installs from the lock, so the packages it runs with are the locked ones."""
    assert installed_differences(REPO / "requirements.lock") == []
