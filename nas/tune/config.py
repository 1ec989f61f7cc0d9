"""The structured config of ``nas-tune``: what a study is, and its start-up validation.

A study names the command it tunes (``train``, ``search``, or a plug-in ``module:attr``), that
command's base configuration (``overrides``: a command line such as ``[+experiment=retrain_quick]``;
``base``: more values as a mapping, settable key by key from the command line, e.g.
``base.data.root=./data``), the space, the objective(s) and the budget. The space is a mapping
that mirrors the tuned command's config, with one spec per tuned key::

    space:
      optim:
        lr: {type: float, low: 0.005, high: 0.2, log: true}
      genotype: {type: categorical, choices: [DARTS_V1, DARTS_V2]}

so that ``space.optim.lr.high=0.1`` narrows a range and ``+space.optim.momentum={type: float, low:
0.8, high: 0.99}`` adds a dimension from the command line. What one field cannot check alone (a
range, a log range above 0, one direction per objective, a pruner a multi-objective study can use)
is ``TuneConfig.validate()``; whether a key exists in the tuned command's config, and whether its
values are valid there, is checked by composing that config (``nas.tune.plan``). Everything fails
as one ``ConfigError`` line (exit code 2) before any study directory or storage is touched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from nas.config import MAX_SEED, check, check_limits, option, to_validated
from nas.errors import ConfigError

SAMPLERS = ("random", "tpe", "cmaes", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")
EMBEDDED_STORAGES = ("journal", "sqlite")
PARAM_TYPES = ("float", "int", "categorical")


@dataclass
class ParamSpec:
    """One dimension of the space: a float or int range (linear or log), or a list of choices."""

    type: str = option("float", choices=PARAM_TYPES)
    low: float | None = option(None, free="any number below high; checked by validate()")
    high: float | None = option(None, free="any number above low; checked by validate()")
    log: bool = option(False, free="a switch")
    step: float | None = option(None, gt=0.0)  # a grid: low, low + step, ... (not with log)
    choices: list[Any] | None = option(None, free="values the key accepts; checked by composing each")

    def check(self, key: str) -> None:
        """Raise a one-line ``ConfigError`` naming ``space.<key>`` unless the spec is usable."""
        where = f"space.{key}"
        try:
            check_limits(self)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        if self.type == "categorical":
            check(bool(self.choices), f"{where} is categorical and needs choices: [a, b, ...]")
            check(self.low is None and self.high is None and not self.log and self.step is None,
                  f"{where} is categorical: low, high, log and step do not apply")
            check(len({repr(c) for c in self.choices or []}) == len(self.choices or []),
                  f"{where}: choices must differ, got {self.choices}")
            for choice in self.choices or []:
                check(choice is None or isinstance(choice, (str, int, float, bool)),
                      f"{where}: each choice must be a number, a string, a bool or null, got {choice!r}")
            return
        check(self.choices is None, f"{where} is a {self.type} range: choices apply only to type: categorical")
        check(self.low is not None and self.high is not None, f"{where} needs low and high")
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        check(math.isfinite(low) and math.isfinite(high), f"{where}: low and high must be finite numbers")
        check(low < high, f"{where}: low must be below high, got low={self.low} high={self.high}")
        if self.log:
            check(low > 0, f"{where}: a log range must lie above 0, got low={self.low}")
            check(self.step is None, f"{where}: step does not apply to a log range")
        if self.type == "int":
            check(low == int(low) and high == int(high), f"{where}: an int range needs whole low and high, "
                                                        f"got low={self.low} high={self.high}")
            check(self.step is None or self.step == int(self.step), f"{where}: an int step must be whole")

    def probes(self) -> list[Any]:
        """The values that must be valid for the key: both ends of a range, or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [float(self.low), float(self.high)]  # type: ignore[arg-type]


@dataclass
class TuneOptions:
    """How the study searches: sampler, pruner, budget, parallelism and storage."""

    sampler: str = option("tpe", choices=SAMPLERS)  # tpe: multivariate TPE; nsga2: for two objectives
    pruner: str = option("hyperband", choices=PRUNERS)  # asha: asynchronous successive halving
    trials: int = option(20, ge=1, le=1_000_000)  # finished trials (complete or pruned) the study runs to
    time_s: float | None = option(None, gt=0.0)  # no new trial starts after this many seconds of this command
    workers: int = option(1, ge=1, le=256)  # trials at once on this machine, one process each
    threads: int | None = option(None, ge=1, le=1024)  # torch threads per trial; None: cores / workers (1 worker: the command's)
    storage: str = option("journal", free="journal, sqlite or a database URL; checked when it is opened")
    seed: int = option(0, ge=0, le=MAX_SEED)  # of the sampler (each worker and each resume draws its own stream)
    min_epochs: int = option(1, ge=1, le=100_000)  # the first rung (asha, hyperband) / the warm-up (median)
    reduction_factor: int = option(3, ge=2, le=100)  # eta: 1 in eta trials is promoted at each rung
    startup_trials: int = option(5, ge=0, le=100_000)  # random trials before the sampler models; median waits as long
    heartbeat_s: int = option(20, ge=1, le=3600)  # database storages: a trial silent for 3 beats is retried
    # Trials run first, once, when the study is created (e.g. the untuned defaults, as a baseline).
    enqueue: list[Any] = option(factory=list, free="parameter mappings; their keys are checked against the space")


@dataclass
class TuneConfig:
    name: str = option("study", pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # the study; its directory is runs/tune/<name>
    command: str = option("train", pattern=r"train|search|[A-Za-z_][\w.]*:[A-Za-z_]\w*")
    overrides: list[str] = option(factory=list, free="the tuned command's overrides; checked by composing them")
    base: dict[str, Any] = option(factory=dict, free="values of the tuned command's config; checked by composing")
    space: dict[str, Any] = option(factory=dict, free="a spec per tuned key; checked by validate() and composing")
    objectives: list[str] = option(factory=lambda: ["acc/top1"], free="metric names; checked against the command's")
    directions: list[str] = option(choices=("maximize", "minimize"), each=True, factory=lambda: ["maximize"])
    tune: TuneOptions = field(default_factory=TuneOptions)

    def validate(self) -> None:
        params = flat_space(self.space)
        check(1 <= len(self.objectives) <= 2, f"objectives must name one or two metrics, got {list(self.objectives)}")
        check(len(set(self.objectives)) == len(self.objectives), f"objectives must differ, got {list(self.objectives)}")
        check(len(self.directions) == len(self.objectives),
              f"directions must give one direction per objective: {len(self.objectives)} objective(s) "
              f"{list(self.objectives)}, {len(self.directions)} direction(s) {list(self.directions)}")
        t = self.tune
        if len(self.objectives) == 2:
            check(t.pruner == "none", f"tune.pruner={t.pruner}: Optuna prunes only single-objective studies; "
                                      "pass tune.pruner=none with two objectives")
            check(t.sampler != "cmaes", "tune.sampler=cmaes optimises one objective; use nsga2, tpe or random")
        storage = t.storage
        check(storage in EMBEDDED_STORAGES or "://" in storage,
              f"tune.storage must be journal, sqlite or a database URL (postgresql://..., sqlite:///...), got {storage}")
        for i, entry in enumerate(t.enqueue):
            check(isinstance(entry, dict), f"tune.enqueue[{i}] must be a mapping of space keys to values")
            unknown = sorted(set(flatten(entry)) - set(params))
            check(not unknown, f"tune.enqueue[{i}]: {', '.join(unknown)} not in the space ({', '.join(params)})")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` and ``{"optim.lr": 1}`` → ``{"optim.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


_SPEC_FIELDS = {f.name for f in fields(ParamSpec)}


def flat_space(space: dict[str, Any], prefix: str = "") -> dict[str, ParamSpec]:
    """The space as ``{dotted key: ParamSpec}``: a mapping with a ``type`` entry is one dimension,
    any other mapping is a branch of the tuned config (an emptied branch is no dimension)."""
    out: dict[str, ParamSpec] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        check(isinstance(value, dict), f"space.{name} must be a spec such as {{type: float, low: 0.001, high: 0.1}}, "
                                       f"got {value!r}")
        if "type" not in value:
            out.update(flat_space(value, name + "."))
            continue
        unknown = sorted(set(value) - _SPEC_FIELDS)
        check(not unknown, f"space.{name}: unknown field(s) {', '.join(unknown)} (a spec has "
                           f"{', '.join(sorted(_SPEC_FIELDS))})")
        spec = ParamSpec(**value)
        spec.check(name)
        out[name] = spec
    if not prefix:
        check(bool(out), "space is empty: tune at least one key, e.g. +space.optim.lr={type: float, low: 0.01, "
                         "high: 0.1, log: true} (or choose a study with +experiment=...)")
    return out


def spec_dict(spec: ParamSpec) -> dict[str, Any]:
    """A spec as plain data (``study.json``, comparisons)."""
    return {k: v for k, v in asdict(spec).items() if v is not None and not (k == "log" and v is False)}


def register_tune_configs() -> None:
    """Make the schema known to Hydra (``tune.yaml`` lists it first in its defaults)."""
    ConfigStore.instance().store(name="tune_schema", node=TuneConfig)


def missing_keys(cfg: DictConfig) -> list[str]:
    """Keys still ``???`` (required values an experiment leaves to the user, e.g. ``base.data.root``)."""
    found: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for key in keys:
            name = f"{prefix}{key}"
            if OmegaConf.is_missing(node, key):
                found.append(name)
                continue
            child = node[key]
            if OmegaConf.is_config(child):
                walk(child, name + ".")

    walk(cfg, "")
    return found


def validate_tune(cfg: TuneConfig) -> None:
    check_limits(cfg)


def to_tune_config(cfg: DictConfig | TuneConfig) -> TuneConfig:
    """The validated study definition behind a composed config (or the dataclass itself)."""
    if isinstance(cfg, DictConfig):
        missing = [k for k in missing_keys(cfg) if not k.startswith("hydra.")]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be given on the command line (e.g. {missing[0]}=...)")
    return to_validated(cfg, validate_tune)
