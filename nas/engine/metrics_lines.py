"""Per-epoch ``name=value`` lines on stdout, the form Kubeflow Katib's metrics collector reads.

Katib runs a trial's command in a container and collects its metrics from stdout with the filter
``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)`` on the lines that contain a metric's
name. Our metric names hold slashes (``acc/val``), which that filter cannot match, so each name is
spelled with dashes (``acc/val`` → ``acc-val``, ``time/epoch_s`` → ``time-epoch_s``; any other
character outside ``[\\w-]`` becomes ``_``). ``log.metrics_format=katib`` turns the lines on;
every epoch prints one line such as ``epoch=3 acc-val=0.712 loss-val=0.843``. Non-finite values
are left out (the filter takes no ``nan``), and only the main process of a data-parallel run prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from nas.engine.loop import Hook

METRICS_FORMATS = ("plain", "katib")


def katib_name(metric: str) -> str:
    """A metric's name as Katib's default filter can match it: ``acc/val`` → ``acc-val``."""
    return re.sub(r"[^\w-]", "_", metric.replace("/", "-"))


def katib_line(metrics: Mapping[str, float], epoch: int) -> str:
    """One epoch's metrics as ``epoch=<n> name=value ...`` (finite numbers only)."""
    pairs = [f"epoch={epoch}"]
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            pairs.append(f"{katib_name(name)}={float(value):.6g}")
    return " ".join(pairs)


class KatibMetricsLines(Hook):
    """Print each epoch's metrics as one Katib line, after every other hook has added its own."""

    def after_epoch(self, engine: Any, metrics: dict[str, float]) -> None:
        if engine.world.is_main:
            print(katib_line(metrics, engine.counters.epoch), flush=True)
