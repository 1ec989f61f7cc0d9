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


def derive_cell(weights: torch.Tensor, op_names: Sequence[str], nodes: int, k: int = 2,
                max_skip: int | None = None, edge_scales: torch.Tensor | None = None) -> list[Pair]:
    """Node-major (op, input) pairs of one cell from its (edges × ops) op weights.

    ``edge_scales`` (PC-DARTS edge normalisation) multiply each edge's strength when edges compete
    for a node. ``max_skip`` (P-DARTS) caps the number of skip_connect: while the cell holds more,
    the weakest chosen skip is ruled out on its edge and the cell is derived again, so that edge
    falls back to its next strongest op, or loses its place to another edge of the node.
    """
    check_k(k)
    rows = weights.detach().cpu().tolist()
    scales = [1.0] * len(rows) if edge_scales is None else edge_scales.detach().cpu().tolist()
    candidates = [i for i, name in enumerate(op_names) if not get_op(name).zero]
    if not candidates:
        raise ConfigError("cannot derive a cell from a space that holds only the zero op")
    skip = op_names.index("skip_connect") if "skip_connect" in op_names else None
    banned: set[int] = set()  # edges on which skip_connect is ruled out
    while True:
        chosen = _choose(rows, scales, candidates, nodes, k, banned, skip)
        skips = [(strength, e) for e, op, strength, _ in chosen if op == skip]
        if max_skip is None or len(skips) <= max_skip:
            return [(op_names[op], src) for _, op, _, src in chosen]
        banned.add(min(skips)[1])


def _choose(rows: list[list[float]], scales: list[float], candidates: list[int], nodes: int, k: int,
            banned: set[int], skip: int | None) -> list[tuple[int, int, float, int]]:
    """(edge, op, strength, input) of the k strongest edges of every node, node-major."""
    edges_of_node: dict[int, list[tuple[int, int]]] = {}
    for e, (node, src) in enumerate(edge_inputs(nodes)):
        edges_of_node.setdefault(node, []).append((e, src))
    chosen = []
    for node in range(nodes):
        scored = []
        for e, src in edges_of_node[node]:
            ops = [i for i in candidates if not (e in banned and i == skip)]
            if not ops:
                continue
            best = max(ops, key=lambda i, row=rows[e]: (row[i], -i))
            scored.append((rows[e][best] * scales[e], -src, best, src, e))
        if len(scored) < k:
            raise ConfigError(f"node {node} keeps fewer than k={k} candidate edges under derive.max_skip")
        scored.sort(reverse=True)  # strongest first; on a tie, the earlier input
        chosen.extend((e, best, strength, src) for strength, _, best, src, e in scored[:k])
    return chosen


def derive_genotype(edge_weights: Mapping[str, torch.Tensor], op_names: Sequence[str], nodes: int,
                    k: int = 2, max_skip: int | None = None,
                    edge_scales: Mapping[str, torch.Tensor] | None = None) -> Genotype:
    """Both cells; ``max_skip`` applies to the normal cell (P-DARTS), whose skips cause the collapse."""
    concat = list(range(2, 2 + nodes))
    scales = edge_scales or {}
    return Genotype(
        normal=derive_cell(edge_weights["normal"], op_names, nodes, k, max_skip, scales.get("normal")),
        normal_concat=concat,
        reduce=derive_cell(edge_weights["reduce"], op_names, nodes, k, None, scales.get("reduce")),
        reduce_concat=concat,
    )
