"""The paper checked against itself: Table 3 from Table 4, whole counts per row, the text's claim."""

from __future__ import annotations

import json

from stages.paper_check import main
from stages.reference import paper
from stages.reference.consistency import check, decimals, fits, solve_row


def test_printed_precision_allows_rounding_and_truncation() -> None:
    assert decimals(92.3) == 1 and decimals(92.85) == 2 and decimals(150.0) == 0
    assert fits(87.27, 87.2727) and fits(92.85, 92.8571) and fits(92.3, 92.3077)
    assert not fits(92.3, 92.8571) and not fits(95.78, 95.70)


def test_table4_reproduces_the_cxr_s_row_of_table3() -> None:
    result = check(paper())
    assert result["table4"]["true_level1"] == 52 and result["table4"]["true_level2"] == 98
    assert all(entry["fits"] for entry in result["table4_vs_table3"].values())
    assert result["table4"]["percent"]["sensitivity_level2"] == 92.8571


def test_each_table3_row_has_one_whole_count_solution() -> None:
    rows = check(paper())["table3_rows"]
    assert rows["covidnet_cxr_s"]["solutions"] == [{"true_level1": 52, "true_level2": 98, "tp_level1": 48, "tp_level2": 91}]
    assert rows["covidnet_cxr_s"]["level_names"] == "as printed"
    # The baselines fit only with 98 "Level 1" cases: their level names are swapped.
    assert rows["densenet121"]["solutions"] == [{"true_level1": 98, "true_level2": 52, "tp_level1": 92, "tp_level2": 33}]
    assert rows["resnet50"]["solutions"] == [{"true_level1": 98, "true_level2": 52, "tp_level1": 90, "tp_level2": 41}]
    assert rows["densenet121"]["level_names"] == rows["resnet50"]["level_names"] == "swapped"


def test_the_texts_sensitivity_belongs_to_the_other_level() -> None:
    claim = check(paper())["text_claims"]["covidnet_cxr_s.sensitivity_level2"]
    assert claim == {"text": 92.3, "from_table4": 92.8571, "fits": False, "fits_other_level": True}


def test_a_row_that_fits_no_counts_has_no_solution() -> None:
    row = {"sensitivity_level1": 92.31, "sensitivity_level2": 92.86, "ppv_level1": 50.0, "ppv_level2": 95.79,
           "accuracy": 92.67}
    assert solve_row(row, 150) == []


def test_stage_writes_the_findings(tmp_path) -> None:
    main(["--out", str(tmp_path / "c.json")])
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["table3_rows"]["resnet50"]["level_names"] == "swapped"
