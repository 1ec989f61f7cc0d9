"""A study definition resolved against the command it tunes: what every process of a study shares.

``StudyPlan.of(cfg)`` turns the validated ``TuneConfig`` into the command object, the flat space
(``{"optim.lr": ParamSpec}``), the objective and the base command line; ``preflight()`` then
checks up front, before any directory or storage is touched, everything a trial would otherwise
discover late: the base command line composes, each tuned key exists in the command's config, both
ends of each range and every choice make a valid config (``optim.lr`` above the schema's limit,
a genotype that does not exist), and the objective is a metric the command records.

``identity()`` is what makes two commands "the same study": the name, the tuned command, its base
configuration, the space, the objectives and the storage. The budget, the sampler, the pruner and
the number of workers may change between sessions of one study.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from nas.tune.commands import Command, resolve_command
from nas.tune.config import ParamSpec, TuneConfig, flat_space, flatten, spec_dict
from nas.tune.objective import Objective
from nas.tune.storage import masked

_BARE = re.compile(r"[A-Za-z_/.][\w./:-]*")
_WORDS = ("true", "false", "null", "none", "nan", "inf")


def hydra_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (strings quoted only if needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.fullmatch(text) and text.lower() not in _WORDS:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def assignments(values: dict[str, Any]) -> list[str]:
    """``{"optim.lr": 0.1}`` → ``["optim.lr=0.1"]``."""
    return [f"{key}={hydra_value(value)}" for key, value in values.items()]


@dataclass
class StudyPlan:
    cfg: TuneConfig
    command: Command
    space: dict[str, ParamSpec]
    objective: Objective
    base: list[str]  # the tuned command's command line before the trial's parameters

    @classmethod
    def of(cls, cfg: TuneConfig) -> StudyPlan:
        space = flat_space(cfg.space)
        base = [*cfg.overrides, *assignments(flatten(cfg.base))]
        return cls(cfg, resolve_command(cfg.command), space, Objective(tuple(cfg.objectives), tuple(cfg.directions)),
                   base)

    @property
    def pruning(self) -> bool:
        return self.cfg.tune.pruner != "none"

    def overrides(self, params: dict[str, Any], threads: int | None = None) -> list[str]:
        """The command line of a trial: the base, then its parameters, then the tuner's additions."""
        return [*self.base, *assignments(params), *self.command.trial_overrides(threads)]

    def reproduce(self, params: dict[str, Any]) -> str:
        """The shell command that reruns a trial on its own, at full fidelity."""
        import shlex

        return " ".join([self.command.cli, *(shlex.quote(a) for a in [*self.base, *assignments(params)])])

    def preflight(self) -> Any:
        """Check the study against the tuned command; returns the base config (its full epochs)."""
        cli = self.command.cli
        try:
            base_cfg = self.command.config(self.base)
        except ConfigError as exc:
            raise ConfigError(f"the base config of {cli} ({' '.join(self.base) or 'no overrides'}) is invalid: "
                              f"{exc}") from None
        exists = self.command.keys(self.base)
        for key in self.space:
            if not exists(key):
                raise ConfigError(f"space.{key}: {key} is not a key of {cli}'s config (with "
                                  f"{' '.join(self.base) or 'no overrides'})")
        self._check_probes()
        self.objective.check_known(self.command, self.pruning)
        return base_cfg

    def _check_probes(self) -> None:
        """Both ends of every range and every choice make a valid config. Composing a config is the
        slow part, so round j sets every key to its j-th probe at once (two compositions for a space
        of ranges); only a round that fails is taken apart, key by key, to name the value at fault. A
        value refused only together with another key's passes here: a trial that draws that pair
        fails on its own, as a failed trial."""
        probes = {key: spec.probes() for key, spec in self.space.items()}
        for j in range(max(len(values) for values in probes.values())):
            values = {key: p[j] for key, p in probes.items() if j < len(p)}
            try:
                self.command.config([*self.base, *assignments(values)])
                continue
            except ConfigError:
                pass
            for key, value in values.items():
                try:
                    self.command.config([*self.base, *assignments({key: value})])
                except ConfigError as exc:
                    raise ConfigError(f"space.{key}: {key}={hydra_value(value)} is not valid for "
                                      f"{self.command.cli}: {exc}") from None

    def identity(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "name": c.name,
            "command": c.command,
            "base": list(self.base),
            "space": {k: spec_dict(v) for k, v in self.space.items()},
            "objectives": list(c.objectives),
            "directions": list(c.directions),
            "storage": masked(c.tune.storage),
        }

    def threads(self) -> int | None:
        """Torch threads of each trial: ``tune.threads``, else the cores split over the workers."""
        t = self.cfg.tune
        if t.threads:
            return t.threads
        if t.workers == 1:
            return None
        return max(1, (os.cpu_count() or 1) // t.workers)
