"""acquire's two guards on the real source (issue 20), against a server on 127.0.0.1: a pinned
MD.ai export whose sha256 differs, and more missing COVIDx images than
``ricord.covidx_max_missing_fraction`` allows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stages import schema
from stages.sources import covidnet_files as covidnet
from stages.sources import ricord
from stages.sources.http import DownloadError
from tests.fake_nbia import FakeNBIA, serving

EXPORT = b'{"id": "P", "datasets": []}'


@pytest.fixture
def server():
    fake = FakeNBIA()
    fake.static["/mdai/export.json"] = EXPORT
    with serving(fake):
        yield fake


def _params(fake: FakeNBIA, **extra) -> dict:
    return {"retries": 0, "timeout_s": 5, "covidnet_base_url": fake.root_url, **extra}


def test_a_local_export_with_the_pinned_sha256_is_placed(tmp_path):
    local = tmp_path / "export.json"
    local.write_bytes(EXPORT)
    digest = hashlib.sha256(EXPORT).hexdigest()
    checksums = ricord.fetch_annotations(tmp_path / "downloads", tmp_path / "raw",
                                         {"annotations": str(local), "annotations_sha256": digest})
    assert checksums == {schema.RICORD_ANNOTATIONS: digest}
    assert (tmp_path / "raw" / schema.RICORD_ANNOTATIONS).read_bytes() == EXPORT


def test_a_local_export_whose_sha256_differs_stops_acquire_naming_file_and_both_hashes(tmp_path):
    local = tmp_path / "export.json"
    local.write_bytes(EXPORT + b"\n")
    pinned = hashlib.sha256(EXPORT).hexdigest()
    actual = hashlib.sha256(EXPORT + b"\n").hexdigest()
    with pytest.raises(SystemExit) as stop:
        ricord.fetch_annotations(tmp_path / "downloads", tmp_path / "raw",
                                 {"annotations": str(local), "annotations_sha256": pinned})
    pin_file = tmp_path / "downloads" / "annotations" / "export.json.pin.json"
    assert str(stop.value) == (f"acquire: {local}: sha256 {actual} does not match the pin {pinned} "
                               f"(ricord.annotations_sha256 or {pin_file})")
    assert not (tmp_path / "raw" / schema.RICORD_ANNOTATIONS).exists()
    with pytest.raises(SystemExit, match=r"acquire: ricord.annotations .*nowhere.json is not a file"):
        ricord.fetch_annotations(tmp_path / "downloads", tmp_path / "raw",
                                 {"annotations": str(tmp_path / "nowhere.json")})


def test_a_downloaded_export_whose_sha256_differs_is_refused(server, tmp_path):
    url = f"{server.root_url}/mdai/export.json?api=v2"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        ricord.fetch_annotations(tmp_path / "downloads", tmp_path / "raw",
                                 _params(server, annotations=url, annotations_sha256=wrong))
    assert not (tmp_path / "raw" / schema.RICORD_ANNOTATIONS).exists()
    right = hashlib.sha256(EXPORT).hexdigest()
    checksums = ricord.fetch_annotations(tmp_path / "downloads", tmp_path / "raw",
                                         _params(server, annotations=url, annotations_sha256=right))
    assert checksums == {schema.RICORD_ANNOTATIONS: right}
    assert (tmp_path / "downloads" / "annotations" / "export.json").read_bytes() == EXPORT


# --- covidx_max_missing_fraction: 10 listed images (8 train, 2 test) ---------------------------
TRAIN = [f"p{i} img{i}.png {'positive' if i % 2 else 'negative'} rsna" for i in range(8)]
TEST = [f"q{i} test{i}.png negative rsna" for i in range(2)]


@pytest.fixture
def covidx(server, tmp_path, monkeypatch):
    """The two lists served with their sha256 pinned; a local COVIDx folder holding ``present``."""
    pinned = {}
    for name, lines in (("train", TRAIN), ("test", TEST)):
        body = ("\n".join(lines) + "\n").encode()
        path = f"labels/{name}_tiny.txt"
        server.static[f"/{covidnet.REPOSITORY}/{covidnet.COMMIT}/{path}"] = body
        pinned[name] = (path, hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(covidnet, "COVIDX_LIST_FILES", pinned)
    folder = tmp_path / "covidx"

    def with_missing(n_missing: int) -> Path:
        names = [line.split()[1] for line in TRAIN] + [line.split()[1] for line in TEST]
        for name in names[n_missing:]:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"png")
        return folder

    return with_missing


def test_missing_covidx_images_up_to_the_limit_are_listed(server, covidx, tmp_path):
    folder = covidx(1)  # img0 missing: 1 of 10 = 10%, exactly the limit
    summary = ricord.fetch_covidx(tmp_path / "downloads", tmp_path / "raw",
                                  _params(server, covidx_dir=str(folder), covidx_max_missing_fraction=0.1))
    assert {k: summary[k] for k in ("images_found", "images_downloaded", "images_missing")} == {
        "images_found": 9, "images_downloaded": 0, "images_missing": 1}
    assert (tmp_path / "raw" / schema.COVIDX_MISSING).read_text() == "train img0.png not in ricord.covidx_dir under train/, val/, test/ or flat\n"
    assert sorted(p.name for p in (tmp_path / "raw" / schema.COVIDX_IMAGES_DIR).iterdir()) == sorted(
        [f"img{i}.png" for i in range(1, 8)] + ["test0.png", "test1.png"])


def test_more_missing_covidx_images_than_the_limit_stop_acquire(server, covidx, tmp_path):
    folder = covidx(2)  # img0, img1 missing: 2 of 10 = 20%
    with pytest.raises(SystemExit) as stop:
        ricord.fetch_covidx(tmp_path / "downloads", tmp_path / "raw",
                            _params(server, covidx_dir=str(folder), covidx_max_missing_fraction=0.1))
    message = str(stop.value)
    assert message.startswith("acquire: 2 of 10 COVIDx images (20.0%) are missing, above "
                              "ricord.covidx_max_missing_fraction=10.0%")
    assert str(tmp_path / "downloads" / "covidx" / "missing.txt") in message
    # The list of what is missing survives the failed run, in the downloads folder.
    assert (tmp_path / "downloads" / "covidx" / "missing.txt").read_text() == (
        "train img0.png not in ricord.covidx_dir under train/, val/, test/ or flat\ntrain img1.png not in ricord.covidx_dir under train/, val/, test/ or flat\n")


def test_the_default_limit_allows_no_missing_image(server, covidx, tmp_path):
    folder = covidx(1)
    with pytest.raises(SystemExit, match=r"1 of 10 COVIDx images \(10.0%\) are missing, above "
                                         r"ricord.covidx_max_missing_fraction=0.0%"):
        ricord.fetch_covidx(tmp_path / "downloads", tmp_path / "raw", _params(server, covidx_dir=str(folder)))
    with pytest.raises(SystemExit, match=r"ricord.covidx_dir .*elsewhere is not a folder"):
        ricord.fetch_covidx(tmp_path / "downloads", tmp_path / "raw",
                            _params(server, covidx_dir=str(tmp_path / "elsewhere")))
