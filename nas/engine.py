"""What the search and the train loop have in common: run directory, seeding, devices, RNG state,
a progress bar, epoch timing and result files. One copy of it, so both loops behave alike.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nas import checkpoint
from nas.checkpoint import atomic_write_text
from nas.errors import CheckpointError, ConfigError, UserError

log = logging.getLogger("nas")

# Files whose presence means a run directory holds results that must not be overwritten silently.
RESULT_FILES = ("summary.json", "genotype.json", "checkpoints")


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: str | None) -> None:
    """Refuse to write a new run over an old one unless asked to (``overwrite=true``) or resuming."""
    if resume or overwrite:
        return
    existing = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if existing:
        raise ConfigError(f"run directory {run_dir} already holds results ({', '.join(existing)}); "
                          "pass resume=<run dir> to continue it or overwrite=true to replace it")


def resume_point(resume: str, fmt: str, kind: str) -> tuple[Path, dict[str, Any], Path]:
    """(checkpoint file, its state, its run directory) for ``resume=`` (a file or a run directory).

    The state must be a ``kind`` checkpoint of format ``fmt``. The run directory is returned because
    a resumed run continues in its own directory: one run, one directory, however often resumed.
    """
    path = checkpoint.resolve(resume)
    state = checkpoint.load(path)
    if state.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {kind} checkpoint (format {state.get('format')!r})")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, state, run_dir


def resumed_config(cfg: Any, fmt: str, kind: str, from_dict: Any) -> tuple[Any, dict[str, Any], Path]:
    """(saved config, checkpoint state, run directory) for ``cfg.resume``.

    A resumed run continues with its saved config; only where it runs (``device``, ``threads``)
    and the progress bar come from ``cfg``.
    """
    path, state, run_dir = resume_point(cfg.resume, fmt, kind)
    saved = from_dict(state["config"])
    saved.resume, saved.device, saved.threads = str(path), cfg.device, cfg.threads
    saved.log.progress = cfg.log.progress
    return saved, state, run_dir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} was asked for but CUDA is not available here; use device=cpu")
    return device


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain lists/tensors (readable with weights_only=True)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")


class RunningMean:
    """Sample-weighted mean of a loss or accuracy over an epoch, kept on the device until read."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def update(self, value: torch.Tensor, n: int) -> None:
        self.total = self.total + value.detach() * n
        self.count += n

    @property
    def mean(self) -> float:
        return float(self.total) / max(self.count, 1)

    def state(self) -> list[float]:
        return [float(self.total), self.count]

    def load_state(self, state: list[float]) -> None:
        self.total, self.count = float(state[0]), int(state[1])


class Interrupted(UserError):
    """SIGTERM/SIGINT arrived: a checkpoint was written and the run stops cleanly."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} after step {step}; checkpoint written, continue with resume={run_dir}")
        self.exit_code = 128 + signum


class StopSignals:
    """While active, SIGTERM and SIGINT only set ``received``; the loop checkpoints and stops after
    the step in progress, instead of dying halfway through a checkpoint write."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class NonFiniteLoss(UserError):
    pass


def check_finite(metrics: dict[str, Any], step: int, run_dir: Path,
                 hint: str = "try a lower learning rate") -> None:
    """Stop at the first NaN/inf loss, before a checkpoint could save the damaged weights."""
    for name, value in metrics.items():
        if name.startswith("loss") and not math.isfinite(float(value)):
            raise NonFiniteLoss(f"{name} became {float(value)} at step {step}; stopping. The last good checkpoint "
                                f"in {run_dir / 'checkpoints'} is intact ({hint})")


def progress(iterable: Iterable[int], total: int, desc: str, enabled: bool) -> Iterator[int]:
    """A tqdm bar on stderr when enabled, the bare iterable otherwise."""
    if not enabled:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0))


class EpochTimer:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.epoch_times: list[float] = []
        self._epoch_start = self.started

    def start_epoch(self) -> None:
        self._epoch_start = time.perf_counter()

    def end_epoch(self) -> float:
        elapsed = time.perf_counter() - self._epoch_start
        self.epoch_times.append(elapsed)
        return elapsed

    @property
    def wall_time(self) -> float:
        return time.perf_counter() - self.started
