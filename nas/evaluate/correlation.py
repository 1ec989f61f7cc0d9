"""Rank correlations between two scorings of the same architectures (a proxy against trained accuracy, say).

Both handle ties, which proxies produce often (equal scores of equivalent cells, −inf NASWOT scores):

* :func:`kendall_tau` is Kendall's tau-b, (n_c − n_d) / sqrt((n_0 − n_1)(n_0 − n_2)), with n_c and n_d the
  concordant and discordant pairs, n_0 = n(n − 1)/2 and n_1, n_2 the pairs tied in the first and in the
  second sequence; it is ``scipy.stats.kendalltau``'s default.
* :func:`spearman_rho` is the Pearson correlation of the average ranks (:func:`ranks`), as
  ``scipy.stats.spearmanr``.

A sequence whose values are all equal has no ordering to correlate with: both return NaN then, as scipy
does. Infinite values are ranked like any other (−inf lowest); NaN cannot be ranked and raises
``ValueError``, as do sequences of different lengths or shorter than 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Values = Sequence[float] | np.ndarray


def _as_array(values: Values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a one-dimensional sequence of numbers, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{what} contains NaN, which has no rank")
    return array


def _pair(a: Values, b: Values) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if len(x) != len(y):
        raise ValueError(f"a and b must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"a rank correlation needs at least 2 values, got {len(x)}")
    return x, y


def ranks(values: Values) -> np.ndarray:
    """1-based ranks of ``values`` in increasing order; tied values share the average of the ranks they span
    (``[10, 20, 20, 30]`` → ``[1, 2.5, 2.5, 4]``), as ``scipy.stats.rankdata``'s default."""
    array = _as_array(values, "values")
    unique, group, counts = np.unique(array, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # the last rank of each group of equal values, 1-based
    average = ends - (counts - 1) / 2.0
    return average[group.reshape(-1)]


def _tied_pairs(array: np.ndarray) -> int:
    _, counts = np.unique(array, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2))


def _signs(later: np.ndarray, value: float) -> np.ndarray:
    """sign(later − value) by comparison, so that infinite values compare too (inf − inf is NaN)."""
    return (later > value).astype(np.int64) - (later < value).astype(np.int64)


def kendall_tau(a: Values, b: Values) -> float:
    """Kendall's tau-b of two equally long sequences (ties in either handled). NaN when either is constant.

    O(n²) time and O(n) memory (one row of pairs at a time), which is instant for the thousands of
    architectures a benchmark has.
    """
    x, y = _pair(a, b)
    n = len(x)
    score = 0  # n_c − n_d; a pair tied in either sequence counts for neither
    for i in range(n - 1):
        score += int(np.dot(_signs(x[i + 1:], x[i]), _signs(y[i + 1:], y[i])))
    pairs = n * (n - 1) // 2
    denominator = (pairs - _tied_pairs(x)) * (pairs - _tied_pairs(y))
    if denominator == 0:
        return float("nan")
    return score / math.sqrt(denominator)


def spearman_rho(a: Values, b: Values) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks of two equally long sequences.
    NaN when either is constant (its ranks have no variance)."""
    x, y = _pair(a, b)
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(np.sum(rx * rx)) * float(np.sum(ry * ry)))
    if denominator == 0.0:
        return float("nan")
    return float(np.sum(rx * ry)) / denominator
