"""How much of a known cell a search found: the fraction of its (op, input) choices recovered.

A genotype makes, for each intermediate node of each cell, k choices of (op, input). Given the
planted genotype, a derived one recovers a choice when the same node of the same cell holds the
same (op, input) pair; the recovery is the fraction of the planted choices recovered (order within a
node does not matter). ``chance_recovery`` is what a uniformly random genotype of the same space
and rules recovers on average, the floor any search must clear.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from nas.genotype import Genotype, Pair
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
    """Expected recovery of a uniformly random genotype (``nas.search.random_genotype``): node j keeps
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
