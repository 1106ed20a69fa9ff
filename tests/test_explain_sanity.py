"""stages.explanation.sanity: Spearman's rho and the patient-bootstrap mean, against hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.explanation.sanity import rank_correlation, summarise_mean


def test_rank_correlation_by_hand():
    a = np.arange(1.0, 5.0)
    assert rank_correlation(a, np.exp(a)) == pytest.approx(1.0)  # any increasing map: the same ranks
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # one swapped pair: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert rank_correlation(a, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    # a tie takes the average rank: ranks (1.5, 1.5, 3) against (1, 2, 3) -> 1.5 / sqrt(1.5 * 2)
    assert rank_correlation(np.array([[1.0, 1.0, 2.0]]), np.array([1.0, 2.0, 3.0])) == pytest.approx(math.sqrt(0.75))


def test_rank_correlation_of_a_constant_map_is_undefined_and_shapes_must_agree():
    assert rank_correlation(np.zeros((2, 2)), np.arange(4.0)) is None
    assert rank_correlation(np.arange(4.0), np.ones(4)) is None
    with pytest.raises(ValueError, match="cannot be correlated"):
        rank_correlation(np.arange(4.0), np.arange(9.0))


def test_summarise_mean_skips_undefined_values():
    result = summarise_mean([1.0, float("nan"), 3.0], ["a", "b", "c"], resamples=200, level=0.95, seed=0)
    assert (result["mean"], result["images"], result["patients"]) == (2.0, 2, 2)
    assert 1.0 <= result["low"] <= 2.0 <= result["high"] <= 3.0


def test_summarise_mean_of_equal_values_has_a_point_interval_and_resamples_patients():
    assert summarise_mean([2.0, 2.0, 2.0], ["a", "a", "b"], resamples=50, level=0.9, seed=1) == {
        "mean": 2.0, "low": 2.0, "high": 2.0, "images": 3, "patients": 2}
    # Patient a's two images move together: the resample means are 0 (a, a), 1/3 (a, b) or 1 (b, b)
    # once each patient's rows are pooled, never 1/2 as an image-level draw could give.
    result = summarise_mean([0.0, 0.0, 1.0], ["a", "a", "b"], resamples=400, level=0.95, seed=3)
    assert result["mean"] == pytest.approx(1 / 3, abs=1e-6)
    assert result["low"] == 0.0 and result["high"] == 1.0


def test_summarise_mean_with_nothing_defined():
    assert summarise_mean([float("nan")], ["a"], resamples=10, level=0.95, seed=0) == {
        "mean": None, "low": None, "high": None, "images": 0, "patients": 0}
