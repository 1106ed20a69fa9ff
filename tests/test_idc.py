"""Tests of the IDC downloader (stages.sources.idc) against moto's S3 server on 127.0.0.1.

moto is an independent implementation of S3 (ListObjectsV2 XML, ETag = MD5 of a whole upload,
Range), so the client is checked against someone else's reading of the protocol, not its own.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from stages.sources import http, idc
from stages.sources.http import DownloadError
from tests.conftest import write_dicom

moto_server = pytest.importorskip("moto.server", reason="moto (test extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (with moto, test extra) is not installed")

BUCKET = "idc-open-data-cr"
FAST = {"retries": 1, "backoff": 0.0, "timeout": 10.0}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on a free port of 127.0.0.1, with dummy credentials for the uploads only."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    # Public like IDC's buckets: anyone may list and read, without signing.
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/*"},
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}"}]}
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    yield {"client": client, "bucket_url": endpoint + "/{bucket}"}
    server.stop()


@pytest.fixture
def series(s3, tmp_path):
    """Two series (2 files and 1 file) uploaded under their crdc_series_uuid, and their index rows."""
    rng = np.random.default_rng(0)
    rows = []
    for number, (uid, n_files) in enumerate([("1.2.826.0.1.3680043.10.474.1", 2), ("1.2.826.0.1.3680043.10.474.2", 1)]):
        uuid = f"{tmp_path.name[-8:]}-{number}"
        size = 0
        for k in range(n_files):
            data = write_dicom(tmp_path / f"src{number}{k}.dcm", rng.integers(0, 4096, (16, 16))).read_bytes()
            s3["client"].put_object(Bucket=BUCKET, Key=f"{uuid}/inst-{k}.dcm", Body=data)
            size += len(data)
        rows.append({"collection_id": idc.RICORD_1C, "PatientID": f"MIDRC-RICORD-1C-P{number}",
                     "StudyInstanceUID": uid + ".0", "SeriesInstanceUID": uid, "Modality": "CR",
                     "SeriesNumber": "1", "SeriesDescription": None, "PatientAge": "050Y", "PatientSex": "M",
                     "instanceCount": n_files, "series_size_MB": size / 1_000_000, "aws_bucket": BUCKET,
                     "crdc_series_uuid": uuid})
    return pd.DataFrame(rows)


def _download(index, s3, tmp_path, **kwargs):
    return idc.download_collection(index, ["CR", "DX"], tmp_path / "dl", tmp_path / "raw",
                                   bucket_url=s3["bucket_url"], workers=2, progress=False, **{**FAST, **kwargs})


def test_series_bytes_reads_the_index_exactly():
    # idc_index.sql: SUM(instance_size)/1000000. as float64; the bytes come back exactly.
    assert idc.series_bytes(8.49411) == 8_494_110 and idc.series_bytes(12265.162106) == 12_265_162_106


def test_download_lists_fetches_verifies_and_places_every_series(series, s3, tmp_path):
    manifest = _download(series, s3, tmp_path)
    assert len(manifest) == 3 and set(manifest.series_uid) == set(series.SeriesInstanceUID)
    for row in manifest.itertuples():
        data = (tmp_path / "raw" / row.file).read_bytes()
        assert hashlib.md5(data).hexdigest() == row.md5 and len(data) == row.bytes
        # the object as S3 holds it (an independent copy of the bytes)
        key = f"{series.set_index('SeriesInstanceUID').crdc_series_uuid[row.series_uid]}/{row.file.split('/')[-1]}"
        assert s3["client"].get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    marker = json.loads((tmp_path / "dl" / f"{series.SeriesInstanceUID[0]}.json").read_text())
    assert marker["verify"] == "idc-index" and len(marker["files"]) == 2


def test_a_finished_series_makes_no_request(series, s3, tmp_path):
    first = _download(series, s3, tmp_path)
    dead = "http://127.0.0.1:9/{bucket}"  # nothing listens there: any request would fail
    again = idc.download_collection(series, ["CR"], tmp_path / "dl", tmp_path / "raw", bucket_url=dead,
                                    progress=False, **FAST)
    pd.testing.assert_frame_equal(first, again)


def test_a_cut_file_resumes_from_its_part(series, s3, tmp_path, monkeypatch):
    """A .part left by an interrupted run is continued with Range (S3 honours it), and a .part that
    does not match the object is caught by the size/MD5 check and fetched again whole."""
    monkeypatch.setattr(http, "sleep", lambda s: None)
    uid, uuid = series.SeriesInstanceUID[0], series.crdc_series_uuid[0]
    whole = s3["client"].get_object(Bucket=BUCKET, Key=f"{uuid}/inst-0.dcm")["Body"].read()
    (tmp_path / "dl" / uid).mkdir(parents=True)
    (tmp_path / "dl" / uid / "inst-0.dcm.part").write_bytes(whole[:500])
    other = s3["client"].get_object(Bucket=BUCKET, Key=f"{uuid}/inst-1.dcm")["Body"].read()
    (tmp_path / "dl" / uid / "inst-1.dcm.part").write_bytes(b"\0" * 100)  # not the object's first bytes
    _download(series, s3, tmp_path)
    assert (tmp_path / "raw" / uid / "inst-0.dcm").read_bytes() == whole
    assert (tmp_path / "raw" / uid / "inst-1.dcm").read_bytes() == other


def test_bucket_and_index_must_agree(series, s3, tmp_path):
    """A series whose objects differ from the index in count or bytes fails, naming both, and the
    other series still finish."""
    wrong = series.copy()
    wrong.loc[0, "instanceCount"] = 3
    wrong.loc[1, "series_size_MB"] += 1e-6
    with pytest.raises(DownloadError) as failed:
        _download(wrong, s3, tmp_path)
    text = str(failed.value)
    assert "2 of 2 series failed" in text
    assert "holds 2 files" in text and "index says 3 files" in text
    assert f"index says 1 files, {idc.series_bytes(series.series_size_MB[1]) + 1} bytes" in text
    assert not list((tmp_path / "raw").glob("1.2*"))


def test_listing_follows_continuation_tokens(s3, tmp_path):
    """Pages of 2 keys (max-keys): every key comes back once, in order, with its MD5 ETag."""
    keys = [f"paged/{n:04d}.dcm" for n in range(5)]
    for key in keys:
        s3["client"].put_object(Bucket=BUCKET, Key=key, Body=b"x")
    listed = idc.list_objects(s3["bucket_url"], BUCKET, "paged/", page_size=2, **FAST)
    assert [o["key"] for o in listed] == keys and {o["etag"] for o in listed} == {hashlib.md5(b"x").hexdigest()}
    assert idc.list_objects(s3["bucket_url"], BUCKET, "paged/", **FAST) == listed
