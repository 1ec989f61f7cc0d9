"""Random cells: the baseline every search has to beat (DARTS reports random cells at 3.29 %).

A random genotype has the format derivation produces: for each of the normal and reduction cells,
node j takes k distinct parents drawn uniformly from its 2 + j candidate inputs (listed in
ascending order), each with an op drawn uniformly from the space's non-zero ops. The draw uses its
own seeded generator, so sampling never disturbs the global RNG that a search or retrain is
seeded with, and the same seed gives the same cells on any machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from nas.errors import ConfigError
from nas.genotype import Genotype, Pair
from nas.ops import get_op
from nas.search.derive import check_k


def _sample_cell(rng: random.Random, ops: Sequence[str], nodes: int, k: int) -> list[Pair]:
    pairs: list[Pair] = []
    for node in range(nodes):
        for parent in sorted(rng.sample(range(2 + node), k)):
            pairs.append((rng.choice(ops), parent))
    return pairs


def sample_genotype(op_names: Sequence[str], nodes: int, k: int, seed: int) -> Genotype:
    """A uniformly random genotype over the space ``op_names`` (``none`` is never chosen)."""
    check_k(k)
    if nodes < 1:
        raise ConfigError(f"a cell needs at least one intermediate node, got nodes={nodes}")
    ops = [name for name in op_names if not get_op(name).zero]
    if not ops:
        raise ConfigError("cannot sample a cell from a space that holds only the zero op")
    rng = random.Random(seed)
    concat = list(range(2, 2 + nodes))
    normal = _sample_cell(rng, ops, nodes, k)
    reduce = _sample_cell(rng, ops, nodes, k)
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=list(concat))
