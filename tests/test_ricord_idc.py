"""``data.source: ricord`` with ``ricord.service: idc``, end to end and offline: acquire -> ingest ->
group -> split (reference mode) against moto's S3 server (IDC's buckets) and a local HTTP server
(COVID-Net's pinned files from ../shared/data, the MD.ai export).

The radiographs copy the real structure of the 133 studies behind the paper's 150 test images, as
IDC's index (idc-index-data) lists them: patient, study and series UIDs, series numbers and
descriptions, instances per series (159). Pixels are generated; each series' size in the index is
that of the generated files. The test holds when ingest names the images as COVID-Net did: the
split's test set is then exactly the 150 names of test_COVIDxSev.txt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from stages import acquire, group, ingest, schema, split
from stages.sources import covidnet_files as covidnet, idc
from tests.conftest import write_dicom
from tests.fake_nbia import FakeNBIA, serve_covidnet_files, serving

moto_server = pytest.importorskip("moto.server", reason="moto (test extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (with moto, test extra) is not installed")
idc_index_data = pytest.importorskip("idc_index_data", reason="idc-index-data (test extra) is not installed")
pytest.importorskip("pyarrow", reason="pyarrow (test extra) reads idc_index.parquet")

LEVEL_LABEL = {1: schema.MILD, 2: schema.MODERATE}
pytestmark = pytest.mark.slow  # ~10-15 s: 159 DICOMs through acquire, ingest, group and split


def _study_key(patient_id: str, study_uid: str) -> tuple[str, str]:
    return patient_id.removeprefix(covidnet.RICORD_PREFIX), study_uid[-5:]


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_covidnet):
    shared, folder = shared_covidnet, shared_covidnet / "ricord-covidnet"
    tmp = tmp_path_factory.mktemp("ricord_idc")
    lists = {name: covidnet.read_severity_list(folder / f"{name}_COVIDxSev.txt") for name in ("train", "test")}
    level_of_study = {}
    for image_id, level in zip(pd.concat(lists.values()).image_id, pd.concat(lists.values()).airspace_level):
        patient, study5, _ = image_id.removeprefix(covidnet.RICORD_PREFIX).rsplit("-", 2)
        level_of_study[(patient, study5)] = level
    test_studies = {tuple(i.removeprefix(covidnet.RICORD_PREFIX).rsplit("-", 2)[:2]) for i in lists["test"].image_id}
    index, _ = idc.load_index()
    keys = [_study_key(p, s) for p, s in zip(index.PatientID, index.StudyInstanceUID)]
    # The test studies, and the listed studies that hold a lateral series (train list): there the
    # lateral is numbered before the frontal image, so only COVID-Net's order finds the listed name.
    lateral = index.SeriesDescription.fillna("").str.lower().str.startswith("lat")
    lateral_studies = {k for k, is_lateral in zip(keys, lateral) if is_lateral and k in level_of_study}
    index = index[[k in test_studies or k in lateral_studies for k in keys]].reset_index(drop=True)

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
              "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::{b}", "arn:aws:s3:::{b}/*"]}]}
    rng = np.random.default_rng(0)
    sizes = []
    for bucket in sorted(set(index.aws_bucket)):
        client.create_bucket(Bucket=bucket)
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy).replace("{b}", bucket))
    for row in index.itertuples():
        size = 0
        for k in range(int(row.instanceCount)):
            lateral = str(row.SeriesDescription).lower().startswith("lat")
            path = write_dicom(tmp / "src" / f"{row.SeriesInstanceUID}-{k}.dcm", rng.integers(0, 4096, (64, 64)),
                               view="LL" if lateral else "AP")
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = row.PatientID, row.StudyInstanceUID, row.SeriesInstanceUID
            ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[row.SeriesInstanceUID, str(k)])
            ds.SeriesNumber, ds.InstanceNumber = row.SeriesNumber, k + 1
            if isinstance(row.SeriesDescription, str):
                ds.SeriesDescription = row.SeriesDescription
            ds.save_as(path)
            data = path.read_bytes()
            client.put_object(Bucket=row.aws_bucket, Key=f"{row.crdc_series_uuid}/{k:04d}.dcm", Body=data)
            size += len(data)
        sizes.append(size / 1_000_000)
    index = index.assign(series_size_MB=sizes)

    fake = FakeNBIA()  # here only a static file server (GitHub raw, the MD.ai URL)
    serve_covidnet_files(fake, shared)
    studies = sorted(set(index.StudyInstanceUID))
    labels = [{"id": f"L{n}", "name": name, "scope": "STUDY"} for n, name in enumerate(schema.AIRSPACE_LABELS)]
    label_id = {label["name"]: label["id"] for label in labels}
    patient_of = dict(zip(index.StudyInstanceUID, index.PatientID))
    annotations = [{"id": f"A{n}-{reader}", "StudyInstanceUID": study, "createdById": reader,
                    "labelId": label_id[LEVEL_LABEL[level_of_study[_study_key(patient_of[study], study)]]]}
                   for n, study in enumerate(studies) for reader in ("R1", "R2")]
    export = {"id": "P", "name": "fake", "labelGroups": [{"id": "G", "name": schema.AIRSPACE_GROUP, "labels": labels}],
              "datasets": [{"id": "D", "name": "d", "annotations": annotations,
                            "studies": [{"StudyInstanceUID": s, "number": i} for i, s in enumerate(studies)]}]}
    fake.static["/mdai/export.json"] = json.dumps(export).encode()
    with serving(fake):
        yield {"fake": fake, "tmp": tmp, "index": index, "test_list": lists["test"], "lists": lists,
               "lateral_studies": lateral_studies,
               "bucket_url": f"http://{host}:{port}/{{bucket}}"}
    server.stop()


@pytest.fixture(scope="module")
def pipeline(world):
    fake, tmp = world["fake"], world["tmp"]
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["data"]["source"] = "ricord"
    params["ricord"].update({
        "service": "idc", "idc_bucket_url": world["bucket_url"], "workers": 4, "retries": 1, "timeout_s": 10,
        "annotations": f"{fake.root_url}/mdai/export.json", "annotations_bytes": None,
        "covidnet_base_url": fake.root_url, "covidx_dir": None, "covidx_max_missing_fraction": 1.0,
        "covidx_image_urls": {}})
    params["ingest"].update({"image_size": 32, "max_reject_fraction": 0.0})
    params["split"].update({"mode": "reference", "val_fraction": 0.2})
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:  # IDC's index, with the generated files' sizes
        patch.setattr(idc, "load_index", lambda collection=idc.RICORD_1C: (world["index"], "test"))
        summary = acquire.acquire(tmp / "raw", params, tmp / "downloads")
    with pytest.MonkeyPatch.context() as patch:  # the boxes are in full-size pixels; ours are 64 px
        patch.setattr(ingest, "read_crop_boxes_if_any", lambda raw: {})  # (boxes: tests/test_ingest.py)
        ingest.run(tmp / "raw", tmp / "images", tmp / "tables", params, workers=1)
    for stage, metrics in ((group, "cohort.json"), (split, "split.json")):
        stage.main(["--raw", str(tmp / "raw"), "--tables", str(tmp / "tables"), "--metrics", str(tmp / metrics),
                    "--params", str(params_file)])
    return {**world, "summary": summary}


def test_idc_acquire_checks_every_series_against_the_index(pipeline):
    images = pipeline["summary"]["images"]
    index = pipeline["index"]
    assert images["service"] == "idc" and images["series"] == len(index) == 159 + 7  # + 3 studies with laterals
    assert images["files"] == index.instanceCount.sum() == images["index"]["instances"]
    manifest = pd.read_csv(pipeline["tmp"] / "raw" / schema.RICORD_DIR / "manifest.csv", dtype={"bytes": int})
    assert manifest.bytes.sum() == images["index"]["bytes"]


def test_idc_run_gives_the_papers_150_test_images_by_covidnets_names(pipeline):
    table = pd.read_csv(pipeline["tmp"] / "tables" / "split.csv", dtype=str)
    assert sorted(table[table.split == "test"].image_id) == sorted(pipeline["test_list"].image_id)
    summary = json.loads((pipeline["tmp"] / "split.json").read_text())
    assert summary["test"]["images"] == 150 and summary["test"]["patients"] == 68
    assert summary["reference"]["level_differs_from_our_grouping"] == 0


def test_listed_frontal_images_of_studies_with_laterals_are_found(pipeline):
    """In 3 listed train studies a lateral series sorts before the frontal one; COVID-Net's order
    gives the frontal image the listed name (with the series-UID order the lateral would take it
    and be left out as a lateral, and the listed name would be missing)."""
    table = pd.read_csv(pipeline["tmp"] / "tables" / "split.csv", dtype=str)
    train = pipeline["lists"]["train"]
    keys = [tuple(i.removeprefix(covidnet.RICORD_PREFIX).rsplit("-", 2)[:2]) for i in train.image_id]
    listed = set(train.image_id[[k in pipeline["lateral_studies"] for k in keys]])
    assert len(listed) == 3 and listed <= set(table[table.split != "test"].image_id)
