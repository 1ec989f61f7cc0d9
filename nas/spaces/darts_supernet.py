"""The DARTS supernet: a stem, stacked search cells sharing two sets of alphas, a classifier.

Cells at depth layers//3 and 2·layers//3 reduce resolution and double channels; all BatchNorms
are non-affine (the official search setting), so the only learnable scales are the alphas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nas.cells import SearchCell
from nas.cells.layout import reduction_layers
from nas.spaces.architecture import Active, Architecture
from nas.spaces.supernet import SupernetBase
from nas.spaces.weighting import WeightingRule


def darts_edges(nodes: int) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Edges per kind and edges per node of the DARTS cells (node j reads the 2 inputs and j nodes)."""
    sizes = [2 + j for j in range(nodes)]
    return {"normal": sum(sizes), "reduce": sum(sizes)}, {"normal": sizes, "reduce": sizes}


def darts_architecture(op_names: Sequence[str], nodes: int, **options: Any) -> Architecture:
    edges, node_sizes = darts_edges(nodes)
    return Architecture(op_names, edges, node_sizes, **options)


class Supernet(SupernetBase):
    def __init__(self, op_names: Sequence[str], channels: int = 16, layers: int = 8, num_classes: int = 10,
                 nodes: int = 4, stem_multiplier: int = 3, in_channels: int = 3, alpha_init_std: float = 1e-3,
                 partial_channels: int = 1, edge_norm: bool = False, recompute: bool = False,
                 rule: WeightingRule | None = None):
        super().__init__()
        # Recompute each cell's activations in backward instead of storing them (activation
        # checkpointing): peak memory falls to about one cell's activations, for one more forward.
        self.recompute = recompute
        self.op_names = tuple(op_names)
        self.nodes = nodes
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        cells = []
        reduction_prev = False
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            if reduction:
                c_curr *= 2
            cells.append(SearchCell(self.op_names, nodes, c_prev_prev, c_prev, c_curr, reduction, reduction_prev,
                                    partial_channels))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, nodes * c_curr
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.arch = darts_architecture(self.op_names, nodes, init_std=alpha_init_std, edge_norm=edge_norm, rule=rule)

    def forward(self, x: torch.Tensor, edge_weights: dict[str, torch.Tensor] | None = None, active: Active = None,
                recompute: bool | None = None) -> torch.Tensor:
        """Logits. ``edge_weights`` override the weighting rule's (e.g. detached or perturbed ones);
        ``active`` lists per edge the ops to compute (default: every live op).

        ``recompute`` overrides the supernet's own setting for one call (double backward, as the
        Hessian diagnostic needs, goes through stored activations).
        """
        recompute = (self.recompute if recompute is None else recompute) and torch.is_grad_enabled()
        if edge_weights is None:
            edge_weights, active = self.arch.forward_weights(self.training)
        alive = self.arch.alive_lists() if active is None else active
        scales = self.arch.edge_scales()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            args = (s0, s1, edge_weights[kind], None if alive is None else alive[kind],
                    None if scales is None else scales[kind], self.arch.aux_skip)
            s0, s1 = s1, self.run_cell(cell, args, recompute)
        return self.classifier(self.global_pooling(s1).flatten(1))
