"""Collapse remedies that act during the search, each behind one config switch (default off).

DARTS drifts towards parameter-free ops as it trains (R-DARTS, Zela et al. 2020). The remedies
here are the published ones that change the search itself; those that change the supernet live
in the mixed edge (PC-DARTS partial channels, DARTS- auxiliary skip), those that change the
selection in derivation (P-DARTS skip cap in ``derive``, DARTS-PT in ``perturbation``).

- SDARTS-RS (Chen & Hsieh 2020): the weight step sees alphas with uniform noise in [-ε, ε], so the
  weights learn to work for a neighbourhood of architectures, which flattens the loss landscape
  with respect to the alphas. The alphas themselves never change in that step.
- DARTS- (Chu et al. 2021): the auxiliary skip's coefficient decays linearly from 1 to 0 over the
  search, so the residual path helps early training and is gone by the end.
- DARTS+ (Liang et al. 2019): stop early when the derived normal cell holds too many skips, or
  when the ranking of ops has stopped changing.
"""

from __future__ import annotations

from typing import Any

import torch

from nas.config import EarlyStopConfig
from nas.genotype import Genotype


def perturbed_alphas(alphas: dict[str, torch.Tensor], epsilon: float,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Detached copies of the alphas plus uniform noise in [-ε, ε] (SDARTS-RS random smoothing)."""
    noisy = {}
    for kind, alpha in alphas.items():
        noise = torch.rand(alpha.shape, generator=generator, dtype=alpha.dtype).to(alpha.device)
        noisy[kind] = alpha.detach() + (2 * noise - 1) * epsilon
    return noisy


def aux_skip_coefficient(step: int, total_steps: int) -> float:
    """DARTS-: 1 at the first step, falling linearly to 0 at the last one."""
    if total_steps <= 1:
        return 0.0
    return max(0.0, 1.0 - step / (total_steps - 1))


def argmax_ops(weights: dict[str, torch.Tensor]) -> list[int]:
    """The strongest op index of every edge of both cells: the ranking DARTS+ watches."""
    return [int(i) for kind in sorted(weights) for i in weights[kind].argmax(dim=-1).tolist()]


class EarlyStop:
    """DARTS+ stopping rules, checked after each epoch; the reason goes into summary.json."""

    def __init__(self, cfg: EarlyStopConfig):
        self.cfg = cfg
        self.last_ranking: list[int] | None = None
        self.stable_epochs = 0

    def check(self, genotype: Genotype, weights: dict[str, torch.Tensor]) -> str | None:
        ranking = argmax_ops(weights)
        self.stable_epochs = self.stable_epochs + 1 if ranking == self.last_ranking else 0
        self.last_ranking = ranking
        skips = sum(op == "skip_connect" for op, _ in genotype.normal)
        if self.cfg.max_skip is not None and skips >= self.cfg.max_skip:
            return f"early stop: the normal cell holds {skips} skip_connect (algorithm.early_stop.max_skip)"
        if self.cfg.stable_epochs is not None and self.stable_epochs >= self.cfg.stable_epochs:
            return (f"early stop: the argmax ops have not changed for {self.stable_epochs} epochs "
                    "(algorithm.early_stop.stable_epochs)")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"last_ranking": self.last_ranking, "stable_epochs": self.stable_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_ranking = state["last_ranking"]
        self.stable_epochs = int(state["stable_epochs"])
