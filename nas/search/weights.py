"""The weight half of a bilevel step: SGD on the training batch with the alphas held fixed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nas.search.supernet import Supernet


def weight_step(model: Supernet, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor],
                grad_clip: float, average: Callable[[list], None] | None = None,
                edge_weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One SGD step of the weights. The op weights are computed without a graph, so the backward
    pass never reaches the alphas (their gradient is not needed here). ``average`` averages the
    gradients over data-parallel ranks in place, before clipping, so every rank takes the same step.
    ``edge_weights`` replaces the architecture's own op weights (SDARTS' perturbed alphas)."""
    model.train()
    x, y = batch
    with torch.no_grad():
        fixed = model.arch.edge_weights() if edge_weights is None else edge_weights
    logits = model(x, fixed)
    loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    weights = list(model.weights())
    if average is not None:
        average([p.grad for p in weights])
    nn.utils.clip_grad_norm_(weights, grad_clip)
    optimizer.step()
    return {"loss/train": loss.detach(), "acc/train": (logits.argmax(1) == y).float().mean()}
