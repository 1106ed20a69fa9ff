"""COVID-Net's image numbering (stages.sources.covidnet_files.image_order_in_study): the NBIA Data
Retriever's folder and file order that create_ricord_dataset.ipynb enumerated.

Expected values are written by hand from the Data Retriever's source (folder names) and from
public TCIA download paths; the real-index tests read IDC's index of RICORD 1c (the PyPI package
idc-index-data) and COVID-Net's own list of usable images, and skip when either is absent.
"""

from __future__ import annotations


import pandas as pd
import pytest

from stages.sources.covidnet_files import (RICORD_PREFIX, image_order_in_study, retriever_series_folder,
                                           series_number_text)


def test_series_folder_names_as_the_data_retriever_writes_them():
    # A public COVID-19-AR download path: .../1001.000000-NA-00046/1-1.dcm (no description).
    assert retriever_series_folder("1001", "", "1.2.3.4.00046") == "1001.000000-NA-00046"
    assert retriever_series_folder("1", "CHEST AP", "1.2.98233") == "1.000000-CHEST AP-98233"
    assert retriever_series_folder(" 2 ", "AP/PA", "1.2.12049") == "2.000000-AP-PA-12049"  # '/' -> '-'
    assert retriever_series_folder("3", "x" * 60, "1.2.11111") == "3.000000-" + "x" * 53 + "-11111"
    assert retriever_series_folder("", "AP", "1.2.55555") == "AP-55555"
    assert series_number_text("7") == "7.000000" and series_number_text(None) == ""


def _study(rows: list[tuple]) -> pd.DataFrame:
    columns = ["sop_uid", "series_number", "series_description", "series_uid", "acquisition_number",
               "instance_number"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows]).assign(study_uid="S")


def test_series_folders_sort_as_text_not_as_numbers():
    """The notebook sorts paths: '4156.000000-...' comes before '5.000000-...'."""
    table = _study([("a", "5", "AP", "1.9.00001", None, 1), ("b", "4156", "AP", "1.9.00002", None, 1)])
    assert list(image_order_in_study(table)) == [1, 0]
    assert list(image_order_in_study(table, "series_uid")) == [0, 1]


def test_files_by_acquisition_then_instance_ordinal_empty_lowest():
    """Data Retriever 3.6: acquisition ordinal, then instance ordinal, zero-padded (so 9 < 10);
    an empty number is lower than any value."""
    uid = "1.2.3.77777"
    table = _study([("p", "1", "AP", uid, 2, 1), ("q", "1", "AP", uid, 1, 10), ("r", "1", "AP", uid, 1, 9),
                    ("s", "1", "AP", uid, None, 5)])
    assert list(image_order_in_study(table)) == [3, 2, 1, 0]


def test_a_real_study_with_two_lateral_series_numbers_its_ap_image_2():
    """RICORD 1c study ...16722 as IDC indexes it: series 1 and 2 are laterals, 3 the AP; COVID-Net's
    usable list holds only ...-16722-2 of it."""
    table = _study([("x", "1", "Lateral", "1.2.98233", None, 1), ("y", "3", "AP SkyPlate", "1.2.12049", None, 1),
                    ("z", "2", "Lateral", "1.2.01185", None, 1)])
    assert list(image_order_in_study(table)) == [0, 2, 1]


def test_unknown_order_is_refused():
    with pytest.raises(ValueError, match="image order"):
        image_order_in_study(_study([("a", "1", "AP", "1.2", None, 1)]), "random")


# --- the real index -------------------------------------------------------------------------------

def _names(index: pd.DataFrame, order: str) -> pd.DataFrame:
    """One row per instance (the index counts them per series), named by ``order``."""
    rows = index.loc[index.index.repeat(index.instanceCount)].reset_index(drop=True)
    table = pd.DataFrame({
        "study_uid": rows.StudyInstanceUID, "series_uid": rows.SeriesInstanceUID,
        "series_number": rows.SeriesNumber, "series_description": rows.SeriesDescription.fillna(""),
        "acquisition_number": None, "instance_number": rows.groupby("SeriesInstanceUID").cumcount(),
        "sop_uid": rows.SeriesInstanceUID + "." + rows.groupby("SeriesInstanceUID").cumcount().astype(str)})
    number = image_order_in_study(table, order)
    patient = rows.PatientID.str.removeprefix(RICORD_PREFIX)
    return table.assign(description=rows.SeriesDescription.fillna(""),
                        name=RICORD_PREFIX + patient + "-" + rows.StudyInstanceUID.str[-5:] + "-" + number.astype(str))


def test_real_index_laterals_take_the_names_covidnet_left_out(real_index, usable_names):
    """Every image of a series IDC describes as lateral gets, in the Data Retriever's order, a name
    COVID-Net's usable list leaves out (its notebook dropped non-AP/PA views after numbering);
    ordered by series UID (this project's order before), 4 of the 5 take a usable name, i.e. a
    lateral would stand in for a listed frontal image."""
    lateral = {}
    for order in ("data_retriever", "series_uid"):
        named = _names(real_index, order)
        lateral[order] = named[named.description.str.lower().str.startswith("lat")].name
    assert len(lateral["data_retriever"]) == 5
    assert not set(lateral["data_retriever"]) & usable_names
    assert len(set(lateral["series_uid"]) & usable_names) == 4


def test_real_index_multi_series_studies_where_the_two_orders_differ(real_index, usable_names, listed_names):
    """The issue's count (301 of the 909 listed images sit in studies with more than one instance);
    some multi-series studies sort their folders otherwise than their UIDs (measured: 128 of 227);
    every usable name exists under the Data Retriever's order."""
    instances = real_index.groupby("StudyInstanceUID").instanceCount.sum()
    study_of_name = {f"{RICORD_PREFIX}{p.removeprefix(RICORD_PREFIX)}-{s[-5:]}": s
                     for p, s in zip(real_index.PatientID, real_index.StudyInstanceUID)}
    in_multi = [name for name in listed_names if instances[study_of_name[name.rsplit("-", 1)[0]]] > 1]
    assert len(listed_names) == 909 and len(in_multi) == 301
    per_study = real_index.groupby("StudyInstanceUID").SeriesInstanceUID.transform("size")
    multi = real_index[per_study > 1]
    differ = 0
    for _, study in multi.groupby("StudyInstanceUID"):
        folders = [retriever_series_folder(n, d, u) for n, d, u in
                   zip(study.SeriesNumber, study.SeriesDescription.fillna(""), study.SeriesInstanceUID)]
        by_folder = [uid for _, uid in sorted(zip(folders, study.SeriesInstanceUID))]
        differ += by_folder != sorted(study.SeriesInstanceUID)
    assert 0 < differ < multi.StudyInstanceUID.nunique()
    assert usable_names <= set(_names(real_index, "data_retriever").name)
