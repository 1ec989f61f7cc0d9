"""ASAP (Noy et al., AISTATS 2020): anneal the edge softmax and prune weak ops while training.

Each edge weighs its ops by Φ(α; T) = softmax(α / T), α starting at 0 (every op equal).

What happens when, as implemented here (the paper's Algorithm 1 order; DESIGN §5):
- Every iteration trains the weights on a training batch first.
- The grace period is the start of the search while T ≥ τ (``grace_temperature``): only the weights
  train, so that the alphas are first judged by weights that have learnt something. Once T < τ,
  every iteration then also takes an alpha step on a validation batch and prunes, for good, every
  op whose Φ fell below the threshold θ (never the last op of an edge).
- Then T is updated: T(t) = T0·βᵗ, t in epochs, fractional when updated every step
  (``schedule_unit=step``, the default; β is per epoch either way). θ(t) = θ0·γᵗ is updated with
  it (γ = 1, a constant threshold, is the paper's setting; θ0 = 0.4/|ops| unless set).
- By default β spans the run: β = (T_end/T0)^(1/epochs), so T reaches ``t_end`` at the last epoch
  whatever the search length. With T0 = 1.6 and T_end = 0.12 that is β ≈ 0.95 per epoch over the
  paper-scale 50 epochs, with the grace period over at 18 % of the run; ``beta`` fixes it instead.
- The search stops as soon as every edge holds a single op, else at the epoch limit.

Removed ops are not computed any more, so the search speeds up as it goes. Removing them changes
what every later BatchNorm sees, so before the supernet is evaluated after an epoch that pruned,
its BatchNorm statistics are re-estimated on ``recalibrate_batches`` training batches
(``nas.spaces.calibration``; one forward pass each, about a third of a step): eval-mode accuracy
then measures the network that remains, not a mixture with the ops already gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from nas.config import check, option
from nas.engine import Engine
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import Algorithm, BilevelConfig, algorithm_name
from nas.search.bilevel import Batch
from nas.spaces.calibration import recalibrate_batchnorm
from nas.spaces.weighting import TemperedSoftmax

log = logging.getLogger("nas.search")


@dataclass
class AsapConfig(BilevelConfig):
    name: str = algorithm_name("asap")
    t0: float = option(1.6, gt=0.0, le=1000.0)  # initial temperature
    # T at the last epoch (beta: null). 0.45, not lower: the last epochs run at a learning rate near zero,
    # where the weights cannot adapt to heavy pruning (quickstart: t_end 0.3 prunes 60 % of the ops in the
    # last epoch and ends at val 0.216, 0.45 prunes 25 % and ends at 0.250; darts_1st 0.231)
    t_end: float = option(0.45, gt=0.0, le=1000.0)
    beta: float | None = option(None, gt=0.0, le=1.0)  # decay per epoch; null: (t_end / t0)^(1 / epochs)
    threshold: float | None = option(None, ge=0.0, lt=1.0)  # prune below this weight; None: 0.4 / |ops|
    threshold_gamma: float = option(1.0, gt=0.0, le=100.0)  # θ(t) = θ0·γᵗ per epoch (1: constant)
    grace_temperature: float = option(1.0, gt=0.0)  # arch steps and pruning only while T < this
    schedule_unit: str = option("step", choices=("step", "epoch"))  # how often T is updated
    recalibrate_batches: int = option(20, ge=0, le=100_000)  # BatchNorm re-estimated after pruning (0: off)

    def validate_with(self, cfg: Any) -> None:
        super().validate_with(cfg)
        check(self.beta is not None or self.t_end < self.t0,
              f"algorithm.t_end={self.t_end} must be below algorithm.t0={self.t0}: the temperature anneals")


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
        self.beta = cfg.beta or 1.0
        self.prune_events: list[dict[str, Any]] = []
        self.ops_alive_history: list[dict[str, int]] = []
        self.calibrations: list[dict[str, int]] = []
        self.pruned_since_calibration = False
        self.rule = TemperedSoftmax(cfg.t0)

    def make_rule(self) -> TemperedSoftmax:
        return self.rule

    # -- schedule -------------------------------------------------------------------------------
    def decay(self, epochs: int) -> float:
        """β per epoch: the configured one, or the one that takes T from T0 to T_end in ``epochs``."""
        return self.cfg.beta if self.cfg.beta is not None else (self.cfg.t_end / self.cfg.t0) ** (1.0 / epochs)

    @property
    def temperature(self) -> float:
        return temperature_at(self.t, self.cfg.t0, self.beta)

    @property
    def threshold(self) -> float:
        return threshold_at(self.t, self.theta0, self.cfg.threshold_gamma)

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        if self.theta0 is None:
            self.theta0 = 0.4 / len(ctx.op_names)
        self.beta = self.decay(ctx.counters.epochs)
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
                self.pruned_since_calibration = True
                event = {"step": counters.global_step + 1, "epoch": counters.epoch, "cell": kind, "edge": edge,
                         "op": self.ctx.op_names[op], "weight": float(weights[kind][edge, op])}
                self.prune_events.append(event)
                self.ctx.tb.text("asap/prune", f"step {event['step']} (epoch {event['epoch']}): {kind} edge {edge} "
                                 f"drops {event['op']} at weight {event['weight']:.4f}", event["step"])

    def all_edges_decided(self) -> bool:
        return all(bool((mask.sum(-1) == 1).all()) for mask in self.ctx.supernet.arch.alive().values())

    def stop_reason(self, engine: Engine) -> str | None:
        return "one op per edge" if self.all_edges_decided() else None

    def before_evaluate(self) -> None:
        """After an epoch that pruned: BatchNorm statistics that describe the ops that remain."""
        if not (self.pruned_since_calibration and self.cfg.recalibrate_batches):
            return
        used = recalibrate_batchnorm(self.ctx.supernet, self.ctx.train_batches(), self.cfg.recalibrate_batches)
        self.calibrations.append({"epoch": self.ctx.counters.epoch, "batches": used})
        self.pruned_since_calibration = False

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
            "calibrations": self.calibrations,
            "beta": self.beta,
            "final_temperature": self.temperature,
            "final_threshold": self.threshold,
            "stopped_early": self.all_edges_decided(),
        }}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "theta0": self.theta0, "prune_events": self.prune_events,
                "ops_alive_history": self.ops_alive_history, "calibrations": self.calibrations,
                "pruned_since_calibration": self.pruned_since_calibration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = float(state["t"])
        self.theta0 = float(state["theta0"])
        self.prune_events = list(state["prune_events"])
        self.ops_alive_history = list(state["ops_alive_history"])
        self.calibrations = list(state["calibrations"])
        self.pruned_since_calibration = bool(state["pruned_since_calibration"])
        self.rule.set_temperature(self.temperature)
