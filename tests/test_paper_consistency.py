"""The paper checked against itself: Table 3 from Table 4, whole counts per row, the text's claims."""

from __future__ import annotations

import json

from stages.paper_consistency import main
from stages.reference import paper
from stages.reference.consistency import check, decimals, fits, other_level, solve_row, swap_level_names


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


def test_both_of_the_texts_sensitivities_belong_to_the_other_level() -> None:
    """REFERENCE.md: the text swaps the two sensitivities. Table 4's counts (rows = predicted) by
    hand: Level 1 48 / (48 + 4) = 92.31%, Level 2 91 / (7 + 91) = 92.86%."""
    claims = check(paper())["text_claims"]
    assert set(claims) == {"covidnet_cxr_s.sensitivity_level2", "covidnet_cxr_s.sensitivity_level1"}
    assert claims["covidnet_cxr_s.sensitivity_level2"] == {
        "text": 92.3, "from_table4": 92.8571, "fits": False, "fits_other_level": True}
    assert claims["covidnet_cxr_s.sensitivity_level1"] == {
        "text": 92.85, "from_table4": 92.3077, "fits": False, "fits_other_level": True}


def test_a_text_claim_that_fits_its_own_level_is_not_flagged() -> None:
    text = {"covidnet_cxr_s": {"sensitivity_level1": 92.3, "ppv_level2": 95.79, "accuracy": 92.67}}
    claims = check({**paper(), "text": text})["text_claims"]
    assert all(claim["fits"] for claim in claims.values()), claims
    assert not claims["covidnet_cxr_s.sensitivity_level1"]["fits_other_level"]


def test_level_names_swapped_back() -> None:
    assert [other_level(k) for k in ("sensitivity_level1", "ppv_level2", "accuracy")] == \
        ["sensitivity_level2", "ppv_level1", "accuracy"]
    chexnet = paper()["table3"]["densenet121"]
    # By hand from REFERENCE.md's CheXNet row (93.88 / 63.46 / 82.88 / 84.62 / 83.33), levels exchanged.
    assert swap_level_names(chexnet) == {"sensitivity_level1": 63.46, "sensitivity_level2": 93.88,
                                         "ppv_level1": 84.62, "ppv_level2": 82.88, "accuracy": 83.33}
    assert paper()["table3"]["densenet121"]["sensitivity_level1"] == 93.88  # the printed row is left as is
    # Swapped back, the row fits the test set's 52 Level 1 / 98 Level 2 images: 33/52 = 63.46%,
    # 92/98 = 93.88%, PPV 33/(33 + 6) = 84.62% and 92/(92 + 19) = 82.88%.
    assert solve_row(swap_level_names(chexnet), 150) == [
        {"true_level1": 52, "true_level2": 98, "tp_level1": 33, "tp_level2": 92}]


def test_a_row_that_fits_no_counts_has_no_solution() -> None:
    row = {"sensitivity_level1": 92.31, "sensitivity_level2": 92.86, "ppv_level1": 50.0, "ppv_level2": 95.79,
           "accuracy": 92.67}
    assert solve_row(row, 150) == []


def test_stage_writes_the_findings(tmp_path) -> None:
    main(["--out", str(tmp_path / "c.json")])
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["table3_rows"]["resnet50"]["level_names"] == "swapped"
