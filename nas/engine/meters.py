"""Small measuring helpers of the engine: running means of step metrics, epoch timing, a progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import torch
from tqdm import tqdm


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


def progress(iterable: Iterable[int], total: int, desc: str, enabled: bool) -> Iterator[int]:
    """A tqdm bar on stderr when enabled, the bare iterable otherwise."""
    if not enabled:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0))
