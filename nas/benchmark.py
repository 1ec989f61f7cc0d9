"""What the benchmark scripts share: one measuring protocol, so their JSON figures compare.

``scripts/bench_search.py`` and ``scripts/bench_train.py`` time a step on random batches made
before timing, synchronise the device around each step, and report the median and interquartile
range of the timed steps and the process's peak memory (max RSS on CPU, max allocated on CUDA).
Each configuration runs in a fresh process, started with the parent's flags but one value each.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def time_steps(step: Callable[[int], Any], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall times of ``step(i)`` for i in range(warmup + steps), the warm-up ones left out."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        step(i)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def step_figures(times: Sequence[float], batch_size: int, device: torch.device) -> dict[str, float]:
    """``step_s`` (median), ``step_s_iqr``, ``images_per_s`` and ``peak_mem_mib`` of a timed run."""
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    step = statistics.median(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"step_s": round(step, 4), "step_s_iqr": round(q[2] - q[0], 4),
            "images_per_s": round(batch_size / step, 2), "peak_mem_mib": round(peak, 1)}


def with_flag(argv: Sequence[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (whether it was given as ``--flag v`` or ``--flag=v``)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = i + 1 < len(argv)
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return [*out, flag, value]
