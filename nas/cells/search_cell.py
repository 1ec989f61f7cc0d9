"""The search cell: a DAG of mixed edges shared by every cell of one type (normal or reduction).

Node j (0-based) sums one mixed edge from each earlier state: the two cell inputs and nodes
0..j-1, so a cell of n nodes has n(n+3)/2 edges (14 for n=4), numbered node-major. In a reduction
cell the edges leaving the two cell inputs have stride 2. The output concatenates the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.cells.mixed import MixedEdge
from nas.ops import FactorizedReduce, ReLUConvBN


def num_edges(nodes: int) -> int:
    return sum(2 + j for j in range(nodes))


def edge_inputs(nodes: int) -> list[tuple[int, int]]:
    """(node, input state) of every edge, in edge order."""
    return [(j, i) for j in range(nodes) for i in range(2 + j)]


class SearchCell(nn.Module):
    def __init__(self, op_names: Sequence[str], nodes: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, partial_channels: int = 1):
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        # The previous-previous state has twice the resolution when the previous cell reduced.
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedEdge(op_names, channels, stride=2 if reduction and i < 2 else 1, partial_channels=partial_channels)
            for _, i in edge_inputs(nodes)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                alive: Sequence[Sequence[int]] | None = None, edge_scales: torch.Tensor | None = None,
                aux_skip: float = 0.0) -> torch.Tensor:
        """``weights``: (edges × ops) op weights; ``alive``: per edge, the indices of the ops left;
        ``edge_scales``: one factor per edge (edge normalisation) or None."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(self.nodes):
            total = None
            for h in states:
                out = self.edges[e](h, weights[e], None if alive is None else alive[e], aux_skip)
                if edge_scales is not None:
                    out = edge_scales[e] * out
                total = out if total is None else total + out
                e += 1
            states.append(total)
        return torch.cat(states[2:], dim=1)
