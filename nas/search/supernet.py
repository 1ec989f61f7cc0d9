"""The DARTS supernet: a stem, stacked search cells sharing two sets of alphas, a classifier.

Cells at depth layers//3 and 2·layers//3 reduce resolution and double channels; all BatchNorms
are non-affine (the official search setting), so the only learnable scales are the alphas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from nas.cells import SearchCell
from nas.cells.layout import reduction_layers
from nas.search.architecture import Active, Architecture
from nas.search.weighting import WeightingRule


def _recomputable(cell: nn.Module) -> Callable[..., torch.Tensor]:
    """``cell`` as a function for ``checkpoint`` that recomputes exactly what the first pass computed.

    The parameters in place now are captured and swapped in again for the recomputation: under
    ``torch.func.functional_call`` (the unrolled 2nd-order passes) they are not the module's own,
    which are back by the time backward runs. The recomputation also leaves the BatchNorm running
    statistics alone, so a recomputed step updates them once, as a stored one does.
    """
    params = dict(cell.named_parameters())
    calls = 0

    def run(*args: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return functional_call(cell, params, args)
        norms = [m for m in cell.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0  # running = (1 - 0)·running + 0·batch: unchanged
        try:
            return functional_call(cell, params, args)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum

    return run


class Supernet(nn.Module):
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
        self.arch = Architecture(self.op_names, nodes, init_std=alpha_init_std, edge_norm=edge_norm, rule=rule)

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
            s0, s1 = s1, (checkpoint(_recomputable(cell), *args, use_reentrant=False) if recompute
                          else cell(*args))
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
