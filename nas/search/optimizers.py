"""The two optimizers of the bilevel problem (DARTS §4 defaults live in nas/config.py: OptimConfig)."""

from __future__ import annotations

import torch

from nas.search.config import OptimConfig
from nas.spaces.darts_supernet import Supernet


def make_optimizers(model: Supernet, o: OptimConfig, epochs: int) -> tuple[
        torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR, torch.optim.Adam]:
    """SGD with a cosine schedule for the weights; Adam for the alphas, which it alone sees."""
    weights = torch.optim.SGD(model.weights(), lr=o.w_lr, momentum=o.w_momentum, weight_decay=o.w_weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weights, T_max=epochs, eta_min=o.w_lr_min)
    alphas = torch.optim.Adam(model.alphas(), lr=o.alpha_lr, betas=tuple(o.alpha_betas),
                              weight_decay=o.alpha_weight_decay)
    return weights, schedule, alphas
