"""The DARTS supernet: a stem, stacked search cells sharing two sets of alphas, a classifier.

Cells at depth layers//3 and 2·layers//3 reduce resolution and double channels; all BatchNorms
are non-affine (the official search setting), so the only learnable scales are the alphas.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from nas.cells import SearchCell
from nas.cells.layout import reduction_layers
from nas.search.architecture import Architecture


class Supernet(nn.Module):
    def __init__(self, op_names: Sequence[str], channels: int = 16, layers: int = 8, num_classes: int = 10,
                 nodes: int = 4, stem_multiplier: int = 3, in_channels: int = 3, alpha_init_std: float = 1e-3,
                 partial_channels: int = 1, edge_norm: bool = False):
        super().__init__()
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
        self.arch = Architecture(self.op_names, nodes, init_std=alpha_init_std, edge_norm=edge_norm)

    def forward(self, x: torch.Tensor, edge_weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits; ``edge_weights`` overrides the architecture's own weights (e.g. detached or perturbed)."""
        weights = self.arch.edge_weights() if edge_weights is None else edge_weights
        alive = self.arch.alive_lists()
        scales = self.arch.edge_scales()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], None if alive is None else alive[kind],
                              None if scales is None else scales[kind], self.arch.aux_skip)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def named_weights(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Network weights (everything but the architecture), with their names."""
        arch = {id(p) for p in self.arch.parameters()}
        for name, p in self.named_parameters():
            if id(p) not in arch:
                yield name, p

    def weights(self) -> Iterator[nn.Parameter]:
        for _, p in self.named_weights():
            yield p

    def alphas(self) -> list[nn.Parameter]:
        """All architecture parameters (the optimizers and the hypergradient see these): the op
        alphas, and the edge-normalisation βs when they exist."""
        return list(self.arch.alphas().values()) + list(self.arch.betas().values())
