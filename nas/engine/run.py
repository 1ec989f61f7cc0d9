"""One run of a task from start to end, the same for every command: the process joins its
data-parallel group, finds the checkpoint to resume, takes its run directory, builds the task and
lets the engine drive it. ``run_search`` and ``run_train`` are this function with their task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.config import summary_of
from nas.distributed import World, check_batch_divides, init_world, sync_batchnorm
from nas.engine.loop import Counters, Engine, Hook, Task
from nas.engine.metrics_lines import KatibMetricsLines
from nas.engine.rundir import RunDirectory, finished_wall_time, resumed_config
from nas.engine.state import seed_everything, select_device

# build(cfg, world, device, counters, tb, run_dir, resume_state) -> the task
Build = Callable[[Any, World, str, Counters, Any, Path, "dict[str, Any] | None"], Task]


def prepare_process(cfg: Any, world: World, device: str) -> torch.device:
    """Before a task builds anything: the global batch must split over the ranks, every RNG is
    seeded (so all ranks build the same initial weights), the CPU threads and the device are set."""
    check_batch_divides(cfg.batch_size, world)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return select_device(device)


def place_model(model: nn.Module, cfg: Any, world: World, device: torch.device) -> nn.Module:
    """The network on its device, in channels-last layout if asked, with synced BatchNorm under DDP."""
    if cfg.sync_bn and world.active:
        sync_batchnorm(model)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def run_task(cfg: Any, run_dir: str | Path, *, kind: str, checkpoint_format: str, from_dict: Callable[[dict], Any],
             build: Build, nan_hint: str, hooks: Sequence[Hook] = (), changed: dict[str, Any] | None = None,
             on_start: Callable[[Path], None] | None = None,
             without_engine: Callable[[Any, Path, World], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """Run ``build``'s task into ``run_dir``; returns what ``summary.json`` holds.

    With ``cfg.resume`` the saved run continues in its own directory with its saved config
    (``changed``: the values the command line set, which must agree with it). ``hooks`` join the
    engine's (a tuner's reporter). ``on_start(run_dir)`` runs once the directory is this run's.
    ``without_engine(cfg, run_dir, world)`` may finish the run without training (a profile)
    by returning its summary. Launched by ``torchrun``, every process runs this;
    they share rank 0's run directory.
    """
    world, device = init_world(cfg.device)
    run_dir = Path(world.broadcast_object(str(run_dir)))
    state = None
    if cfg.resume:
        cfg, state, run_dir = resumed_config(cfg, checkpoint_format, kind, from_dict, changed)
    with RunDirectory(run_dir, enabled=world.is_main).acquire(cfg.overwrite, resuming=state is not None):
        if on_start is not None and world.is_main:
            on_start(run_dir)
        if without_engine is not None:
            summary = without_engine(cfg, run_dir, world)
            if summary is not None:
                return summary
        from nas.logging import TBLogger  # matplotlib: imported once a run is sure to start

        tb = TBLogger(run_dir / "tb", enabled=world.is_main)
        try:
            counters = Counters(epochs=cfg.epochs)
            task = build(cfg, world, device, counters, tb, run_dir, state)
            if cfg.log.metrics_format == "katib":
                hooks = [*hooks, KatibMetricsLines()]
            every = getattr(task, "checkpoint_every", cfg.checkpoint.every_steps)  # a cadence the task needs wins
            engine = Engine(task, run_dir, world, counters, checkpoint_every=every,
                            show_progress=cfg.log.progress, config=summary_of(cfg), hooks=hooks, nan_hint=nan_hint)
            if state is not None:
                engine.load_state_dict(state, cfg.resume)
                # a finished run extended: its wall time also counts what ran after its last checkpoint
                engine.previous_wall_time = max(engine.previous_wall_time, finished_wall_time(run_dir))
            return engine.fit()
        finally:
            tb.close()
