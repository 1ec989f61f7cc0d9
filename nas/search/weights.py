"""The weight half of a bilevel step: SGD on the training batch with the alphas held fixed."""

from __future__ import annotations

import torch
from torch import nn

from nas.search.supernet import Supernet


def weight_step(model: Supernet, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor],
                grad_clip: float) -> dict[str, torch.Tensor]:
    """One SGD step of the weights. The op weights are computed without a graph, so the backward
    pass never reaches the alphas (their gradient is not needed here)."""
    model.train()
    x, y = batch
    with torch.no_grad():
        fixed = model.arch.edge_weights()
    logits = model(x, fixed)
    loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(list(model.weights()), grad_clip)
    optimizer.step()
    return {"loss/train": loss.detach(), "acc/train": (logits.argmax(1) == y).float().mean()}
