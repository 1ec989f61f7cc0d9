"""Weighting rules: how the alphas of an edge become the weights of its ops.

This is where one-shot methods differ: DARTS takes a softmax, ASAP a softmax at a temperature,
GDAS a hard Gumbel sample, DrNAS a Dirichlet sample, FairDARTS independent sigmoids. The search
algorithm chooses the rule; the supernet only sums ops with the weights it is given, and the
architecture's masks stay the one way ops leave computation.

A rule answers three questions, per cell kind, for an (edges × ops) alpha tensor and its mask:

- ``probabilities``: deterministic weights, for derivation, logging and heatmaps;
- ``sample``: the weights of one forward pass in training, and which ops that pass must compute
  (``None``: every live op) — a rule that samples one op per edge computes only that op;
- ``eval_weights``: the weights of an evaluation pass (by default the probabilities).

Rules are modules so that their state (ASAP's temperature) is saved in every checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

Active = list[list[int]] | None  # per edge, the ops a pass computes; None: every live op


class WeightingRule(nn.Module):
    """Softmax over the live ops of each edge: DARTS' rule, and the base of the others."""

    name = "softmax"

    def probabilities(self, alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha.masked_fill(~alive, float("-inf")), dim=-1)

    def sample(self, alpha: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, Active]:
        return self.probabilities(alpha, alive), None

    def eval_weights(self, alpha: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, Active]:
        return self.probabilities(alpha, alive), None


class TemperedSoftmax(WeightingRule):
    """softmax(α / T) (ASAP): as T falls, the weights sharpen towards the argmax."""

    name = "tempered_softmax"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_temperature(self, value: float) -> None:
        self.temperature.fill_(value)

    def probabilities(self, alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        return torch.softmax((alpha / self.temperature).masked_fill(~alive, float("-inf")), dim=-1)


def uniform_noise(alphas: dict[str, torch.Tensor], epsilon: float,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Detached copies of the alphas plus uniform noise in [-ε, ε] (SDARTS-RS random smoothing)."""
    noisy = {}
    for kind, alpha in alphas.items():
        noise = torch.rand(alpha.shape, generator=generator, dtype=alpha.dtype).to(alpha.device)
        noisy[kind] = alpha.detach() + (2 * noise - 1) * epsilon
    return noisy
