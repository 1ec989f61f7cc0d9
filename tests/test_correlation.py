"""Rank correlations: Kendall's tau-b and Spearman's rho against scipy, with and without ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.evaluate.correlation import kendall_tau, ranks, spearman_rho

stats = pytest.importorskip("scipy.stats")

# Fixed numbers: proxy scores against accuracies, the second pair with ties in both and across.
DISTINCT = ([0.3, 1.7, -2.0, 4.1, 0.9, 2.2, -0.5, 3.3], [71.0, 80.5, 64.2, 90.1, 79.9, 77.0, 70.3, 88.8])
TIED = ([1, 2, 2, 3, 3, 3, 5, 8, 8, 0], [10, 30, 20, 20, 40, 40, 50, 50, 90, 10])
CASES = {"distinct": DISTINCT, "tied": TIED, "tied-one-side": (TIED[0], DISTINCT[1] + [60.0, 99.0])}


@pytest.mark.parametrize("case", list(CASES))
def test_kendall_tau_b_matches_scipy(case):
    a, b = CASES[case]
    expected = stats.kendalltau(a, b).statistic  # tau-b by default
    assert kendall_tau(a, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_spearman_rho_matches_scipy(case):
    a, b = CASES[case]
    assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)


def test_hand_values():
    a, b = [1, 2, 3, 4], [2, 1, 3, 3]
    # Pairs (i, j): concordant (0,2) (0,3) (1,2) (1,3) = 4; discordant: (0,1) = 1; tied in b: (2,3).
    # tau-b = (4 − 1) / sqrt((6 − 0)(6 − 1)) = 3 / sqrt(30).
    assert kendall_tau(a, b) == pytest.approx(3 / math.sqrt(30))
    # ranks of b: [2, 1, 3.5, 3.5]; centred: a → (−1.5, −0.5, 0.5, 1.5), b → (−0.5, −1.5, 1, 1);
    # Σ products = 0.75 + 0.75 + 0.5 + 1.5 = 3.5; Σ squares 5 and 4.5; rho = 3.5 / sqrt(22.5).
    assert spearman_rho(a, b) == pytest.approx(3.5 / math.sqrt(22.5))
    assert kendall_tau([1, 2], [5, 9]) == spearman_rho([1, 2], [5, 9]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == spearman_rho([1, 2, 3], [3, 2, 1]) == -1.0


def test_ranks_average_ties_and_order_infinities():
    assert ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert ranks([3.0, -math.inf, 3.0, 3.0, math.inf]).tolist() == [3.0, 1.0, 3.0, 3.0, 5.0]
    values = TIED[1]
    assert np.array_equal(ranks(values), stats.rankdata(values))
    assert ranks([]).size == 0


def test_infinite_scores_are_ranked():
    a = [-math.inf, 1.0, 2.0, math.inf, -math.inf]  # e.g. NASWOT of singular kernels
    b = [0.1, 0.5, 0.4, 0.9, 0.2]
    finite = [-1e9, 1.0, 2.0, 1e9, -1e9]
    assert kendall_tau(a, b) == pytest.approx(kendall_tau(finite, b))
    assert spearman_rho(a, b) == pytest.approx(spearman_rho(finite, b))


def test_constant_input_gives_nan():
    for correlation in (kendall_tau, spearman_rho):
        assert math.isnan(correlation([1, 1, 1], [1, 2, 3]))
        assert math.isnan(correlation([1, 2, 3], [4, 4, 4]))


@pytest.mark.parametrize("a, b, message", [
    ([1, 2, 3], [1, 2], "same length"),
    ([1], [2], "at least 2"),
    ([], [], "at least 2"),
    ([1, math.nan], [1, 2], "NaN"),
    ([[1, 2], [3, 4]], [[1, 2], [3, 4]], "one-dimensional"),
])
def test_bad_input_raises(a, b, message):
    for correlation in (kendall_tau, spearman_rho):
        with pytest.raises(ValueError, match=message):
            correlation(a, b)
