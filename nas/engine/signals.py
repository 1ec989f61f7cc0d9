"""SIGTERM and SIGINT as schedulers send them: finish the step in progress, checkpoint, stop.

A cluster scheduler (SLURM, docker, systemd) ends a job with SIGTERM, often to the whole process
group, and a user with Ctrl-C. Dying at once could leave a checkpoint half written and loses the
work since the last one; while ``StopSignals`` is active both signals only set ``received`` and
the engine stops cleanly after the current step, with a checkpoint and a one-line resume hint.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from nas.errors import UserError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(UserError):
    """SIGTERM/SIGINT arrived: a checkpoint was written and the run stops cleanly."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} after step {step}; checkpoint written, continue with resume={run_dir}")
        self.exit_code = 128 + signum


class StopSignals:
    """While active, SIGTERM and SIGINT only set ``received``; the loop checkpoints and stops after
    the step in progress, instead of dying halfway through a checkpoint write."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

