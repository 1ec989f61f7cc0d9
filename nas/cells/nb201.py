"""The NAS-Bench-201 cell (Dong & Yang, ICLR 2020): a 4-node DAG with an edge between every pair.

Node 0 is the cell input; node j (1..3) sums one edge from each earlier node, so the cell has the
six edges 1←0, 2←0, 2←1, 3←0, 3←1, 3←2 (the benchmark's order, which is also the order of the
alphas' rows and of the genotype text). The output is node 3. Every edge keeps the cell's width
and resolution: the stages are joined by residual blocks outside the cells.

``SearchCell201`` puts a mixed edge on every edge (the weight-sharing supernet); ``DiscreteCell201``
one op per edge, ``none`` included (an edge that carries nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.cells.discrete import drop_path
from nas.cells.mixed import MixedEdge
from nas.ops import get_op


def nb201_edges(nodes: int = 3) -> list[tuple[int, int]]:
    """(target node, source node) of every edge, in the benchmark's order; ``nodes`` after the input."""
    return [(j, i) for j in range(1, nodes + 1) for i in range(j)]


class SearchCell201(nn.Module):
    def __init__(self, op_names: Sequence[str], channels: int, nodes: int = 3, partial_channels: int = 1):
        super().__init__()
        self.nodes = nodes
        # No BatchNorm after the pool: the benchmark's supernet has none (unlike the DARTS search net).
        self.edges = nn.ModuleList(MixedEdge(op_names, channels, 1, partial_channels, search_norm=False)
                                   for _ in nb201_edges(nodes))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, alive: Sequence[Sequence[int]] | None = None,
                edge_scales: torch.Tensor | None = None, aux_skip: float = 0.0) -> torch.Tensor:
        states = [x]
        e = 0
        for j in range(1, self.nodes + 1):
            total = None
            for i in range(j):
                out = self.edges[e](states[i], weights[e], None if alive is None else alive[e], aux_skip)
                if edge_scales is not None:
                    out = edge_scales[e] * out
                total = out if total is None else total + out
                e += 1
            states.append(total)
        return states[-1]


class DiscreteCell201(nn.Module):
    """One op per edge; ``none`` edges are not computed (they add zeros)."""

    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.nodes = 3
        specs = [get_op(op) for op in ops]
        self.ops = nn.ModuleList(spec.build(channels, 1, affine=True) for spec in specs)
        self.zero = [spec.zero for spec in specs]
        self.droppable = [not spec.identity for spec in specs]

    def forward(self, x: torch.Tensor, drop_path_prob: float = 0.0) -> torch.Tensor:
        drop = drop_path_prob if self.training else 0.0
        states = [x]
        e = 0
        for j in range(1, self.nodes + 1):
            total = torch.zeros_like(x)
            for i in range(j):
                if not self.zero[e]:
                    out = self.ops[e](states[i])
                    total = total + (drop_path(out, drop) if self.droppable[e] else out)
                e += 1
            states.append(total)
        return states[-1]
