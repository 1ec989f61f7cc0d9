"""Size figures of an evaluation network: parameters, auxiliary-head parameters and MACs.

Conventions (DESIGN §6), chosen so the numbers compare with the papers': parameters exclude the
auxiliary head, which exists only to help training; MACs are counted in eval mode (no auxiliary
head, no drop path) for one image by ``torch.utils.flop_counter`` (convolutions and linear
layers), and MACs = FLOPs / 2 because that counter counts a multiply-add as two FLOPs.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.spaces.darts_networks import EvalNetwork


def count_parameters(model: EvalNetwork) -> tuple[int, int]:
    """(parameters without the auxiliary head, parameters of the auxiliary head)."""
    total = sum(p.numel() for p in model.parameters())
    head = getattr(model, "aux_head", None)  # networks without one (NAS-Bench-201) have no such attribute
    aux = sum(p.numel() for p in head.parameters()) if head is not None else 0
    return total - aux, aux


def count_macs(model: EvalNetwork, image_size: int, in_channels: int = 3) -> int:
    """Multiply-accumulates of one eval-mode forward pass of a single image."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: EvalNetwork, image_size: int, in_channels: int = 3) -> dict[str, int]:
    """``params``, ``aux_params`` and ``macs``, as ``summary.json`` records them."""
    params, aux_params = count_parameters(model)
    return {"params": params, "aux_params": aux_params, "macs": count_macs(model, image_size, in_channels)}


def describe(figures: dict[str, int], image_size: int) -> str:
    """One human line of the figures."""
    return (f"params {figures['params']:,}   aux head params {figures['aux_params']:,}   "
            f"MACs {figures['macs'] / 1e6:.2f} M ({image_size} px, 1 image)")
