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
from typing import TYPE_CHECKING, Any

import torch

from nas.config import AlgorithmConfig
from nas.search.algorithms import Batch, DartsAlgorithm

if TYPE_CHECKING:
    from nas.search.loop import SearchRun

log = logging.getLogger("nas.search")


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


class AsapAlgorithm(DartsAlgorithm):
    name = "asap"

    def __init__(self, cfg: AlgorithmConfig):
        self.cfg = cfg
        self.t = 0.0  # schedule time in epochs
        self.theta0 = cfg.threshold
        self.prune_events: list[dict[str, Any]] = []
        self.ops_alive_history: list[dict[str, int]] = []

    # -- schedule -------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return temperature_at(self.t, self.cfg.t0, self.cfg.beta)

    @property
    def threshold(self) -> float:
        return threshold_at(self.t, self.theta0, self.cfg.threshold_gamma)

    def setup(self, run: SearchRun) -> None:
        if self.theta0 is None:
            self.theta0 = 0.4 / len(run.op_names)
        self._steps_per_epoch = run.steps_per_epoch()
        self._apply_temperature(run)

    def _apply_temperature(self, run: SearchRun) -> None:
        run.model.arch.temperature.fill_(self.temperature)

    # -- one step -------------------------------------------------------------------------------
    def step(self, run: SearchRun, train_batch: Batch, val_batch: Batch) -> dict[str, torch.Tensor]:
        metrics = run.weight_step(train_batch)
        if self.temperature < self.cfg.grace_temperature:
            metrics["loss/val_step"] = run.arch_step(train_batch, val_batch)
            self.prune(run)
        if self.cfg.schedule_unit == "step":
            self.t += 1.0 / self._steps_per_epoch
            self._apply_temperature(run)
        if run.global_step % run.cfg.log.every_steps == 0:
            self.log_scalars(run, run.global_step + 1)
        return metrics

    def prune(self, run: SearchRun) -> None:
        arch = run.model.arch
        with torch.no_grad():
            weights = arch.edge_weights()
        for kind, alive in arch.alive().items():
            for edge, op in ops_to_prune(weights[kind], alive, self.threshold):
                arch.prune(kind, edge, op)
                event = {"step": run.global_step + 1, "epoch": run.epoch, "cell": kind, "edge": edge,
                         "op": run.op_names[op], "weight": float(weights[kind][edge, op])}
                self.prune_events.append(event)
                run.tb.text("asap/prune", f"step {event['step']} (epoch {event['epoch']}): {kind} edge {edge} "
                            f"drops {event['op']} at weight {event['weight']:.4f}", event["step"])

    def all_edges_decided(self, run: SearchRun) -> bool:
        return all(bool((mask.sum(-1) == 1).all()) for mask in run.model.arch.alive().values())

    def stop_reason(self, run: SearchRun) -> str | None:
        return "one op per edge" if self.all_edges_decided(run) else None

    # -- epochs, logging, results ---------------------------------------------------------------
    def on_epoch_end(self, run: SearchRun) -> None:
        if self.cfg.schedule_unit == "epoch":
            self.t += 1.0
            self._apply_temperature(run)
        alive = run.model.arch.ops_alive()
        self.ops_alive_history.append({"epoch": run.epoch, **alive, "total": sum(alive.values())})
        self.log_scalars(run, run.global_step)

    def log_scalars(self, run: SearchRun, step: int) -> None:
        alive = run.model.arch.ops_alive()
        scalars = {f"asap/ops_alive/{kind}": n for kind, n in alive.items()}
        scalars["asap/ops_alive"] = sum(alive.values())
        scalars["asap/temperature"] = self.temperature
        scalars["asap/threshold"] = self.threshold
        run.tb.scalars(scalars, step)

    def summary(self, run: SearchRun) -> dict[str, Any]:
        return {"asap": {
            "prune_events": self.prune_events,
            "ops_alive_history": self.ops_alive_history,
            "final_temperature": self.temperature,
            "final_threshold": self.threshold,
            "stopped_early": run.stop_reason is not None,
        }}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "theta0": self.theta0, "prune_events": self.prune_events,
                "ops_alive_history": self.ops_alive_history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = float(state["t"])
        self.theta0 = float(state["theta0"])
        self.prune_events = list(state["prune_events"])
        self.ops_alive_history = list(state["ops_alive_history"])
