"""Collapse remedies that act during the search, as engine hooks, each behind one switch (default off).

DARTS drifts towards parameter-free ops as it trains (R-DARTS, Zela et al. 2020). The remedies
here change the search schedule; those that change the supernet live in the mixed edge (PC-DARTS
partial channels, DARTS- auxiliary skip), the weight step's noise in the bilevel stepper (SDARTS-RS,
``weighting.uniform_noise``), and the selection in derivation (P-DARTS skip cap in ``derive``,
DARTS-PT in ``perturbation``).

- DARTS- (Chu et al. 2021): the auxiliary skip's coefficient decays linearly from 1 to 0 over the
  search, so the residual path helps early training and is gone by the end.
- DARTS+ (Liang et al. 2019): stop early when the derived normal cell holds too many skips, or
  when the ranking of ops has stopped changing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from nas.engine import Engine, Hook

if TYPE_CHECKING:
    from collections.abc import Callable

    from nas.search.algorithms.base import EarlyStopConfig
    from nas.spaces import SearchSpace
    from nas.spaces.architecture import Architecture

log = logging.getLogger("nas.search")


def aux_skip_coefficient(step: int, total_steps: int) -> float:
    """DARTS-: 1 at the first step, falling linearly to 0 at the last one."""
    if total_steps <= 1:
        return 0.0
    return max(0.0, 1.0 - step / (total_steps - 1))


class AuxSkipSchedule(Hook):
    """DARTS-: before each step, the auxiliary skip's weight for that step."""

    def __init__(self, arch: Architecture):
        self.arch = arch

    def before_step(self, engine: Engine) -> None:
        self.arch.aux_skip = aux_skip_coefficient(engine.counters.global_step, engine.counters.total_steps)


def argmax_ops(weights: dict[str, torch.Tensor]) -> list[int]:
    """The strongest op index of every edge of both cells: the ranking DARTS+ watches."""
    return [int(i) for kind in sorted(weights) for i in weights[kind].argmax(dim=-1).tolist()]


class EarlyStop(Hook):
    """DARTS+ stopping rules, checked after each epoch on the cell derived then; the reason goes into
    summary.json."""

    name = "early_stop"

    def __init__(self, cfg: EarlyStopConfig, arch: Architecture, space: SearchSpace, genotype: Callable[[], Any]):
        """``genotype()``: the cell derived after the epoch (the hook reads nothing else of the search)."""
        self.cfg, self.arch, self.space, self.genotype = cfg, arch, space, genotype
        self.last_ranking: list[int] | None = None
        self.stable_epochs = 0
        self.reason: str | None = None

    def after_epoch(self, engine: Engine, metrics: dict[str, float]) -> None:
        with torch.no_grad():
            ranking = argmax_ops(self.arch.edge_weights())
        self.stable_epochs = self.stable_epochs + 1 if ranking == self.last_ranking else 0
        self.last_ranking = ranking
        skips = self.space.identity_count(self.genotype())
        if self.cfg.max_skip is not None and skips >= self.cfg.max_skip:
            self.reason = (f"early stop: the {self.space.collapse_kind} cell holds {skips} skip_connect "
                           "(algorithm.early_stop.max_skip)")
        elif self.cfg.stable_epochs is not None and self.stable_epochs >= self.cfg.stable_epochs:
            self.reason = (f"early stop: the argmax ops have not changed for {self.stable_epochs} epochs "
                           "(algorithm.early_stop.stable_epochs)")

    def stop_reason(self, engine: Engine) -> str | None:
        return self.reason

    def state_dict(self) -> dict[str, Any]:
        return {"last_ranking": self.last_ranking, "stable_epochs": self.stable_epochs, "reason": self.reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_ranking = state["last_ranking"]
        self.stable_epochs = int(state["stable_epochs"])
        self.reason = state["reason"]
