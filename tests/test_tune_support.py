"""Helpers of the tuner's tests (no tests here). A synthetic command whose per-epoch metric is a known
function of the parameters, so a test can say in advance which trials a pruner stops, and when.

``score`` after epoch e is ``x · e`` (plus ``y``): a trial's rank never changes over its epochs,
and the final score is ``x · epochs + y``. ``size`` (recorded once, in the summary) is ``y``: with
two objectives (score up, size down) the Pareto front is known too. ``sleep`` slows each epoch
(a study that can be killed midway), ``nan_at`` makes an epoch diverge. It is plugged in as
``command=test_tune_support:Curve`` (the tests directory is on ``sys.path`` under pytest; a
subprocess gets it through ``PYTHONPATH``). ``invoke`` runs ``nas-tune`` in this process as a user would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from conftest import invoke_cli
from nas.engine import NonFiniteLoss
from nas.errors import ConfigError

DEFAULTS: dict[str, Any] = {"x": 0.5, "y": 0.0, "epochs": 4, "sleep": 0.0, "nan_at": None, "threads": None,
                            "log.progress": True, "mode": "plain"}


@dataclass
class _Counters:
    epochs: int
    epoch: int = 0


class _Engine:
    def __init__(self, epochs: int):
        self.counters = _Counters(epochs)


class Curve:
    name = "curve"
    cli = "curve-cli"
    epoch_metrics = frozenset({"score", "loss"})
    summary_metrics = frozenset({"size", "epochs"})
    open_prefixes = ("extra/",)

    def config(self, overrides: Sequence[str]) -> dict[str, Any]:
        cfg = dict(DEFAULTS)
        for item in overrides:
            key, _, value = item.lstrip("+").partition("=")
            if key not in DEFAULTS:
                raise ConfigError(f"could not override '{key}': not a key of the curve config")
            cfg[key] = yaml.safe_load(value)
        if not 0.0 <= float(cfg["x"]) <= 10.0:
            raise ConfigError(f"x must be in [0, 10], got {cfg['x']}")
        if cfg["mode"] not in ("plain", "extra"):
            raise ConfigError(f"mode must be one of plain, extra, got {cfg['mode']}")
        return cfg

    def keys(self, overrides: Sequence[str]) -> Callable[[str], bool]:
        return lambda key: key in DEFAULTS

    def epochs(self, cfg: dict[str, Any]) -> int:
        return int(cfg["epochs"])

    def trial_overrides(self, threads: int | None) -> list[str]:
        return ["log.progress=false", *([f"threads={threads}"] if threads else [])]

    def run(self, cfg: dict[str, Any], run_dir: Path, hooks: Sequence[Any],
            on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True)
        if on_start is not None:
            on_start(run_dir)
        engine, history, reason = _Engine(int(cfg["epochs"])), [], None
        x, y = float(cfg["x"]), float(cfg["y"])
        for epoch in range(1, engine.counters.epochs + 1):
            time.sleep(float(cfg["sleep"]))
            if cfg["nan_at"] == epoch:
                raise NonFiniteLoss(f"loss/train became nan at epoch {epoch}; stopping")
            engine.counters.epoch = epoch
            metrics = {"score": x * epoch + y, "loss": 1.0 / (1.0 + x * epoch)}
            if cfg["mode"] == "extra":
                metrics["extra/thing"] = x
            for hook in hooks:
                hook.after_epoch(engine, metrics)
            history.append({"epoch": epoch, **metrics})
            reason = next((r for r in (h.stop_reason(engine) for h in hooks) if r), None)
            if reason:
                break
        summary = {"epochs": engine.counters.epoch, "stop_reason": reason or "epoch limit", "history": history,
                   "size": y, "run_dir": str(run_dir)}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary


invoke = partial(invoke_cli, "tune")
