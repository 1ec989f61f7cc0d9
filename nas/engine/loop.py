"""The engine: the epochs and steps of any task, with everything a long run needs, written once.

A task (the search, the retrain, a tuning trial) supplies what differs: its batches, one step, an
evaluation, its state and its per-epoch work. The engine owns what is the same for all of them:
the position to resume from (epoch, step, the running means of the epoch), the progress bar,
SIGTERM/SIGINT, the NaN guard, checkpoint cadence and rotation, the agreement of data-parallel
ranks, and hooks where other code plugs in without touching the loop: collapse remedies and
diagnostics, schedules, and a tuner that reports each epoch's metric and stops a trial.

One epoch: ``task.batches`` → ``task.step`` for each batch (hooks before and after) →
``task.end_train_epoch`` → ``task.evaluate`` → ``task.end_epoch`` → hooks → checkpoint →
``task.publish`` (result files, written after the checkpoint so that a run killed in between
always has a checkpoint that matches its results). After the last epoch, each hook's
``after_fit`` (a final selection phase), then ``summary.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from nas import checkpoint
from nas.distributed import World
from nas.engine.meters import EpochTimer, RunningMean, progress
from nas.engine.signals import Interrupted, StopSignals
from nas.engine.state import rng_state, set_rng_state
from nas.errors import CheckpointError, UserError

log = logging.getLogger("nas")
Metrics = dict[str, torch.Tensor]


class NonFiniteLoss(UserError):
    """A loss, a metric or a saved tensor became NaN or infinite: the run stops before saving it."""


@dataclass
class Counters:
    """Where the run is; tasks, algorithms and hooks read it, only the engine moves it."""

    epochs: int
    steps_per_epoch: int = 0
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps of the current epoch done (non-zero only mid-epoch)
    global_step: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def progress(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        return min(1.0, self.global_step / max(self.total_steps, 1))


class Hook:
    """Code that plugs into the engine; every method is optional. ``name``: key of its checkpoint state."""

    name = ""

    def before_fit(self, engine: Engine) -> None:
        """Once per session, before the first step (one-time setup that may be interrupted: the engine
        checkpoints and stops if a signal arrived during it, see ``Engine.stop_if_signalled``)."""

    def before_step(self, engine: Engine) -> None:
        """Before each step (schedules that set something the step reads)."""

    def after_step(self, engine: Engine, metrics: Metrics) -> None:
        """After each step; ``metrics`` are the step's (agreed over ranks)."""

    def after_epoch(self, engine: Engine, metrics: dict[str, float]) -> None:
        """After the task's epoch work, before the checkpoint; may add entries to ``metrics``."""

    def after_checkpoint(self, engine: Engine) -> None:
        """After each checkpoint is written (results that must never run ahead of a checkpoint)."""

    def stop_reason(self, engine: Engine) -> str | None:
        """A reason to end the run now (checked after every step and epoch), or None."""
        return None

    def after_fit(self, engine: Engine) -> None:
        """After the last epoch, before the summary (a final selection phase)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class Task(Protocol):
    """What a task supplies to the engine. A task may also set ``checkpoint_every`` (steps), a cadence it
    needs whatever the config says: a discrete search checkpoints after every evaluation."""

    checkpoint_format: str
    hooks: list[Hook]

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int, start: int) -> Iterator[Any]: ...
    def step(self, batch: Any) -> tuple[Metrics, int]: ...
    def end_train_epoch(self) -> None: ...
    def evaluate(self, engine: Engine) -> dict[str, float]: ...
    def end_epoch(self, engine: Engine, metrics: dict[str, float]) -> Sequence[str]: ...
    def publish(self, engine: Engine) -> None: ...
    def summary(self, engine: Engine) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]: ...


class Engine:
    """Runs ``task`` for ``counters.epochs`` epochs in ``run_dir``; ``fit()`` returns the summary."""

    def __init__(self, task: Task, run_dir: str | Path, world: World, counters: Counters, *,
                 checkpoint_every: int, show_progress: bool,
                 config: dict[str, Any], hooks: Sequence[Hook] = (), nan_hint: str = "try a lower learning rate"):
        self.task = task
        self.run_dir = Path(run_dir)
        self.world = world
        self.counters = counters
        self.checkpoint_every = checkpoint_every
        self.show_progress = show_progress and world.is_main
        self.config = config
        self.hooks: list[Hook] = [*task.hooks, *hooks]
        self.nan_hint = nan_hint
        self.signals = StopSignals()
        self.timer = EpochTimer()
        self.means: dict[str, RunningMean] = {}
        self.history: list[dict[str, float]] = []
        self.stop_reason: str | None = None
        self.previous_wall_time = 0.0
        self.examples, self.step_seconds = 0, 0.0  # training examples seen (all ranks) and time spent on them
        self.checkpoints_written = 0
        self.pending_epoch_end: float | None = None  # the epoch time of an epoch whose end was interrupted
        counters.steps_per_epoch = task.steps_per_epoch()

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        c = self.counters
        with self.signals:
            for hook in self.hooks:
                hook.before_fit(self)
            if self.pending_epoch_end is not None:  # interrupted while evaluating: finish that epoch first
                self.end_epoch(self.pending_epoch_end)
            while c.epoch < c.epochs and self.stop_reason is None:
                self.timer.start_epoch()
                self.train_epoch()
                self.task.end_train_epoch()
                c.epoch += 1
                c.step_in_epoch = 0
                self.end_epoch(self.timer.end_epoch())
            for hook in self.hooks:
                hook.after_fit(self)
        return self.write_summary()

    def train_epoch(self) -> None:
        """Train until the end of the current epoch, starting where a resumed run left off."""
        c = self.counters
        steps = c.steps_per_epoch
        if c.step_in_epoch == 0:
            self.means = {}
        bar = progress(range(c.step_in_epoch, steps), steps - c.step_in_epoch, f"epoch {c.epoch + 1}/{c.epochs}",
                       self.show_progress)
        last = time.perf_counter()
        for _, batch in zip(bar, self.task.batches(c.epoch, c.step_in_epoch)):
            for hook in self.hooks:
                hook.before_step(self)
            metrics, n = self.task.step(batch)
            c.global_step += 1
            c.step_in_epoch += 1
            received = self.world.agree_(metrics, self.signals.received)
            self.check_finite(metrics, f"at step {c.global_step}")  # waits for the device
            for key, value in metrics.items():
                self.means.setdefault(key, RunningMean()).update(value, n)
            now = time.perf_counter()
            self.step_seconds += now - last
            self.examples += n * self.world.size
            for hook in self.hooks:
                hook.after_step(self, metrics)
            self.update_stop_reason()
            if received:
                self.signals.received = received  # another rank's signal stops this one too
                self.stop_if_signalled()
            if self.stop_reason is not None:
                break
            if self.checkpoint_every and c.global_step % self.checkpoint_every == 0 and c.step_in_epoch < steps:
                self.save_checkpoint()
            last = time.perf_counter()  # checkpoints are not training time

    def end_epoch(self, epoch_time: float) -> None:
        self.pending_epoch_end = epoch_time
        metrics: dict[str, float] = {key: mean.mean for key, mean in self.means.items()}
        metrics.update(self.task.evaluate(self))
        self.stop_if_signalled()  # the evaluation stopped early: redo it on resume
        self.pending_epoch_end = None
        metrics["time/epoch_s"] = epoch_time
        extra = self.task.end_epoch(self, metrics)
        for hook in self.hooks:
            hook.after_epoch(self, metrics)
        self.history.append({"epoch": self.counters.epoch, **metrics})
        self.update_stop_reason()
        self.check_finite(metrics, f"after epoch {self.counters.epoch}")
        self.save_checkpoint(extra)
        self.task.publish(self)

    def stop_if_signalled(self) -> None:
        """In a long phase outside the steps (evaluation, selection): checkpoint and stop on a signal."""
        received = self.world.any_(self.signals.received)  # every rank stops at the same point
        if received:
            self.save_checkpoint()
            raise Interrupted(received, self.counters.global_step, self.run_dir)

    def update_stop_reason(self) -> None:
        if self.stop_reason is None:
            self.stop_reason = next((r for r in (h.stop_reason(self) for h in self.hooks) if r), None)
            if self.stop_reason:
                log.info("%s", self.stop_reason)

    # -- the NaN guard ---------------------------------------------------------------------------
    def check_finite(self, metrics: dict[str, Any], where: str) -> None:
        """Stop at the first NaN/inf metric, before a checkpoint could save the damage."""
        for name, value in metrics.items():
            if isinstance(value, (torch.Tensor, float, int)) and not math.isfinite(float(value)):
                raise NonFiniteLoss(f"{name} became {float(value)} {where}; stopping. {self.last_good()} "
                                    f"({self.nan_hint})")

    def check_state_finite(self) -> None:
        """Every floating tensor the task would save must be finite (weights, alphas, BatchNorm
        statistics, optimizer moments): a state that is not is never written."""
        for name, tensor in self.task.tensors():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLoss(f"{name} became non-finite by step {self.counters.global_step}; stopping. "
                                    f"{self.last_good()} ({self.nan_hint})")

    def last_good(self) -> str:
        if self.checkpoints_written or (self.run_dir / "checkpoints" / "last.pt").is_file():
            return f"The last finite checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}, untouched"
        return "No checkpoint was written"

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        c = self.counters
        engine_state = {
            "format": self.task.checkpoint_format,
            "epoch": c.epoch,
            "step_in_epoch": c.step_in_epoch,
            "global_step": c.global_step,
            "epoch_means": {key: mean.state() for key, mean in self.means.items()},
            "history": self.history,
            "epoch_times": self.timer.epoch_times,
            "wall_time_s": self.wall_time,
            "examples": self.examples,
            "step_seconds": self.step_seconds,
            "stop_reason": self.stop_reason,
            "pending_epoch_end": self.pending_epoch_end,
            "hooks": {h.name: h.state_dict() for h in self.hooks if h.name},
            "rng": rng_state(),
            "config": self.config,
        }
        return {**self.task.state_dict(), **engine_state}

    def save_checkpoint(self, also: Sequence[str] = ()) -> None:
        """``checkpoints/last.pt`` (the one before kept as ``previous.pt``), plus ``<name>.pt`` for each
        name in ``also`` (e.g. ``best``). Refused, with the run stopped, if the state is not finite."""
        if not self.world.is_main:
            return
        self.check_state_finite()
        state = self.state_dict()
        folder = self.run_dir / "checkpoints"
        try:
            checkpoint.save_rotating(folder, state)
            for name in also:
                checkpoint.save(folder / f"{name}.pt", state)
        except OSError as exc:
            raise UserError(f"cannot write a checkpoint into {folder}: {exc.strerror or exc}") from None
        self.checkpoints_written += 1
        for hook in self.hooks:
            hook.after_checkpoint(self)

    def load_state_dict(self, state: dict[str, Any], path: str | Path) -> None:
        """Continue exactly where ``state`` was saved; a checkpoint with a bad body is a one-line error."""
        c = self.counters
        try:
            self.task.load_state_dict(state)
            c.epoch, c.step_in_epoch, c.global_step = (int(state["epoch"]), int(state["step_in_epoch"]),
                                                       int(state["global_step"]))
            self.means = {key: RunningMean() for key in state["epoch_means"]}
            for key, mean in self.means.items():
                mean.load_state(state["epoch_means"][key])
            self.history = list(state["history"])
            self.timer.epoch_times = list(state["epoch_times"])
            self.previous_wall_time = float(state["wall_time_s"])
            self.examples, self.step_seconds = int(state["examples"]), float(state["step_seconds"])
            self.stop_reason = state["stop_reason"]
            self.pending_epoch_end = state["pending_epoch_end"]
            for hook in self.hooks:
                if hook.name:
                    hook.load_state_dict(state["hooks"][hook.name])
            set_rng_state(state["rng"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {path} is not a complete {self.task.checkpoint_format} checkpoint "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        log.info("resumed from %s at epoch %d, step %d", path, c.epoch, c.global_step)

    # -- results ---------------------------------------------------------------------------------
    @property
    def wall_time(self) -> float:
        return self.previous_wall_time + self.timer.wall_time

    def write_summary(self) -> dict[str, Any]:
        c = self.counters
        summary = {
            "epochs": c.epoch,
            "steps": c.global_step,
            "stop_reason": self.stop_reason or "epoch limit",
            "wall_time_s": self.wall_time,
            "epoch_times_s": self.timer.epoch_times,
            "examples_per_s": self.examples / self.step_seconds if self.step_seconds else None,
            "run_dir": str(self.run_dir),
            "history": self.history,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "world_size": self.world.size,
            **self.task.summary(self),
        }
        self.check_finite({k: v for k, v in summary.items() if isinstance(v, float)}, "at the end of the run")
        if self.world.is_main:
            checkpoint.write_json(self.run_dir / "summary.json", summary)
        return summary


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]], world: World,
             signals: StopSignals | None = None) -> dict[str, float]:
    """Means over a whole split of the sums ``score(x, y)`` returns, in eval mode, over all ranks.

    Rank 0's BatchNorm statistics are used everywhere (they differ between ranks without sync_bn).
    With ``signals``, a SIGTERM/SIGINT ends the evaluation after the current batch (the caller then
    checkpoints and stops).
    """
    world.broadcast_buffers_(model)
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    try:
        for x, y in batches:
            if signals is not None and signals.received:
                break
            for key, value in score(x, y).items():
                totals[key] = totals.get(key, 0.0) + value
            count += len(y)
    finally:
        model.train()
    keys = list(totals)
    summed = world.sum_([totals[k] for k in keys] + [count])
    return {k: v / max(summed[-1], 1) for k, v in zip(keys, summed)}


def optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> Iterator[tuple[str, torch.Tensor]]:
    """The state tensors of an optimizer (momentum buffers, Adam moments), named for the NaN guard."""
    for i, per_param in enumerate(optimizer.state.values()):
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                yield f"{name} {key} of parameter {i}", value
