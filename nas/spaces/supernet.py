"""What every weight-sharing supernet offers the search: its architecture state (``arch``) and the
two parameter sets the bilevel optimizers see, found by reference, never by name matching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nas.spaces.architecture import Architecture


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


class SupernetBase(nn.Module):
    """A supernet: ``forward(x, edge_weights=None, active=None, recompute=None)`` → logits, ``arch``
    its alphas and masks, ``weights()`` / ``alphas()`` for the two optimizers."""

    arch: Architecture
    op_names: tuple[str, ...]
    recompute: bool = False

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

    def run_cell(self, cell: nn.Module, args: tuple, recompute: bool) -> torch.Tensor:
        """One cell, its activations stored or recomputed in backward (activation checkpointing)."""
        if recompute:
            from torch.utils.checkpoint import checkpoint

            return checkpoint(_recomputable(cell), *args, use_reentrant=False)
        return cell(*args)
