"""stages.common.manifest: one row per file, sorted, with sha256 checked against published test vectors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from stages.common.manifest import MANIFEST_COLUMNS, MANIFESTS, manifest, manifest_path, write_manifest

# FIPS 180-2's examples (NIST): sha256("abc") and of the empty message.
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_rows_sorted_by_relative_posix_path_with_bytes_and_sha256(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"abc")
    (tmp_path / "a.csv").write_bytes(b"")
    (tmp_path / "B.txt").write_bytes(b"abc")
    (tmp_path / "empty_folder").mkdir()
    table = manifest(tmp_path)
    assert list(table.columns) == MANIFEST_COLUMNS
    assert table.values.tolist() == [["B.txt", 3, SHA256_ABC], ["a.csv", 0, SHA256_EMPTY], ["b/x.png", 3, SHA256_ABC]]


def test_a_file_larger_than_one_read_chunk_hashes_whole(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB: three chunks of 1 MiB
    (tmp_path / "big.dcm").write_bytes(data)
    assert manifest(tmp_path).sha256.tolist() == [hashlib.sha256(data).hexdigest()]


def test_any_change_of_a_file_changes_the_written_manifest(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "one.png").write_bytes(b"\x00" * 100)
    out, _ = write_manifest(folder)
    assert out == tmp_path / "manifests" / "images.csv"
    before = out.read_bytes()
    assert pd.read_csv(out).path.tolist() == ["one.png"]
    (folder / "one.png").write_bytes(b"\x00" * 99 + b"\x01")  # same size, one byte differs
    write_manifest(folder)
    changed = out.read_bytes()
    assert changed != before
    (folder / "one.png").rename(folder / "two.png")
    write_manifest(folder)
    assert out.read_bytes() not in (before, changed)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere is not a folder"):
        manifest(tmp_path / "nowhere")


def test_a_manifest_goes_beside_its_folder():
    assert MANIFESTS == {"data/raw": "data/manifests/raw.csv", "data/images": "data/manifests/images.csv"}
    assert manifest_path("/tmp/x/images") == Path("/tmp/x/manifests/images.csv")
