"""The commands a study can tune, behind one small interface.

A trial is one run of a command, in this process, through the engine: ``nas-train``'s retrain
(``run_train``) or ``nas-search``'s search (``run_search``). The tuner needs only five things from
a command, so anything that provides them can be tuned — the tests plug in a synthetic command
whose per-epoch metric is a known function of the parameters (``command=module:attr``):

* ``config(overrides)``: the command's config composed from a command line and validated;
* ``epochs(cfg)``: the full fidelity of a trial;
* ``run(cfg, run_dir, hooks, on_start)``: the run, returning its ``summary.json`` content; the
  tuner's hook reports each epoch and stops a pruned run (``nas.engine.Hook``);
* the metrics it records (``epoch_metrics`` each epoch, ``summary_metrics`` once), and
  ``open_prefixes``, metric families whose members depend on the config (checked at the first
  epoch instead of up front);
* ``cli`` and ``trial_overrides``: the console script that reproduces a trial, and what every
  trial adds to the command line (no progress bar, its share of the CPU threads).

The built-in commands compose with Hydra from their own config directories. ``nas-tune`` itself
runs inside Hydra, whose global state allows one initialised config directory at a time:
``hydra_aside`` sets the tuner's aside while another command's config is composed, then puts it
back, so the tuner's own run (its output directory, logging) is untouched.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nas.cli import config_dir, one_line, shared_configs_override
from nas.errors import ConfigError


class Command(Protocol):
    name: str
    cli: str
    epoch_metrics: frozenset[str]
    summary_metrics: frozenset[str]
    open_prefixes: tuple[str, ...]

    def config(self, overrides: Sequence[str]) -> Any: ...
    def keys(self, overrides: Sequence[str]) -> Callable[[str], bool]: ...
    def epochs(self, cfg: Any) -> int: ...
    def trial_overrides(self, threads: int | None) -> list[str]: ...
    def run(self, cfg: Any, run_dir: Path, hooks: Sequence[Any],
            on_start: Callable[[Path], None] | None = None) -> dict[str, Any]: ...


@contextmanager
def hydra_aside() -> Iterator[None]:
    """Compose another config while a Hydra app runs: the running app's GlobalHydra is set aside
    (Hydra's own ``initialize`` keeps its backup the same way) and restored afterwards."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    saved = Singleton._instances.pop(GlobalHydra, None)
    try:
        yield
    finally:
        Singleton._instances.pop(GlobalHydra, None)
        if saved is not None:
            Singleton._instances[GlobalHydra] = saved


def compose_command(config_name: str, overrides: Sequence[str]) -> Any:
    """The DictConfig ``nas-<config_name>`` would compose from these overrides (one-line errors).
    The last few are kept: a study's checks compose its base command line more than once, and
    composing is slow (callers read the result; none changes it)."""
    return _compose(config_name, tuple(overrides))


@functools.lru_cache(maxsize=4)
def _compose(config_name: str, overrides: tuple[str, ...]) -> Any:
    from hydra import compose, initialize_config_dir

    try:
        with hydra_aside(), initialize_config_dir(config_dir=config_dir(config_name), version_base="1.3"):
            return compose(config_name=config_name, overrides=[*overrides, shared_configs_override()])
    except ConfigError:
        raise
    except Exception as exc:  # Hydra raises several types for a bad override
        raise ConfigError(one_line(str(exc)) or type(exc).__name__) from None


@dataclass(frozen=True)
class BuiltinCommand:
    """``nas-train`` or ``nas-search`` as a tunable command."""

    name: str
    cli: str
    epoch_metrics: frozenset[str]
    summary_metrics: frozenset[str]
    open_prefixes: tuple[str, ...] = ()

    def _validate(self, composed: Any) -> Any:
        if self.name == "train":
            from nas.train.config import to_train_config

            return to_train_config(composed)
        from nas.search.config import to_search_config

        return to_search_config(composed)

    def _register(self) -> None:
        if self.name == "train":
            from nas.train.config import register_train_configs

            register_train_configs()
        else:
            from nas.search.config import register_configs

            register_configs()

    def config(self, overrides: Sequence[str]) -> Any:
        self._register()
        cfg = self._validate(compose_command(self.name, overrides))
        if self.name == "train" and not cfg.profile_only:  # a genotype is read only when the run starts
            from nas.genotype import load
            from nas.ops import OPS

            load(cfg.genotype, OPS)
        return cfg

    def keys(self, overrides: Sequence[str]) -> Callable[[str], bool]:
        """Whether a dotted key names a value or a group of the composed config."""
        from omegaconf import OmegaConf

        self._register()
        composed = compose_command(self.name, overrides)
        absent = object()
        return lambda key: OmegaConf.select(composed, key, default=absent, throw_on_missing=False) is not absent

    def epochs(self, cfg: Any) -> int:
        return int(cfg.epochs)

    def trial_overrides(self, threads: int | None) -> list[str]:
        return ["log.progress=false", *([f"threads={threads}"] if threads else [])]

    def run(self, cfg: Any, run_dir: Path, hooks: Sequence[Any],
            on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
        if self.name == "train":
            from nas.train.task import run_train

            return run_train(cfg, run_dir, hooks=hooks, on_start=on_start)
        from nas.search.task import run_search

        return run_search(cfg, run_dir, hooks=hooks, on_start=on_start)


_COMMON = frozenset({"epochs", "steps", "wall_time_s", "examples_per_s"})
TRAIN = BuiltinCommand(
    name="train", cli="nas-train",
    epoch_metrics=frozenset({"acc/top1", "acc/top5", "loss/test", "loss/train", "acc/train", "lr", "drop_path",
                             "time/epoch_s"}),
    summary_metrics=_COMMON | {"params", "aux_params", "macs", "top1", "top5", "best_top1", "best_epoch",
                               "images_per_s"},
)


def _search() -> BuiltinCommand:
    from nas.search.algorithms import discover

    return BuiltinCommand(
        name="search", cli="nas-search",
        epoch_metrics=frozenset({"acc/val", "loss/val", "acc/train", "loss/train", "lr/weights", "time/epoch_s",
                                 "alpha/entropy/normal", "alpha/entropy/reduce", "collapse/param_free/normal",
                                 "collapse/param_free/reduce", "hessian/eig_max"}),
        summary_metrics=_COMMON | {"final_val_acc", "final_val_loss"},
        # the algorithms' own scalars (asap/..., gdas/...) exist only when that algorithm runs
        open_prefixes=tuple(f"{name}/" for name in sorted(discover())),
    )


def resolve_command(spec: str) -> Command:
    """``train``, ``search``, or ``module:attr`` naming a command object (or a class to instantiate)."""
    if spec == "train":
        return TRAIN
    if spec == "search":
        return _search()
    module_name, _, attr = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"command={spec}: cannot import it ({exc})") from None
    command = found() if isinstance(found, type) else found
    for needed in ("name", "cli", "config", "keys", "epochs", "run", "trial_overrides", "epoch_metrics",
                   "summary_metrics", "open_prefixes"):
        if not hasattr(command, needed):
            raise ConfigError(f"command={spec} is not a tunable command (it has no {needed})")
    return command
