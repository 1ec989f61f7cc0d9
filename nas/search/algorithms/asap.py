"""ASAP (Noy et al., AISTATS 2020): anneal the edge softmax and prune weak ops while training.

Each edge weighs its ops by Φ(α; T) = softmax(α / T), α starting at 0. The temperature follows
T(t) = T0·βᵗ, t counted in epochs (or fractions of an epoch when updated every step; β is per
epoch either way). Every step trains the weights; once T is below the grace temperature τ it also
trains the alphas and then removes, for good, every op whose Φ fell below the threshold θ (never
the last op of an edge). Removed ops are not computed any more, so the search speeds up as it
goes, and it stops as soon as every edge holds a single op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from nas.config import option
from nas.engine import Engine
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import Algorithm, BilevelConfig, algorithm_name
from nas.search.bilevel import Batch
from nas.search.weighting import TemperedSoftmax

log = logging.getLogger("nas.search")


@dataclass
class AsapConfig(BilevelConfig):
    name: str = algorithm_name("asap")
    t0: float = option(1.6, gt=0.0, le=1000.0)  # initial temperature
    beta: float = option(0.95, gt=0.0, le=1.0)  # temperature decay per epoch, whatever the schedule unit
    threshold: float | None = option(None, ge=0.0, lt=1.0)  # prune below this weight; None: 0.4 / |ops|
    threshold_gamma: float = option(1.0, gt=0.0, le=100.0)  # θ(t) = θ0·γᵗ per epoch (1: constant)
    grace_temperature: float = option(1.0, gt=0.0)  # arch steps and pruning only while T < this
    schedule_unit: str = option("step", choices=("step", "epoch"))  # how often T is updated


def temperature_at(t: float, t0: float, beta: float) -> float:
    """T(t) = T0·βᵗ with t in epochs (fractional when the schedule advances per step)."""
    return t0 * beta**t


def threshold_at(t: float, theta0: float, gamma: float) -> float:
    """θ(t) = θ0·γᵗ, capped below 1 (γ = 1: the paper's constant threshold)."""
    return min(theta0 * gamma**t, 0.999)


def ops_to_prune(weights: torch.Tensor, alive: torch.Tensor, threshold: float) -> list[tuple[int, int]]:
    """(edge, op) pairs whose weight is below ``threshold``, sparing the strongest op of an edge
    that would otherwise be emptied."""
    pairs = []
    for edge in range(weights.shape[0]):
        live = alive[edge].nonzero().flatten().tolist()
        weak = [op for op in live if float(weights[edge, op]) < threshold]
        if len(weak) == len(live):
            strongest = max(live, key=lambda op: float(weights[edge, op]))
            weak.remove(strongest)
        pairs.extend((edge, op) for op in weak)
    return pairs


@register_algorithm("asap", AsapConfig)
class Asap(Algorithm):
    alpha_init_std = 0.0  # α = 0: every op starts with the same weight

    def __init__(self, cfg: AsapConfig):
        super().__init__(cfg)
        self.cfg: AsapConfig = cfg
        self.t = 0.0  # schedule time in epochs
        self.theta0 = cfg.threshold
        self.prune_events: list[dict[str, Any]] = []
        self.ops_alive_history: list[dict[str, int]] = []
        self.rule = TemperedSoftmax(cfg.t0)

    def make_rule(self) -> TemperedSoftmax:
        return self.rule

    # -- schedule -------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return temperature_at(self.t, self.cfg.t0, self.cfg.beta)

    @property
    def threshold(self) -> float:
        return threshold_at(self.t, self.theta0, self.cfg.threshold_gamma)

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        if self.theta0 is None:
            self.theta0 = 0.4 / len(ctx.op_names)
        self.rule.set_temperature(self.temperature)

    # -- one step -------------------------------------------------------------------------------
    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        counters = self.ctx.counters
        metrics = self.ctx.bilevel.weight_step(train)
        if self.temperature < self.cfg.grace_temperature:
            metrics["loss/val_step"] = self.ctx.bilevel.alpha_step(train, val)
            self.prune()
        if self.cfg.schedule_unit == "step":
            self.t += 1.0 / counters.steps_per_epoch
            self.rule.set_temperature(self.temperature)
        if counters.global_step % self.ctx.log_every == 0:
            self.log_scalars(counters.global_step + 1)
        return metrics

    def prune(self) -> None:
        arch, counters = self.ctx.supernet.arch, self.ctx.counters
        with torch.no_grad():
            weights = arch.edge_weights()
        for kind, alive in arch.alive().items():
            for edge, op in ops_to_prune(weights[kind], alive, self.threshold):
                arch.prune(kind, edge, op)
                event = {"step": counters.global_step + 1, "epoch": counters.epoch, "cell": kind, "edge": edge,
                         "op": self.ctx.op_names[op], "weight": float(weights[kind][edge, op])}
                self.prune_events.append(event)
                self.ctx.tb.text("asap/prune", f"step {event['step']} (epoch {event['epoch']}): {kind} edge {edge} "
                                 f"drops {event['op']} at weight {event['weight']:.4f}", event["step"])

    def all_edges_decided(self) -> bool:
        return all(bool((mask.sum(-1) == 1).all()) for mask in self.ctx.supernet.arch.alive().values())

    def stop_reason(self, engine: Engine) -> str | None:
        return "one op per edge" if self.all_edges_decided() else None

    # -- epochs, logging, results ---------------------------------------------------------------
    def after_epoch(self, engine: Engine, metrics: dict[str, float]) -> None:
        if self.cfg.schedule_unit == "epoch":
            self.t += 1.0
            self.rule.set_temperature(self.temperature)
        alive = self.ctx.supernet.arch.ops_alive()
        self.ops_alive_history.append({"epoch": engine.counters.epoch, **alive, "total": sum(alive.values())})
        self.log_scalars(engine.counters.global_step)

    def log_scalars(self, step: int) -> None:
        alive = self.ctx.supernet.arch.ops_alive()
        scalars: dict[str, float] = {f"asap/ops_alive/{kind}": n for kind, n in alive.items()}
        scalars["asap/ops_alive"] = sum(alive.values())
        scalars["asap/temperature"] = self.temperature
        scalars["asap/threshold"] = self.threshold
        self.ctx.tb.scalars(scalars, step)

    def summary(self) -> dict[str, Any]:
        return {"asap": {
            "prune_events": self.prune_events,
            "ops_alive_history": self.ops_alive_history,
            "final_temperature": self.temperature,
            "final_threshold": self.threshold,
            "stopped_early": self.all_edges_decided(),
        }}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "theta0": self.theta0, "prune_events": self.prune_events,
                "ops_alive_history": self.ops_alive_history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = float(state["t"])
        self.theta0 = float(state["theta0"])
        self.prune_events = list(state["prune_events"])
        self.ops_alive_history = list(state["ops_alive_history"])
        self.rule.set_temperature(self.temperature)
