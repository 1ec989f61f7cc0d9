"""BatchNorm recalibration: running statistics that describe the network as it is now.

A supernet is evaluated in eval mode, with the BatchNorm running statistics gathered while it
trained. When its computation changes abruptly — ASAP prunes ops, a node's sum loses terms —
those statistics describe a network that no longer exists, and eval-mode accuracy collapses while
train-mode accuracy does not. Re-estimating the statistics on a few training batches (train-mode
forward passes without gradients, averaged with equal weight) makes eval mode see the network
that remains. It costs one forward pass per batch, about a third of a training step each.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int) -> int:
    """Replace every BatchNorm's running mean and variance by their average over the first
    ``limit`` of ``batches``; returns how many batches were used. The global RNG is left as it
    was (stochastic ops draw from a forked stream), so a run draws the same numbers with or
    without calibration, and the module modes are restored."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    used = 0
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
    model.train()
    try:
        with torch.random.fork_rng(devices=devices):
            for x, _ in islice(batches, limit):
                model(x)
                used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used
