"""Search algorithms: what one search step does and when a search ends.

The loop owns the data, the optimizers and the files; an algorithm decides the order of the two
updates in a step (DARTS: alphas, then weights) and may add per-step and per-epoch work (ASAP:
anneal the temperature, prune ops, stop early). New methods subclass ``DartsAlgorithm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from nas.search.loop import SearchRun

Batch = tuple[torch.Tensor, torch.Tensor]


class DartsAlgorithm:
    """DARTS: an arch step on a validation batch, then a weight step on a training batch."""

    name = "darts"

    def setup(self, run: SearchRun) -> None:
        """Called once the supernet and optimizers exist, before the first step."""

    def step(self, run: SearchRun, train_batch: Batch, val_batch: Batch) -> dict[str, torch.Tensor]:
        metrics = {"loss/val_step": run.arch_step(train_batch, val_batch)}
        metrics.update(run.weight_step(train_batch))
        return metrics

    def on_epoch_end(self, run: SearchRun) -> None:
        """Per-epoch work after evaluation (schedules, logging)."""

    def stop_reason(self, run: SearchRun) -> str | None:
        """A reason to end the search before the epoch limit, or None."""
        return None

    def summary(self, run: SearchRun) -> dict[str, Any]:
        """Algorithm-specific entries for summary.json."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
