"""Tests of the NBIA downloader (stages.sources.nbia) and its HTTP layer (stages.sources.http).

Everything runs against a local NBIA-like server on 127.0.0.1 that logs each request, honours (or
ignores) Range requests and injects faults per endpoint and series from a counter-based plan.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stages.sources import http, nbia
from stages.sources.http import DownloadError, fetch, get_json, is_url, md5_file, sha256_file
from tests.conftest import write_dicom
from tests.fake_nbia import COLLECTION, LICENSE_TEXT, ZIP_DATE, FakeNBIA, md5_hex, make_zip, serving

UID_A, UID_B, UID_C = (f"1.2.826.0.1.3680043.10.474.419639.9{n}" for n in (1, 2, 3))
FAST = {"retries": 2, "backoff": 0.25, "timeout": 5.0}


@pytest.fixture(scope="module")
def dicom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small real DICOM files (16x16 uint16, MONOCHROME2), as bytes."""
    folder = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(0)
    return {f"1-{i:02d}.dcm": write_dicom(folder / f"{i}.dcm", rng.integers(0, 4096, (16, 16))).read_bytes()
            for i in range(1, 5)}


@pytest.fixture
def server(dicom_files: dict[str, bytes]):
    """A running fake NBIA with three series: A (CR, 2 files), B (CR, 1 file), C (DX, 1 file)."""
    fake = FakeNBIA()
    names = sorted(dicom_files)
    fake.add_series(UID_A, "CR", {names[0]: dicom_files[names[0]], names[1]: dicom_files[names[1]]})
    fake.add_series(UID_B, "CR", {names[0]: dicom_files[names[2]]})
    fake.add_series(UID_C, "DX", {"sub/" + names[0]: dicom_files[names[3]]})
    with serving(fake):
        yield fake


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """No real waiting between retries; the requested sleeps are recorded instead."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "sleep", recorded.append)
    return recorded


def _collect(server: FakeNBIA, tmp_path: Path, **kwargs: Any) -> pd.DataFrame:
    options = {"workers": 2, "progress": False, **FAST, **kwargs}
    return nbia.download_collection(server.base_url, COLLECTION, ["CR", "DX"], tmp_path / "downloads",
                                    tmp_path / "raw", **options)


def _series_state(tmp_path: Path, uid: str) -> dict[str, bool]:
    downloads = tmp_path / "downloads"
    return {"zip": (downloads / f"{uid}.zip").exists(), "part": (downloads / f"{uid}.zip.part").exists(),
            "marker": (downloads / f"{uid}.json").exists(), "folder": (tmp_path / "raw" / uid).exists()}


def _expected_rows(server: FakeNBIA, verify: str = "md5") -> list[tuple[str, str, int, str, str]]:
    """getImageWithMD5Hash names files 00000001.dcm...; getImage with NewFileNames=Yes keeps theirs."""
    return sorted((uid, f"{uid}/{name}", len(data), md5_hex(data), hashlib.sha256(data).hexdigest())
                  for uid in server.series
                  for name, data in server.served_files(uid, new_file_names=verify == "size").items())


# --- full download ---------------------------------------------------------------------------------


def test_full_download_extracts_every_series_and_writes_manifest(server: FakeNBIA, tmp_path: Path) -> None:
    manifest = _collect(server, tmp_path)

    assert list(manifest.columns) == nbia.MANIFEST_COLUMNS
    got = list(manifest[["series_uid", "file", "bytes", "md5", "sha256"]].itertuples(index=False, name=None))
    assert got == _expected_rows(server)
    for row in manifest.itertuples():
        data = (tmp_path / "raw" / row.file).read_bytes()
        assert md5_hex(data) == row.md5 and hashlib.sha256(data).hexdigest() == row.sha256
        meta = server.series[row.series_uid]["meta"]
        assert (row.study_uid, row.patient_id, row.modality) == \
            (meta["StudyInstanceUID"], meta["PatientID"], meta["Modality"])
    assert set(manifest.modality) == {"CR", "DX"}
    assert not list((tmp_path / "raw").rglob(nbia.MD5_LIST))  # the checksum list is not data
    for uid in server.series:
        assert _series_state(tmp_path, uid) == {"zip": True, "part": False, "marker": True, "folder": True}
        marker = json.loads((tmp_path / "downloads" / f"{uid}.json").read_text())
        assert marker["series_uid"] == uid and marker["verify"] == "md5"
        assert marker["zip"]["md5"] == md5_file(tmp_path / "downloads" / f"{uid}.zip")
        served = server.series[uid]["files"].values()
        assert sorted(f["md5"] for f in marker["files"]) == sorted(md5_hex(d) for d in served)
    # one listing per modality, one zip per series, nothing else
    assert sorted(r["key"] for r in server.requests("getSeries")) == ["CR", "DX"]
    assert sorted(r["key"] for r in server.requests("getImageWithMD5Hash")) == sorted(server.series)
    assert len(server.log) == 5

    out = nbia.write_manifest(manifest, tmp_path / "manifest.csv")
    back = pd.read_csv(out, dtype=str)
    assert list(back.columns) == nbia.MANIFEST_COLUMNS and len(back) == len(manifest)
    assert list(back.md5) == list(manifest.md5)


def test_list_series_merges_modalities_dedupes_and_sorts(server: FakeNBIA) -> None:
    server.series[UID_C]["listed_under"] = {"CR", "DX"}  # a series both queries return
    series = nbia.list_series(server.base_url, COLLECTION, ["DX", "CR", "CR"], **FAST)
    assert [s["SeriesInstanceUID"] for s in series] == [UID_A, UID_B, UID_C]
    assert nbia.list_series(server.base_url, COLLECTION, "MR", **FAST) == []  # empty body -> no series
    with pytest.raises(DownloadError, match="no series"):
        nbia.download_collection(server.base_url, "NO-SUCH", ["CR"], "d", "o", progress=False, **FAST)


# --- restart ---------------------------------------------------------------------------------------


def test_restart_refetches_only_unfinished_series(server: FakeNBIA, tmp_path: Path) -> None:
    server.fail("getImageWithMD5Hash", UID_B, forever="503")
    with pytest.raises(DownloadError) as failed:
        _collect(server, tmp_path)
    message = str(failed.value)
    assert "1 of 3 series failed" in message and UID_B in message and "HTTP 503" in message
    assert UID_A not in message and UID_C not in message
    assert _series_state(tmp_path, UID_B) == {"zip": False, "part": False, "marker": False, "folder": False}
    for uid in (UID_A, UID_C):
        assert _series_state(tmp_path, uid)["marker"] and _series_state(tmp_path, uid)["folder"]

    server.clear_faults()
    server.log.clear()
    manifest = _collect(server, tmp_path)
    assert [r["key"] for r in server.requests("getImageWithMD5Hash")] == [UID_B]
    inode = (tmp_path / "raw" / UID_C / "00000001.dcm").stat().st_ino
    assert sorted(r["endpoint"] for r in server.log) == ["getImageWithMD5Hash", "getSeries", "getSeries"]
    assert len(manifest) == len(_expected_rows(server))

    # A finished rerun downloads nothing; a lost folder is re-extracted from the kept zip, offline.
    server.log.clear()
    shutil.rmtree(tmp_path / "raw" / UID_A)
    again = _collect(server, tmp_path)
    assert [r["endpoint"] for r in server.log] == ["getSeries", "getSeries"]
    assert (tmp_path / "raw" / UID_A).is_dir()
    assert (tmp_path / "raw" / UID_C / "00000001.dcm").stat().st_ino == inode  # finished: not re-extracted
    pd.testing.assert_frame_equal(again, manifest)


def test_complete_zip_without_marker_is_verified_not_refetched(server: FakeNBIA, tmp_path: Path) -> None:
    """A crash between the zip's rename and the marker's write: the zip is verified, not downloaded again."""
    series = nbia.list_series(server.base_url, COLLECTION, ["CR"], **FAST)[0]
    nbia.download_series(server.base_url, series, tmp_path / "downloads", tmp_path / "raw", **FAST)
    (tmp_path / "downloads" / f"{UID_A}.json").unlink()
    server.log.clear()
    files = nbia.download_series(server.base_url, series, tmp_path / "downloads", tmp_path / "raw", **FAST)
    assert server.log == [] and len(files) == 2
    assert (tmp_path / "downloads" / f"{UID_A}.json").exists()


# --- truncation, 5xx, timeouts ---------------------------------------------------------------------


def test_truncated_body_is_retried_and_succeeds(server: FakeNBIA, tmp_path: Path) -> None:
    server.honour_range = False
    server.fail("getImageWithMD5Hash", UID_B, "truncate")
    manifest = _collect(server, tmp_path)
    attempts = server.requests("getImageWithMD5Hash", UID_B)
    assert [r["action"] for r in attempts] == ["truncate", "ok"] and attempts[1]["status"] == 200
    assert UID_B in set(manifest.series_uid)
    assert _series_state(tmp_path, UID_B) == {"zip": True, "part": False, "marker": True, "folder": True}


def test_truncated_every_time_reports_truncation(server: FakeNBIA, tmp_path: Path, sleeps: list[float]) -> None:
    server.fail("getImageWithMD5Hash", UID_B, forever="truncate")
    # No Content-Length to compare with: the missing final chunk is what gives the truncation away.
    with pytest.raises(DownloadError, match=rf"(?s){re.escape(UID_B)}.*connection dropped after \d+ bytes"):
        _collect(server, tmp_path)
    assert len(server.requests("getImageWithMD5Hash", UID_B)) == FAST["retries"] + 1
    state = _series_state(tmp_path, UID_B)
    assert not state["zip"] and not state["marker"] and not state["folder"]


def test_503_is_retried_with_exponential_backoff(server: FakeNBIA, tmp_path: Path, sleeps: list[float]) -> None:
    server.fail("getImageWithMD5Hash", UID_A, "503", "429")
    series = nbia.list_series(server.base_url, COLLECTION, ["CR"], **FAST)[0]
    files = nbia.download_series(server.base_url, series, tmp_path / "downloads", tmp_path / "raw", **FAST)
    assert len(files) == 2
    assert [r["status"] for r in server.requests("getImageWithMD5Hash", UID_A)] == [503, 429, 200]
    assert sleeps == [0.25, 0.5]


def test_503_forever_and_404_fail_with_the_reason(server: FakeNBIA, tmp_path: Path) -> None:
    server.fail("getImageWithMD5Hash", UID_A, forever="503")
    series = nbia.list_series(server.base_url, COLLECTION, ["CR"], **FAST)[0]
    with pytest.raises(DownloadError, match=rf"{re.escape(UID_A)}.*HTTP 503"):
        nbia.download_series(server.base_url, series, tmp_path / "d", tmp_path / "o", **FAST)
    assert len(server.requests("getImageWithMD5Hash", UID_A)) == FAST["retries"] + 1

    server.fail("getImageWithMD5Hash", UID_A, forever="404")
    server.log.clear()
    with pytest.raises(DownloadError, match="HTTP 404"):
        nbia.download_series(server.base_url, series, tmp_path / "d", tmp_path / "o", **FAST)
    assert len(server.log) == 1  # a client error is not retried

    server.fail("getSeries", "CR", "500", forever="503")
    with pytest.raises(DownloadError, match=r"getSeries.*HTTP 503"):
        nbia.list_series(server.base_url, COLLECTION, ["CR"], **FAST)


def test_timeout_is_retried(server: FakeNBIA, tmp_path: Path) -> None:
    server.blobs["x.bin"] = b"y" * 100
    server.fail("blob", "x.bin", "slow")
    info = fetch(server.base_url + "blob/x.bin", tmp_path / "x.bin", retries=1, backoff=0, timeout=0.3)
    assert info["bytes"] == 100 and [r["action"] for r in server.requests("blob")] == ["slow", "ok"]


# --- checksums -------------------------------------------------------------------------------------


def test_bad_md5_is_retried_then_reported_and_leaves_nothing(server: FakeNBIA, tmp_path: Path) -> None:
    server.fail("getImageWithMD5Hash", UID_A, "bad_md5")
    server.fail("getImageWithMD5Hash", UID_B, forever="bad_md5")
    with pytest.raises(DownloadError) as failed:
        _collect(server, tmp_path)
    message = str(failed.value)
    assert "1 of 3" in message and UID_B in message and "md5 mismatch" in message
    assert len(server.requests("getImageWithMD5Hash", UID_B)) == FAST["retries"] + 1
    assert len(server.requests("getImageWithMD5Hash", UID_A)) == 2  # a bad list once, then fine
    assert _series_state(tmp_path, UID_A) == {"zip": True, "part": False, "marker": True, "folder": True}
    assert _series_state(tmp_path, UID_B) == {"zip": False, "part": False, "marker": False, "folder": False}
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]  # no staging left


def test_md5_list_must_cover_exactly_the_zip(server: FakeNBIA, tmp_path: Path) -> None:
    """A file missing from md5hashes.csv is a verification failure, not a pass."""
    entry = server.series[UID_B]
    original = server.zip_for

    def without_row(uid: str, with_md5: bool, bad_md5: bool = False, **kwargs: Any) -> bytes:
        data = original(uid, with_md5, bad_md5, **kwargs)
        if uid != UID_B:
            return data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = {i.filename: archive.read(i) for i in archive.infolist()}
        entries["extra.dcm"] = b"not listed"
        return make_zip(entries)

    server.zip_for = without_row  # type: ignore[method-assign]
    series = {**entry["meta"]}
    with pytest.raises(DownloadError, match="no MD5 listed for extra.dcm"):
        nbia.download_series(server.base_url, series, tmp_path / "d", tmp_path / "o", **FAST)
    assert not (tmp_path / "d" / f"{UID_B}.json").exists()


# --- zip slip ----------------------------------------------------------------------------------------


def _zip_file(path: Path, entries: list[zipfile.ZipInfo | str], data: bytes = b"evil") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.dcm", b"fine")
        for entry in entries:
            archive.writestr(entry, data)
    return path


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "ABSOLUTE", "C:/evil.dcm", "..\\evil.dcm"])
def test_safe_extract_refuses_escaping_entries(tmp_path: Path, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(tmp_path / "evil_abs.dcm")
    out = tmp_path / "a" / "b" / "series"
    archive = _zip_file(tmp_path / "evil.zip", [zipfile.ZipInfo(name, date_time=ZIP_DATE)])
    with pytest.raises(nbia.UnsafeArchiveError) as refused:
        nbia.safe_extract(archive, out)
    assert "evil.zip" in str(refused.value) and repr(name) in str(refused.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.zip"]  # nothing written anywhere


def test_safe_extract_refuses_symlinks_and_keeps_old_content_on_failure(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link.dcm", date_time=ZIP_DATE)
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    out = tmp_path / "series"
    out.mkdir()
    (out / "old.dcm").write_bytes(b"old")
    with pytest.raises(nbia.UnsafeArchiveError, match="symbolic link"):
        nbia.safe_extract(_zip_file(tmp_path / "link.zip", [link], b"/etc/passwd"), out)
    assert [p.name for p in out.iterdir()] == ["old.dcm"]
    files = nbia.safe_extract(_zip_file(tmp_path / "good.zip", ["sub/x.dcm"]), out)
    assert [f["file"] for f in files] == ["ok.dcm", "sub/x.dcm"] and files[0]["md5"] == md5_hex(b"fine")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["ok.dcm", "sub", "sub/x.dcm"]
    assert stat.S_IMODE(out.stat().st_mode) & 0o755 == 0o755  # not mkdtemp's private 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.zip", "link.zip", "series"]


def test_safe_extract_is_all_or_nothing(tmp_path: Path) -> None:
    """A failure mid-extraction (here a CRC error in the second file) leaves the old folder as it was."""
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.dcm", b"first file")
        zf.writestr("b.dcm", b"SECOND-FILE-PAYLOAD")
    data = archive.read_bytes()
    archive.write_bytes(data.replace(b"SECOND-FILE-PAYLOAD", b"SECOND-FILE-PAYLOAX"))
    out = tmp_path / "series"
    out.mkdir()
    (out / "old.dcm").write_bytes(b"old")
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        nbia.safe_extract(archive, out)
    assert [p.name for p in out.iterdir()] == ["old.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crc.zip", "series"]  # no staging folder left


def test_zip_slip_series_is_refused_end_to_end(server: FakeNBIA, tmp_path: Path) -> None:
    absolute = tmp_path / "evil_abs.dcm"
    server.series[UID_C]["extra"] = {"../evil.dcm": b"evil", str(absolute): b"evil"}
    with pytest.raises(DownloadError, match=rf"(?s){re.escape(UID_C)}.*refusing entry '\.\./evil\.dcm'"):
        _collect(server, tmp_path)
    assert not absolute.exists() and not list(tmp_path.rglob("evil*"))
    assert _series_state(tmp_path, UID_C) == {"zip": False, "part": False, "marker": False, "folder": False}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [UID_A, UID_B]


# --- resume via Range ----------------------------------------------------------------------------------


def test_part_file_is_resumed_with_range(server: FakeNBIA, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 16
    server.blobs["data.bin"] = blob
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(blob[:1000])
    info = fetch(server.base_url + "blob/data.bin", dest, sha256=hashlib.sha256(blob).hexdigest(), **FAST)
    assert [(r["range"], r["status"]) for r in server.log] == [("bytes=1000-", 206)]
    assert dest.read_bytes() == blob and info["bytes"] == len(blob) and info["md5"] == md5_hex(blob)
    assert not (tmp_path / "data.bin.part").exists()


def test_truncated_series_zip_starts_again_from_zero(server: FakeNBIA, tmp_path: Path) -> None:
    """NBIA streams each zip as it builds it (no Content-Length, no Range, new entry times), so a
    cut-off series is fetched again whole: no Range header, and the kept zip is the second one."""
    # Large and incompressible, so the first half spans several read chunks that reach the .part.
    server.series[UID_A]["files"]["big.dcm"] = np.random.default_rng(1).bytes(600_000)
    server.fail("getImageWithMD5Hash", UID_A, "truncate")
    series = nbia.list_series(server.base_url, COLLECTION, ["CR"], **FAST)[0]
    files = nbia.download_series(server.base_url, series, tmp_path / "d", tmp_path / "o", **FAST)
    first, second = server.requests("getImageWithMD5Hash", UID_A)
    assert first["range"] is None and second["range"] is None and second["status"] == 200
    assert sorted(f["file"] for f in files) == ["00000001.dcm", "00000002.dcm", "00000003.dcm"]
    assert sorted(f["md5"] for f in files) == sorted(md5_hex(d) for d in server.series[UID_A]["files"].values())
    assert not (tmp_path / "d" / f"{UID_A}.zip.part").exists()


def test_a_left_over_part_is_not_resumed_for_a_series_zip(server: FakeNBIA, tmp_path: Path) -> None:
    """A .part from an earlier run (here: the first half of a zip of the same series) is thrown
    away: the next zip's bytes differ, so appending to it would make a corrupt zip."""
    earlier = server.zip_for(UID_B, True, date_time=(2025, 1, 1, 0, 0, 0))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / f"{UID_B}.zip.part").write_bytes(earlier[: len(earlier) // 2])
    series = {**server.series[UID_B]["meta"]}
    files = nbia.download_series(server.base_url, series, tmp_path / "d", tmp_path / "o", **FAST)
    assert [(r["range"], r["status"]) for r in server.requests("getImageWithMD5Hash")] == [(None, 200)]
    assert [f["md5"] for f in files] == [md5_hex(d) for d in server.series[UID_B]["files"].values()]


def test_series_zips_differ_between_downloads(server: FakeNBIA) -> None:
    """The fake, like NBIA, stamps entries at request time: the premise of not resuming."""
    import requests
    url, params = server.base_url + "getImageWithMD5Hash", {"SeriesInstanceUID": UID_B}
    first, second = requests.get(url, params=params, timeout=5), requests.get(url, params=params, timeout=5)
    assert first.content != second.content and "Content-Length" not in first.headers
    assert first.headers.get("Transfer-Encoding") == "chunked"
    assert requests.get(url, params=params, headers={"Range": "bytes=10-"}, timeout=5).status_code == 200


def test_server_side_abort_gives_a_short_valid_zip_that_verification_catches(
        server: FakeNBIA, tmp_path: Path) -> None:
    """On an error mid-series NBIA closes the zip early: it ends validly but lacks files (and the md5
    list). Both verify modes refuse it and download again."""
    server.fail("getImageWithMD5Hash", UID_A, "abort")
    server.fail("getImage", UID_A, "abort")
    for verify in ("md5", "size"):
        series = {**server.series[UID_A]["meta"]}
        files = nbia.download_series(server.base_url, series, tmp_path / verify, tmp_path / f"o{verify}",
                                     verify=verify, **FAST)
        assert len(files) == 2
    assert [r["action"] for r in server.requests("getImageWithMD5Hash", UID_A)] == ["abort", "ok"]
    assert [r["action"] for r in server.requests("getImage", UID_A)] == ["abort", "ok"]


def test_license_entry_is_not_data(server: FakeNBIA, tmp_path: Path) -> None:
    """getImage's zip starts with LICENSE (no suffix): not extracted, not in the manifest, not
    counted against getSeriesSize (which counts DICOMs only); its sha256 is kept in the marker."""
    manifest = _collect(server, tmp_path, verify="size")
    with zipfile.ZipFile(tmp_path / "downloads" / f"{UID_A}.zip") as archive:
        assert archive.namelist()[0] == "LICENSE"
    assert not list((tmp_path / "raw").rglob("LICENSE")) and not manifest.file.str.endswith("LICENSE").any()
    marker = json.loads((tmp_path / "downloads" / f"{UID_A}.json").read_text())
    assert marker["license_sha256"] == hashlib.sha256(LICENSE_TEXT).hexdigest()


def test_unknown_query_parameter_is_refused_as_v4_does(server: FakeNBIA) -> None:
    """v4 answers 400 to a parameter it does not know; the client sends only known ones."""
    with pytest.raises(DownloadError, match="HTTP 400"):
        get_json(server.base_url + "getSeries", params={"Collection": COLLECTION, "Modality": "CR", "x": "1"}, **FAST)


def test_part_file_restarts_from_zero_when_range_is_ignored(server: FakeNBIA, tmp_path: Path) -> None:
    server.honour_range = False
    blob = b"0123456789" * 400
    server.blobs["data.bin"] = blob
    (tmp_path / "data.bin.part").write_bytes(b"garbage!" * 125)
    info = fetch(server.base_url + "blob/data.bin", tmp_path / "data.bin", md5=md5_hex(blob), **FAST)
    assert [(r["range"], r["status"]) for r in server.log] == [("bytes=1000-", 200)]
    assert (tmp_path / "data.bin").read_bytes() == blob and info["sha256"] == hashlib.sha256(blob).hexdigest()


# --- verify="size" -----------------------------------------------------------------------------------


def test_verify_size_uses_get_series_size(server: FakeNBIA, tmp_path: Path) -> None:
    manifest = _collect(server, tmp_path, verify="size")
    assert list(manifest[["series_uid", "file", "bytes", "md5", "sha256"]].itertuples(index=False, name=None)) \
        == _expected_rows(server, "size")
    assert not server.requests("getImageWithMD5Hash")
    assert sorted(r["key"] for r in server.requests("getImage")) == sorted(server.series)
    assert all(r["query"]["NewFileNames"] == "Yes" for r in server.requests("getImage"))
    assert sorted(r["key"] for r in server.requests("getSeriesSize")) == sorted(server.series)


def test_verify_size_mismatch_is_retried_then_reported(server: FakeNBIA, tmp_path: Path) -> None:
    server.fail("getSeriesSize", UID_B, forever="bad_size")
    with pytest.raises(DownloadError, match=rf"(?s){re.escape(UID_B)}.*size mismatch"):
        _collect(server, tmp_path, verify="size")
    assert len(server.requests("getImage", UID_B)) == FAST["retries"] + 1
    assert _series_state(tmp_path, UID_B) == {"zip": False, "part": False, "marker": False, "folder": False}


# --- fetch basics --------------------------------------------------------------------------------------


def test_fetch_skips_request_when_dest_matches(server: FakeNBIA, tmp_path: Path) -> None:
    blob = b"payload" * 50
    server.blobs["p.bin"] = blob
    url = server.base_url + "blob/p.bin"
    dest = tmp_path / "p.bin"
    dest.write_bytes(blob)
    info = fetch(url, dest, sha256=hashlib.sha256(blob).hexdigest(), **FAST)
    assert server.log == [] and info["bytes"] == len(blob) and info["path"] == dest
    assert fetch(url, dest, **FAST)["md5"] == md5_hex(blob) and server.log == []  # no checksum: trusted

    dest.write_bytes(b"stale")  # wrong content for the given checksum: downloaded again
    fetch(url, dest, sha256=hashlib.sha256(blob).hexdigest(), **FAST)
    assert len(server.log) == 1 and dest.read_bytes() == blob

    with pytest.raises(DownloadError, match=r"p\.bin.*sha256 mismatch: expected 0+, got"):
        fetch(url, tmp_path / "q.bin", sha256="0" * 64, **FAST)
    assert not (tmp_path / "q.bin").exists() and not (tmp_path / "q.bin.part").exists()
    assert len(server.log) == 1 + FAST["retries"] + 1


def test_get_json_and_helpers(server: FakeNBIA, tmp_path: Path) -> None:
    assert get_json(server.base_url + "getSeries", params={"Collection": "X", "Modality": "CR"}, **FAST) == []
    server.fail("getSeries", "CR", "502")
    listed = get_json(server.base_url + "getSeries", params={"Collection": COLLECTION, "Modality": "CR"}, **FAST)
    assert [s["SeriesInstanceUID"] for s in listed] == [UID_A, UID_B]
    assert is_url("https://services.cancerimagingarchive.net/nbia-api/services/v4/") and is_url("http://x/y")
    assert not is_url("data/raw/ricord") and not is_url("C:\\data") and not is_url("ftp://x/y")
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert md5_file(path) == md5_hex(b"abc") and sha256_file(path) == hashlib.sha256(b"abc").hexdigest()


def test_manifest_file_column_is_posix_relative_to_out_dir(server: FakeNBIA, tmp_path: Path) -> None:
    manifest = _collect(server, tmp_path, workers=1, verify="size")  # getImage keeps the names (sub/)
    dx = manifest[manifest.series_uid == UID_C]
    assert list(dx.file) == [f"{UID_C}/sub/1-01.dcm"]
    assert (tmp_path / "raw" / UID_C / "sub" / "1-01.dcm").is_file()
    rows = list(csv.DictReader(nbia.write_manifest(manifest, tmp_path / "m.csv").open()))
    assert rows[0]["series_uid"] == UID_A and rows[0]["file"] == f"{UID_A}/1-01.dcm"
