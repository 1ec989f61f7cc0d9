"""Random DARTS cells by seed: the baseline every search has to beat (DARTS reports random cells at 3.29 %).

This is the DARTS space's fixed-seed draw that ``nas-rank`` and the validation scripts use for
their random-cell rows (one seed, one cell, stable across versions); the discrete strategies draw
through ``nas.spaces.Sampler``, which works in every space.

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
from nas.spaces.darts_derive import check_k


def _sample_cell(rng: random.Random, ops: Sequence[str], nodes: int, k: int,
                 max_skip: int | None = None) -> list[Pair]:
    """Node by node, k distinct parents and an op for each; once ``max_skip`` skip connections are
    in the cell, the remaining ops are drawn from the other ops (as derivation falls back)."""
    pairs: list[Pair] = []
    for node in range(nodes):
        for parent in sorted(rng.sample(range(2 + node), k)):
            capped = max_skip is not None and sum(op == "skip_connect" for op, _ in pairs) >= max_skip
            choices = [op for op in ops if op != "skip_connect"] if capped else ops
            if not choices:
                raise ConfigError("derive.max_skip leaves no op to draw: the space holds only skip_connect")
            pairs.append((rng.choice(choices), parent))
    return pairs


def sample_genotype(op_names: Sequence[str], nodes: int, k: int, seed: int,
                    max_skip: int | None = None) -> Genotype:
    """A uniformly random genotype over the space ``op_names`` (``none`` is never chosen; at most
    ``max_skip`` skip_connect in the normal cell, the P-DARTS rule derivation applies)."""
    check_k(k)
    if nodes < 1:
        raise ConfigError(f"a cell needs at least one intermediate node, got nodes={nodes}")
    ops = [name for name in op_names if not get_op(name).zero]
    if not ops:
        raise ConfigError("cannot sample a cell from a space that holds only the zero op")
    rng = random.Random(seed)
    concat = list(range(2, 2 + nodes))
    normal = _sample_cell(rng, ops, nodes, k, max_skip)
    reduce = _sample_cell(rng, ops, nodes, k)
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=list(concat))
