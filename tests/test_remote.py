"""A DVC remote carries every output of the pipeline to a fresh clone, where nothing needs to run.

The workspace's own outputs (those of the committed ``dvc.lock``, from its DVC cache: no retraining)
go through an S3-compatible server started on 127.0.0.1 (``tests/local_s3.py``) into a ``git clone``
that has nothing else; there ``dvc status`` is clean, ``dvc repro`` runs no stage and every output
is byte-identical to the workspace's. A fresh clone without outputs (CI) skips this file: there
``tests/test_reproduce.py`` makes the same round trip with its clean reproduction.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stages.checks.reproduce import dvc
from tests.local_s3 import UP_TO_DATE, assert_arrived, differing_files, round_trip, s3_server

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 1.2 GB through the local server and back (about 2 minutes here)
def test_a_dvc_remote_carries_the_pipeline_outputs_to_a_fresh_clone(tmp_path):
    if UP_TO_DATE not in dvc(REPO, "status").stdout:
        pytest.skip("the workspace does not hold the outputs of dvc.lock (`dvc status` is not clean; run "
                    "`make repro`); tests/test_reproduce.py makes this round trip with its reproduction")
    with s3_server() as endpoint:
        trip = round_trip(REPO, tmp_path, endpoint)
    assert_arrived(trip)
    shutil.rmtree(trip.clone)  # 2.4 GB (cache and workspace); kept when the test fails



def test_the_byte_comparison_names_missing_and_changed_files(tmp_path):
    left, right = tmp_path / "left", tmp_path / "right"
    for root, folder_file, changed in ((left, "a", b"0"), (right, "b", b"1")):
        (root / "folder").mkdir(parents=True)
        (root / "folder" / folder_file).write_bytes(b"x")
        (root / "folder" / "same").write_bytes(b"same")
        (root / "file").write_bytes(changed)
    (left / "only_left").write_bytes(b"")
    assert differing_files(left, right, ["folder", "file", "only_left"]) == [
        "folder/a: only on one side", "folder/b: only on one side", "file: bytes differ", "only_left: missing on one side"]
    assert differing_files(left, right, ["folder/same"]) == []
