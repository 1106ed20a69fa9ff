"""stages.common.io.atomic_folder: a folder is replaced whole or not at all."""

from __future__ import annotations

import stat

import pytest

from stages.common.io import UMASK, atomic_folder


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_new_content_replaces_the_old_whole(tmp_path):
    target = tmp_path / "raw"
    (target / "old").mkdir(parents=True)
    (target / "old" / "a.dcm").write_bytes(b"old")
    with atomic_folder(target) as staging:
        assert staging.parent == tmp_path and staging != target
        assert _files(target) == ["old/a.dcm"]  # untouched while the new content is built
        (staging / "b.dcm").write_bytes(b"new")
    assert _files(target) == ["b.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no staging or old folder left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~UMASK  # not mkdtemp's private 0700


def test_a_failure_keeps_the_old_content_and_removes_the_staging(tmp_path):
    target = tmp_path / "raw"
    target.mkdir()
    (target / "a.dcm").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_folder(target) as staging:
            (staging / "half.dcm").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert _files(target) == ["a.dcm"] and (target / "a.dcm").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_a_new_folder_and_its_parents_are_created(tmp_path):
    target = tmp_path / "data" / "downloads" / "series"
    with atomic_folder(target) as staging:
        (staging / "x").write_bytes(b"1")
    assert _files(target) == ["x"]
