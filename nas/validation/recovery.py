"""How much of a known answer a search found.

``recovery``: a genotype makes, for each intermediate node of each cell, k choices of (op, input).
Given the planted genotype, a derived one recovers a choice when the same node of the same cell
holds the same (op, input) pair; the recovery is the fraction of the planted choices recovered
(order within a node does not matter). ``chance_recovery`` is what a uniformly random genotype of
the same space and rules recovers on average, the floor any search must clear.

``op_recovery``: where only the ops have a known answer (R-DARTS' S4 space, where ``noise`` carries no
signal and ``sep_conv_3x3`` is the right op on every edge), the fraction of the derived cell's edges
that hold a right op; a uniformly random cell scores ``|right| / |non-zero ops|`` on average.

``recovery_curve``: for the discrete searches, the recovery of the best cell found after each number
of evaluations (from ``summary.json``'s evaluation records).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nas.genotype import Genotype, Pair, from_mapping
from nas.ops import get_op

KINDS = ("normal", "reduce")


def node_choices(pairs: Sequence[Pair], nodes: int) -> list[Counter]:
    """The (op, input) pairs of each node, as multisets."""
    k = len(pairs) // nodes
    return [Counter(tuple(p) for p in pairs[j * k:(j + 1) * k]) for j in range(nodes)]


def recovered_choices(derived: Genotype, planted: Genotype) -> tuple[int, int]:
    """(planted choices found in ``derived``, all planted choices), over both cells."""
    found = total = 0
    for kind in KINDS:
        nodes = len(getattr(planted, f"{kind}_concat"))
        mine = node_choices(getattr(derived, kind), nodes)
        theirs = node_choices(getattr(planted, kind), nodes)
        for got, want in zip(mine, theirs):
            found += sum((got & want).values())
            total += sum(want.values())
    return found, total


def recovery(derived: Genotype, planted: Genotype) -> float:
    found, total = recovered_choices(derived, planted)
    return found / total


def chance_recovery(planted: Genotype, op_names: Sequence[str]) -> float:
    """Expected recovery of a uniformly random genotype (``nas.spaces.darts_random``): node j keeps
    k of its 2 + j inputs, so a planted pair's input is among them with probability k/(2 + j), with
    the planted op among the m non-zero ops with probability 1/m."""
    m = sum(1 for name in op_names if not get_op(name).zero)
    expected = total = 0.0
    for kind in KINDS:
        pairs = getattr(planted, kind)
        nodes = len(getattr(planted, f"{kind}_concat"))
        k = len(pairs) // nodes
        for j in range(nodes):
            expected += k * (k / (2 + j)) / m
            total += k
    return expected / total


def op_recovery(derived: Genotype, right_ops: Iterable[str]) -> float:
    """The fraction of the edges of both cells whose op is one of ``right_ops``."""
    right = set(right_ops)
    ops = [op for kind in KINDS for op, _ in getattr(derived, kind)]
    return sum(op in right for op in ops) / len(ops)


def chance_op_recovery(right_ops: Iterable[str], op_names: Sequence[str]) -> float:
    """What a uniformly random cell scores on ``op_recovery`` (ops drawn among the non-zero ones)."""
    candidates = [name for name in op_names if not get_op(name).zero]
    return sum(name in set(right_ops) for name in candidates) / len(candidates)


def recovery_curve(evaluations: Sequence[dict[str, Any]], score: Callable[[Genotype], float],
                   at: Sequence[int]) -> dict[int, float]:
    """``score`` of the best-so-far cell after each count in ``at`` (counts past the run are left out);
    ties keep the earlier cell, as the searches do."""
    curve: dict[int, float] = {}
    best_value, best = float("-inf"), None
    for n, record in enumerate(evaluations, start=1):
        value = record["score"] if record["score"] is not None else float("-inf")
        if best is None or value > best_value:
            best_value, best = value, from_mapping(record["genotype"])
        if n in at:
            curve[n] = score(best)
    return curve
