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

import pandas as pd
import pytest
import yaml

from stages import acquire, group, ingest, schema, split
from stages.sources import covidnet_files as covidnet, idc
from tests.ricord_idc_world import local_ricord_params, served_world

moto_server = pytest.importorskip("moto.server", reason="moto (test extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (with moto, test extra) is not installed")
idc_index_data = pytest.importorskip("idc_index_data", reason="idc-index-data (test extra) is not installed")
pytest.importorskip("pyarrow", reason="pyarrow (test extra) reads idc_index.parquet")

pytestmark = pytest.mark.slow  # ~10-15 s: 159 DICOMs through acquire, ingest, group and split


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_covidnet):
    with served_world(tmp_path_factory.mktemp("ricord_idc"), shared_covidnet) as served:
        yield served


@pytest.fixture(scope="module")
def pipeline(world):
    tmp = world["tmp"]
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["data"]["source"] = "ricord"
    params["ricord"].update({**local_ricord_params(world), "workers": 4})
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
