"""What a study optimises: one or two metrics of a run, each with its direction.

A metric is read where the run records it: a number at the top of ``summary.json`` (``params``,
``macs``, ``best_top1``, ...) or, failing that, the last epoch of its history (``acc/val``,
``acc/top1``: the final accuracy). Only a per-epoch metric can be reported while a trial trains,
so pruning needs the first objective to be one. A name the command never records is refused up
front; a name in a family that depends on the config (an algorithm's own scalars) is checked at
the end of the first epoch of the first trial — either way the study stops with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from nas.tune.commands import Command


class MissingMetric(ConfigError):
    """An objective names a metric the tuned command does not record: the study cannot go on."""


@dataclass(frozen=True)
class Objective:
    metrics: tuple[str, ...]
    directions: tuple[str, ...]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def first(self) -> str:
        return self.metrics[0]

    def check_known(self, command: Command, pruning: bool) -> None:
        """Up front: every metric is one the command records (or may record), and a pruned study
        reports its first objective every epoch."""
        known = command.epoch_metrics | command.summary_metrics
        for metric in self.metrics:
            if metric not in known and not metric.startswith(tuple(command.open_prefixes)):
                raise MissingMetric(f"objective metric '{metric}' is not recorded by {command.cli}; "
                                    f"{describe_metrics(command)}")
        if pruning and self.first not in command.epoch_metrics and not self.first.startswith(
                tuple(command.open_prefixes)):
            raise ConfigError(f"pruning needs an objective reported every epoch, and '{self.first}' is recorded "
                              f"only at the end of the run; put an epoch metric first ({', '.join(sorted(command.epoch_metrics))}) "
                              "or pass tune.pruner=none")

    def check_epoch(self, command: Command, metrics: dict[str, Any]) -> None:
        """After the first epoch: the metrics that can only be epoch metrics are there."""
        for metric in self.metrics:
            if metric not in metrics and metric not in command.summary_metrics:
                raise MissingMetric(f"objective metric '{metric}' is not recorded by {command.cli} with this "
                                    f"config; its epochs record {', '.join(sorted(metrics))}")

    def values(self, command: Command, summary: dict[str, Any]) -> list[float]:
        """The objective values of a finished run."""
        last = summary.get("history", [{}])[-1] if summary.get("history") else {}
        out = []
        for metric in self.metrics:
            value = summary.get(metric) if _number(summary.get(metric)) else last.get(metric)
            if not _number(value):
                raise MissingMetric(f"objective metric '{metric}' is not in the run's summary.json or its last "
                                    f"epoch ({summary.get('run_dir')}); {describe_metrics(command)}")
            out.append(float(value))
        return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def describe_metrics(command: Command) -> str:
    text = (f"its epochs record {', '.join(sorted(command.epoch_metrics))}; its summary records "
            f"{', '.join(sorted(command.summary_metrics))}")
    if command.open_prefixes:
        text += f"; and, depending on the config, {', '.join(p + '*' for p in command.open_prefixes)}"
    return text
