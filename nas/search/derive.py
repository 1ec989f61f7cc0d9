"""Derivation: from op weights to a discrete genotype (DARTS §2.4).

For node j, each incoming edge's strength is its largest op weight over ops other than the zero
op; the k strongest edges are kept, each with its strongest non-zero op. A plain function of
(weights, space, rules): the supernet is not needed, so other selection rules can replace it.
Ties are broken deterministically: the earlier input, and the op listed first in the space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nas.cells import edge_inputs
from nas.errors import ConfigError
from nas.genotype import Genotype, Pair
from nas.ops import get_op


def check_k(k: int) -> None:
    # Node 0 has only the two cell inputs as candidate parents, and the genotype format keeps the
    # same number of parents for every node.
    if not 1 <= k <= 2:
        raise ConfigError(f"derive.k={k} is out of range: each node keeps 1 or 2 parents "
                          "(the first node has only the 2 cell inputs as candidates)")


def derive_cell(weights: torch.Tensor, op_names: Sequence[str], nodes: int, k: int = 2) -> list[Pair]:
    """Node-major (op, input) pairs of one cell from its (edges × ops) op weights."""
    check_k(k)
    rows = weights.detach().cpu().tolist()
    candidates = [i for i, name in enumerate(op_names) if not get_op(name).zero]
    if not candidates:
        raise ConfigError("cannot derive a cell from a space that holds only the zero op")
    edges_of_node: dict[int, list[tuple[int, int]]] = {}
    for e, (node, src) in enumerate(edge_inputs(nodes)):
        edges_of_node.setdefault(node, []).append((e, src))
    pairs: list[Pair] = []
    for node in range(nodes):
        scored = []
        for e, src in edges_of_node[node]:
            best = max(candidates, key=lambda i, row=rows[e]: (row[i], -i))
            scored.append((rows[e][best], -src, best, src))
        scored.sort(reverse=True)  # strongest first; on a tie, the earlier input
        pairs.extend((op_names[best], src) for _, _, best, src in scored[:k])
    return pairs


def derive_genotype(edge_weights: Mapping[str, torch.Tensor], op_names: Sequence[str], nodes: int,
                    k: int = 2) -> Genotype:
    concat = list(range(2, 2 + nodes))
    return Genotype(
        normal=derive_cell(edge_weights["normal"], op_names, nodes, k),
        normal_concat=concat,
        reduce=derive_cell(edge_weights["reduce"], op_names, nodes, k),
        reduce_concat=concat,
    )
