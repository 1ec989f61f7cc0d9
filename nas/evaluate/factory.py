"""Evaluators by name, built from the settings a command holds (``algorithm.*`` of a discrete search,
the top level of ``nas-rank``): ``train``, ``supernet``, ``zero_cost`` (the proxy its settings name),
or a proxy's own name (``synflow``, ``naswot``, ...), which is ``zero_cost`` with that proxy.

The modules behind them are imported here, when one is built, not when a config is read: a command
line that only composes a config does not pay for them.
"""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError
from nas.evaluate.base import Evaluator, Workbench
from nas.evaluate.config import EVALUATORS, PROXY_NAMES

EVALUATOR_NAMES = EVALUATORS + PROXY_NAMES


def make_evaluator(name: str, settings: Any, bench: Workbench, k: int, max_skip: int | None) -> Evaluator:
    """The evaluator ``name`` with ``settings.train`` / ``settings.supernet`` / ``settings.zero_cost``;
    ``k`` and ``max_skip`` are the genotype rules the supernet samples its training paths under.
    ``table`` scores with the space's table of known answers (its validation accuracy)."""
    if name == "table":
        from nas.evaluate.table import TableEvaluator

        return TableEvaluator(bench)
    if name == "train":
        from nas.evaluate.train import TrainEvaluator

        return TrainEvaluator(bench, settings.train)
    if name == "supernet":
        from nas.evaluate.supernet import SupernetEvaluator
        from nas.spaces import Rules, Sampler

        return SupernetEvaluator(bench, settings.supernet, Sampler(bench.space, bench.model, Rules(k, max_skip)))
    if name == "zero_cost" or name in PROXY_NAMES:
        from nas.evaluate.zero_cost_evaluator import ZeroCostEvaluator

        return ZeroCostEvaluator(bench, settings.zero_cost, None if name == "zero_cost" else name)
    raise ConfigError(f"unknown evaluator '{name}'; choose from {', '.join(EVALUATOR_NAMES)}")
