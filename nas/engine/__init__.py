"""The engine shared by every task (search, retraining, tuning trials): the loop, the run directory
that one run owns, signals, the NaN guard, checkpoints and reproducible state."""

from nas.engine.loop import Counters, Engine, Hook, NonFiniteLoss, Task, evaluate, optimizer_tensors
from nas.engine.meters import EpochTimer, RunningMean, progress
from nas.engine.run import place_model, prepare_process, run_task
from nas.engine.rundir import RunDirectory, resume_point, resumed_config
from nas.engine.signals import Interrupted, StopSignals
from nas.engine.state import rng_state, seed_everything, select_device, set_rng_state

__all__ = [
    "Counters", "Engine", "EpochTimer", "Hook", "Interrupted", "NonFiniteLoss", "RunDirectory", "RunningMean",
    "StopSignals", "Task", "evaluate", "optimizer_tensors", "place_model", "prepare_process",
    "progress", "resume_point", "resumed_config", "rng_state", "run_task", "seed_everything", "select_device",
    "set_rng_state",
]
