"""Tests of the MD.ai export reader (stages.sources.mdai)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from stages import schema
from stages.sources import mdai

STUDY_A = "1.2.826.0.1.3680043.10.474.419639.1"
STUDY_B = "1.2.826.0.1.3680043.10.474.419639.2"


def _label(label_id: str, name: str, scope: str | None = "STUDY") -> dict[str, Any]:
    """A label entry shaped like the real export's (extra keys included)."""
    label = {"id": label_id, "parentId": None, "name": name, "type": "GLOBAL",
             "annotationMode": None, "color": "#ffffff", "radlexTagIds": []}
    if scope is not None:
        label["scope"] = scope
    return label


def _annotation(annotation_id: str, study: str, label_id: str, reader: str,
                series: str | None = None) -> dict[str, Any]:
    """An annotation entry shaped like the real export's."""
    return {"id": annotation_id, "parentId": None, "isImported": False, "isInvalid": False,
            "StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": None,
            "labelId": label_id, "annotationNumber": None, "createdById": reader,
            "createdAt": "2020-11-02T09:00:00.000Z", "data": None, "note": None}


def _export() -> dict[str, Any]:
    """A small export with two label groups, an image-scoped label and two datasets."""
    return {
        "id": "P_abc123",
        "name": "RICORD 1c",
        "labelGroups": [
            {"id": "G_1", "name": schema.AIRSPACE_GROUP, "labels": [
                _label("L_mild", schema.MILD), _label("L_mod", schema.MODERATE),
                _label("L_sev", schema.SEVERE), _label("L_inv", schema.INVALID)]},
            {"id": "G_2", "name": schema.CLASSIFICATION_GROUP, "labels": [
                _label("L_typ", "Typical Appearance"),
                _label("L_box", "Opacity box", scope="INSTANCE"),
                _label("L_noscope", "Negative for Pneumonia", scope=None)]},
        ],
        "datasets": [
            {"id": "D_1", "name": "first",
             "studies": [{"StudyInstanceUID": STUDY_A, "number": 1}],
             "annotations": [
                 _annotation("A_1", STUDY_A, "L_mild", "U_r1"),
                 _annotation("A_2", STUDY_A, "L_box", "U_r1", series="1.2.3"),
                 _annotation("A_3", STUDY_A, "L_mod", "U_r2"),
             ]},
            {"id": "D_2", "name": "second",
             "studies": [{"StudyInstanceUID": STUDY_B, "number": 2},
                         {"StudyInstanceUID": STUDY_A, "number": 1}],
             "annotations": [
                 _annotation("A_4", STUDY_B, "L_typ", "U_r3"),
                 _annotation("A_5", STUDY_B, "L_noscope", "U_r3"),
                 _annotation("A_6", STUDY_B, "L_noscope", "U_r3", series="1.2.4"),
                 _annotation("A_7", STUDY_B, "L_inv", "U_r1"),
             ]},
        ],
    }


def _write(tmp_path: Path, export: Any, name: str = "export.json") -> Path:
    """Write an export (any JSON value) and return its path."""
    path = tmp_path / name
    path.write_text(json.dumps(export), encoding="utf-8")
    return path


def test_reader_labels_rows_and_order(tmp_path: Path) -> None:
    """Study-scoped annotations become rows; image-scoped ones are skipped but keep counting."""
    table = mdai.read_reader_labels(_write(tmp_path, _export()))
    assert list(table.columns) == mdai.READER_LABEL_COLUMNS
    assert table.to_dict("records") == [
        {"study_uid": STUDY_A, "reader_id": "U_r1", "label_group": schema.AIRSPACE_GROUP,
         "label_name": schema.MILD, "annotation_index": 0, "label_id": "L_mild"},
        {"study_uid": STUDY_A, "reader_id": "U_r2", "label_group": schema.AIRSPACE_GROUP,
         "label_name": schema.MODERATE, "annotation_index": 2, "label_id": "L_mod"},
        {"study_uid": STUDY_B, "reader_id": "U_r3", "label_group": schema.CLASSIFICATION_GROUP,
         "label_name": "Typical Appearance", "annotation_index": 3, "label_id": "L_typ"},
        # No scope on the label: study-scoped only when the annotation names no series/image.
        {"study_uid": STUDY_B, "reader_id": "U_r3", "label_group": schema.CLASSIFICATION_GROUP,
         "label_name": "Negative for Pneumonia", "annotation_index": 4, "label_id": "L_noscope"},
        {"study_uid": STUDY_B, "reader_id": "U_r1", "label_group": schema.AIRSPACE_GROUP,
         "label_name": schema.INVALID, "annotation_index": 6, "label_id": "L_inv"},
    ]
    assert str(table["annotation_index"].dtype) == "int64"


def test_read_studies(tmp_path: Path) -> None:
    """Studies of all datasets, in file order, each once."""
    studies = mdai.read_studies(_write(tmp_path, _export()))
    assert studies.to_dict("records") == [
        {"study_uid": STUDY_A, "number": 1}, {"study_uid": STUDY_B, "number": 2}]


def test_empty_export_gives_empty_tables(tmp_path: Path) -> None:
    """No datasets: empty tables with the documented columns (not a crash)."""
    path = _write(tmp_path, {"labelGroups": [], "datasets": []})
    assert list(mdai.read_reader_labels(path).columns) == mdai.READER_LABEL_COLUMNS
    assert mdai.read_reader_labels(path).empty
    assert list(mdai.read_studies(path).columns) == mdai.STUDY_COLUMNS


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    """Broken JSON raises ValueError naming the file."""
    path = tmp_path / "broken.json"
    path.write_text('{"labelGroups": [', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON"):
        mdai.read_reader_labels(path)
    with pytest.raises(ValueError, match=r"broken\.json"):
        mdai.read_studies(path)


def test_top_level_must_be_object(tmp_path: Path) -> None:
    """A JSON array is not an export."""
    with pytest.raises(ValueError, match="JSON object"):
        mdai.read_reader_labels(_write(tmp_path, [1, 2]))


@pytest.mark.parametrize("damage, message", [
    (lambda e: e.pop("labelGroups"), "'labelGroups'"),
    (lambda e: e.pop("datasets"), "'datasets'"),
    (lambda e: e["labelGroups"][0]["labels"][0].pop("name"), r"labelGroups\[0\]\.labels\[0\].*'name'"),
    (lambda e: e["datasets"][0]["annotations"][0].pop("createdById"), "'createdById'"),
    (lambda e: e["datasets"][1]["annotations"][0].pop("StudyInstanceUID"),
     r"datasets\[1\]\.annotations\[0\].*'StudyInstanceUID'"),
    (lambda e: e["datasets"][0].pop("annotations"), "'annotations'"),
])
def test_missing_keys_are_reported(tmp_path: Path, damage: Any, message: str) -> None:
    """A missing key raises ValueError naming the file, the place and the key."""
    export = copy.deepcopy(_export())
    damage(export)
    path = _write(tmp_path, export, "damaged.json")
    with pytest.raises(ValueError) as error:
        mdai.read_reader_labels(path)
    assert "damaged.json" in str(error.value)
    assert re.search(message, str(error.value)), str(error.value)


def test_unknown_label_id_is_counted_and_left_out(tmp_path: Path) -> None:
    """An annotation pointing at a label no group defines is left out (as mdai-client-py's inner
    merge on labelId does) and counted per labelId, not fatal; later rows keep their index."""
    export = _export()
    export["datasets"][1]["annotations"][0]["labelId"] = "L_missing"  # A_4
    export["datasets"][1]["annotations"][1]["labelId"] = "L_missing"  # A_5
    table, orphans = mdai.read_export_labels(_write(tmp_path, export))
    assert orphans == {"L_missing": 2}
    assert list(table.annotation_index) == [0, 2, 6]
    assert mdai.read_reader_labels(_write(tmp_path, export)).equals(table)


@pytest.mark.parametrize("scope", ["STUDY", "Study", "study"])
def test_scope_is_compared_without_case(tmp_path: Path, scope: str) -> None:
    export = _export()
    export["labelGroups"][0]["labels"][0]["scope"] = scope  # L_mild
    table = mdai.read_reader_labels(_write(tmp_path, export))
    assert schema.MILD in set(table.label_name)


def test_missing_study_key_in_studies(tmp_path: Path) -> None:
    """read_studies reports a study entry without StudyInstanceUID."""
    export = _export()
    del export["datasets"][0]["studies"][0]["StudyInstanceUID"]
    with pytest.raises(ValueError, match=r"datasets\[0\]\.studies\[0\].*StudyInstanceUID"):
        mdai.read_studies(_write(tmp_path, export))


def test_written_export_reads_back(tmp_path: Path) -> None:
    """The writer's records (study-scoped labels, one dataset) give the reader's rows back."""
    mild = mdai.study_label("L_mild", schema.MILD, "#123456")
    typical = mdai.study_label("L_typ", "Typical Appearance", "#abcdef")
    groups = [mdai.label_group("G_1", schema.AIRSPACE_GROUP, [mild]),
              mdai.label_group("G_2", schema.CLASSIFICATION_GROUP, [typical])]
    annotations = [mdai.study_annotation("A_1", 1, STUDY_A, "L_mild", "U_r1", "2020-11-02T09:07:00.000Z"),
                   mdai.study_annotation("A_2", 2, STUDY_B, "L_typ", "U_r2", "2020-11-02T09:14:00.000Z")]
    dataset = mdai.dataset("D_1", "first", [(STUDY_A, 1), (STUDY_B, 2)], annotations)
    path = mdai.write_export(tmp_path / "export.json", "P_1", "project", "", groups, [dataset])
    assert mdai.read_reader_labels(path).to_dict("records") == [
        {"study_uid": STUDY_A, "reader_id": "U_r1", "label_group": schema.AIRSPACE_GROUP,
         "label_name": schema.MILD, "annotation_index": 0, "label_id": "L_mild"},
        {"study_uid": STUDY_B, "reader_id": "U_r2", "label_group": schema.CLASSIFICATION_GROUP,
         "label_name": "Typical Appearance", "annotation_index": 1, "label_id": "L_typ"},
    ]
    assert mdai.read_studies(path).to_dict("records") == [{"study_uid": STUDY_A, "number": 1},
                                                          {"study_uid": STUDY_B, "number": 2}]
    assert path.read_bytes().endswith(b"\n}\n")
