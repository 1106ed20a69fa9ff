"""The real RICORD 1c structure behind the paper's test images, served offline: IDC's buckets (moto's
S3 on 127.0.0.1) and COVID-Net's pinned files plus an MD.ai export (a static HTTP server).

The studies are the 133 behind COVID-Net's 150 test images, plus the 3 listed train studies that
hold a lateral series, with their patient, study and series UIDs, series numbers and descriptions
and instances per series as IDC's index (idc-index-data) lists them. Pixels are generated; the
index's sizes are replaced by those of the generated files. Each study gets two reader votes for
the level COVID-Net's lists give it. Used by ``test_ricord_idc.py`` (stage functions) and
``test_ricord_exp.py`` (``dvc exp run``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import RLELossless

from stages import schema
from stages.sources import covidnet_files as covidnet, idc
from tests.conftest import write_dicom
from tests.fake_nbia import FakeNBIA, serve_covidnet_files, serving

LEVEL_LABEL = {1: schema.MILD, 2: schema.MODERATE}
SMALL = 64  # side of a generated image where no crop box has to fit


def study_key(patient_id: str, study_uid: str) -> tuple[str, str]:
    """(patient without RICORD's prefix, last 5 characters of the study UID): how COVID-Net's names
    identify a study."""
    return patient_id.removeprefix(covidnet.RICORD_PREFIX), study_uid[-5:]


def study_of_name(image_id: str) -> tuple[str, str]:
    """The study of COVID-Net's name ``MIDRC-RICORD-1C-<patient>-<study uid[-5:]>-<i>``, as :func:`study_key`."""
    patient, study5, _ = image_id.removeprefix(covidnet.RICORD_PREFIX).rsplit("-", 2)
    return patient, study5


def _boxed_study_shapes(folder: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Per study with COVID-Net crop boxes: (rows, columns) in which each of its boxes starts with
    64 pixels to spare, whichever of the study's images the box belongs to."""
    shapes: dict[tuple[str, str], tuple[int, int]] = {}
    for box in covidnet.read_crop_boxes(folder / "ricord_data_set.txt").itertuples():
        rows, columns = shapes.get(study_of_name(box.image_id), (0, 0))
        shapes[study_of_name(box.image_id)] = (max(rows, box.ymin + SMALL), max(columns, box.xmin + SMALL))
    return shapes


def _rle_pixel_data(rng: np.random.Generator, shape: tuple[int, int]) -> bytes:
    """Encapsulated RLE Lossless pixel data: 12-bit pixels of ``shape``, a 16 x 16 random pattern of blocks."""
    rows, columns = shape
    blocks = rng.integers(0, 4096, (16, 16)).astype(np.uint16)
    pixels = np.repeat(np.repeat(blocks, -(-rows // 16), axis=0), -(-columns // 16), axis=1)[:rows, :columns]
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.compress(RLELossless, pixels, encoding_plugin="pylibjpeg")
    return ds.PixelData


@contextmanager
def served_world(tmp: Path, shared: Path, boxes_inside: bool = False) -> Iterator[dict[str, Any]]:
    """Build the files under ``tmp`` and serve them while the block runs.

    ``boxes_inside``: images of studies with COVID-Net crop boxes (in full-size pixels) are large
    enough that each box starts inside them with 64 pixels to spare (RLE Lossless, so the files stay
    small); ingest clips the rest of the box to the image, as for a box past a real image's edge
    (``stages.imaging.preprocess.crop_box``). Otherwise every image is 64 x 64 and the caller turns
    the boxes off.

    Yields: ``fake`` (the static server: ``root_url``), ``bucket_url`` (``ricord.idc_bucket_url``),
    ``index`` (IDC's rows with the generated sizes), ``lists`` (COVID-Net's train/test severity
    lists), ``test_list``, ``lateral_studies``, ``tmp``.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    folder = shared / "ricord-covidnet"
    lists = {name: covidnet.read_severity_list(folder / f"{name}_COVIDxSev.txt") for name in ("train", "test")}
    listed = pd.concat(lists.values())
    level_of_study = {study_of_name(i): level for i, level in zip(listed.image_id, listed.airspace_level)}
    test_studies = {study_of_name(i) for i in lists["test"].image_id}
    shapes = _boxed_study_shapes(folder) if boxes_inside else {}
    index, _ = idc.load_index()
    keys = [study_key(p, s) for p, s in zip(index.PatientID, index.StudyInstanceUID)]
    # The test studies, and the listed studies that hold a lateral series (train list): there the
    # lateral is numbered before the frontal image, so only COVID-Net's order finds the listed name.
    lateral = index.SeriesDescription.fillna("").str.lower().str.startswith("lat")
    lateral_studies = {k for k, is_lateral in zip(keys, lateral) if is_lateral and k in level_of_study}
    index = index[[k in test_studies or k in lateral_studies for k in keys]].reset_index(drop=True)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
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
            shape = shapes.get(study_key(row.PatientID, row.StudyInstanceUID))
            is_lateral = str(row.SeriesDescription).lower().startswith("lat")
            for k in range(int(row.instanceCount)):
                path = write_dicom(tmp / "src" / f"{row.SeriesInstanceUID}-{k}.dcm",
                                   rng.integers(0, 4096, (SMALL, SMALL)), view="LL" if is_lateral else "AP")
                ds = pydicom.dcmread(path)
                ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (row.PatientID, row.StudyInstanceUID,
                                                                           row.SeriesInstanceUID)
                ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[row.SeriesInstanceUID, str(k)])
                ds.SeriesNumber, ds.InstanceNumber = row.SeriesNumber, k + 1
                if isinstance(row.SeriesDescription, str):
                    ds.SeriesDescription = row.SeriesDescription
                if shape:
                    ds.Rows, ds.Columns, ds.file_meta.TransferSyntaxUID = *shape, RLELossless
                    ds.PixelData = _rle_pixel_data(rng, shape)
                    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
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
                        "labelId": label_id[LEVEL_LABEL[level_of_study[study_key(patient_of[study], study)]]]}
                       for n, study in enumerate(studies) for reader in ("R1", "R2")]
        export = {"id": "P", "name": "fake",
                  "labelGroups": [{"id": "G", "name": schema.AIRSPACE_GROUP, "labels": labels}],
                  "datasets": [{"id": "D", "name": "d", "annotations": annotations,
                                "studies": [{"StudyInstanceUID": s, "number": i} for i, s in enumerate(studies)]}]}
        fake.static["/mdai/export.json"] = json.dumps(export).encode()
        with serving(fake):
            yield {"fake": fake, "tmp": tmp, "index": index, "test_list": lists["test"], "lists": lists,
                   "lateral_studies": lateral_studies, "bucket_url": f"http://{host}:{port}/{{bucket}}"}
    finally:
        server.stop()


def local_ricord_params(world: dict[str, Any]) -> dict[str, Any]:
    """``ricord`` settings that send every request of acquire to the servers of ``world``: IDC's
    buckets, COVID-Net's files, the MD.ai export (its size is not the real one: no size pin), and no
    COVIDx images (none are served)."""
    return {"service": "idc", "idc_bucket_url": world["bucket_url"], "retries": 1, "timeout_s": 10,
            "annotations": f"{world['fake'].root_url}/mdai/export.json", "annotations_bytes": None,
            "covidnet_base_url": world["fake"].root_url, "covidx_dir": None, "covidx_max_missing_fraction": 1.0,
            "covidx_image_urls": {}}
