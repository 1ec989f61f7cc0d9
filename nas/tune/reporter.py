"""The tuner inside a trial: an engine hook that reports every epoch and stops a pruned run.

Fidelity is epochs. After each epoch the hook reports the first objective to Optuna
(``trial.report(value, epoch)``) and asks the pruner; when the pruner says stop, ``stop_reason``
returns a reason and the engine ends the run right after that epoch, so ``summary.json`` of the
trial says ``"stop_reason": "pruned by the tuner (asha) after epoch 2"`` and its history holds the
learning curve up to there. A trial that has reached its last epoch is not asked: it is complete,
and pruning it would discard a full result without saving anything.
"""

from __future__ import annotations

from typing import Any

from nas.engine import Hook
from nas.tune.commands import Command
from nas.tune.objective import Objective


class TrialReporter(Hook):
    """Reports ``objective.first`` each epoch to ``trial``; stops the run once ``pruner`` prunes it."""

    def __init__(self, trial: Any, objective: Objective, command: Command, pruner: str):
        self.trial, self.objective, self.command, self.pruner = trial, objective, command, pruner
        self.reason: str | None = None
        self.checked = False
        self.reported: list[tuple[int, float]] = []

    def after_epoch(self, engine: Any, metrics: dict[str, float]) -> None:
        if not self.checked:
            self.objective.check_epoch(self.command, metrics)
            self.checked = True
        value = metrics.get(self.objective.first)
        if self.objective.multi or value is None:  # Optuna takes intermediate values of one objective only
            return
        epoch, last = engine.counters.epoch, engine.counters.epochs
        self.trial.report(float(value), epoch)
        self.reported.append((epoch, float(value)))
        if self.pruner != "none" and epoch < last and self.trial.should_prune():
            self.reason = f"pruned by the tuner ({self.pruner}) after epoch {epoch}"

    def stop_reason(self, engine: Any) -> str | None:
        return self.reason
