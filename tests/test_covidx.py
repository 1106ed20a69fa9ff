"""Tests of the COVIDx list reader and writer (stages.sources.covidx)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.sources import covidx

SHARED_COVIDX = Path(__file__).parents[1] / ".." / "shared" / "data" / "covidx"


def _write(tmp_path: Path, text: str, name: str = "list.txt") -> Path:
    """Write a list file (bytes as given, so CRLF survives) and return its path."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_four_and_five_field_lines(tmp_path: Path) -> None:
    """A patient id with a space (SIRM) stays whole; the last three fields come from the right."""
    path = _write(tmp_path, (
        "5 ARDSSevere.png negative cohen\n"
        "COVID 12 COVID(12).png positive sirm\n"
        "\n"
        "   \n"
        "419639-003251 MIDRC-RICORD-1C-419639-003251-46647-0.png positive ricord\r\n"
    ))
    table = covidx.read_covidx_list(path)
    assert list(table.columns) == covidx.COVIDX_LIST_COLUMNS
    assert table.to_dict("records") == [
        {"patient_id": "5", "filename": "ARDSSevere.png", "label": "negative",
         "covidx_source": "cohen"},
        {"patient_id": "COVID 12", "filename": "COVID(12).png", "label": "positive",
         "covidx_source": "sirm"},
        {"patient_id": "419639-003251", "filename": "MIDRC-RICORD-1C-419639-003251-46647-0.png",
         "label": "positive", "covidx_source": "ricord"},
    ]


def test_empty_file_gives_empty_table(tmp_path: Path) -> None:
    """An empty list is an empty table with the documented columns."""
    table = covidx.read_covidx_list(_write(tmp_path, "\n\n"))
    assert table.empty and list(table.columns) == covidx.COVIDX_LIST_COLUMNS


def test_too_few_fields_names_file_and_line(tmp_path: Path) -> None:
    """A line with fewer than four fields raises ValueError with file and 1-based line number."""
    path = _write(tmp_path, "5 a.png negative cohen\n\nb.png positive sirm\n", "short.txt")
    with pytest.raises(ValueError, match=r"short\.txt:3: .*3 field"):
        covidx.read_covidx_list(path)


def test_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    """Old COVIDx class names (COVID-19, pneumonia, normal) are not accepted silently."""
    path = _write(tmp_path, "5 a.png negative cohen\n6 b.png COVID-19 cohen\n", "old.txt")
    with pytest.raises(ValueError, match=r"old\.txt:2: label 'COVID-19'"):
        covidx.read_covidx_list(path)


def test_written_list_reads_back(tmp_path: Path) -> None:
    """The writer puts one space between fields, a SIRM id keeps its space, lines end in '\\n'."""
    rows = [{"patient_id": "COVID 12", "filename": "COVID(12).png", "label": "positive", "covidx_source": "sirm"},
            {"patient_id": "5", "filename": "ARDSSevere.png", "label": "negative", "covidx_source": "cohen"}]
    path = covidx.write_covidx_list(tmp_path / "list.txt", rows)
    assert path.read_bytes() == b"COVID 12 COVID(12).png positive sirm\n5 ARDSSevere.png negative cohen\n"
    assert covidx.read_covidx_list(path).to_dict("records") == rows


@pytest.mark.parametrize("field, value", [("filename", "a b.png"), ("label", "maybe"), ("patient_id", " 7")])
def test_writer_refuses_a_row_that_would_not_read_back(tmp_path: Path, field: str, value: str) -> None:
    row = {"patient_id": "7", "filename": "x.png", "label": "positive", "covidx_source": "rsna"}
    with pytest.raises(ValueError, match=r"list\.txt:2: "):
        covidx.write_covidx_list(tmp_path / "list.txt", [row, {**row, field: value}])
    assert not (tmp_path / "list.txt").exists()


def _shared_list(name: str) -> Path:
    """A real COVIDx 8B list from ../shared/data, or skip when that folder is absent."""
    path = SHARED_COVIDX / name
    if not path.is_file():
        pytest.skip(f"real COVIDx lists not available: {path.resolve()} is missing "
                    "(../shared/data is test data outside the repository)")
    return path


def test_real_train_list() -> None:
    """train_COVIDx8B.txt: 15,952 entries, 2,158 positive / 13,794 negative, 943 SIRM ids with a
    space (the lines split() gets wrong)."""
    table = covidx.read_covidx_list(_shared_list("train_COVIDx8B.txt"))
    assert len(table) == 15_952
    assert table["label"].value_counts().to_dict() == {"negative": 13_794, "positive": 2_158}
    with_space = table[table["patient_id"].str.contains(" ")]
    assert len(with_space) == 943 and set(with_space["covidx_source"]) == {"sirm"}
    assert set(table["covidx_source"]) == {"rsna", "sirm", "ricord", "cohen", "actmed", "fig1"}
    assert table["filename"].is_unique


def test_real_test_list() -> None:
    """test_COVIDx8B.txt: 400 entries, 200 positive / 200 negative."""
    table = covidx.read_covidx_list(_shared_list("test_COVIDx8B.txt"))
    assert len(table) == 400
    assert table["label"].value_counts().to_dict() == {"positive": 200, "negative": 200}
