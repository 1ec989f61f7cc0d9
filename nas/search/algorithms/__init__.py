"""The registry of search algorithms: one module and one config file per method, nothing else.

A method is a module in this package that registers an ``Algorithm`` subclass with its own config
dataclass::

    @register_algorithm("gdas", GdasConfig)
    class Gdas(Algorithm): ...

plus ``configs/search/algorithm/<name>.yaml``. Every module here is imported when the registry is
first used, so adding a method touches no other file: not the search loop, not the config schema.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from nas.search.algorithms.base import Algorithm, AlgorithmConfig


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    cls: type[Algorithm]
    config: type[AlgorithmConfig]

    def create(self, cfg: AlgorithmConfig) -> Algorithm:
        return self.cls(cfg)


ALGORITHMS: dict[str, AlgorithmSpec] = {}
_discovered = False


def register_algorithm(name: str, config: type[AlgorithmConfig]) -> Any:
    """Class decorator: register an ``Algorithm`` under ``name`` with its config dataclass."""

    def decorator(cls: type[Algorithm]) -> type[Algorithm]:
        if name in ALGORITHMS and ALGORITHMS[name].cls is not cls:
            warnings.warn(f"algorithm '{name}' registered again; the new one replaces the old", stacklevel=2)
        ALGORITHMS[name] = AlgorithmSpec(name, cls, config)
        return cls

    return decorator


def discover() -> dict[str, AlgorithmSpec]:
    """Import every module of this package once, so that each registers its algorithm."""
    global _discovered
    if not _discovered:
        _discovered = True
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
    return ALGORITHMS


def algorithm_spec(name: str) -> AlgorithmSpec:
    try:
        return discover()[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm '{name}'; registered algorithms: {', '.join(sorted(ALGORITHMS))}") from None


def register_algorithm_schemas(store: Any) -> None:
    """Store each algorithm's config dataclass in Hydra's ConfigStore as ``algorithm/<name>_schema``,
    which its YAML file extends (``defaults: [<name>_schema, _self_]``)."""
    for spec in discover().values():
        store.store(group="algorithm", name=f"{spec.name}_schema", node=spec.config)


__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "AlgorithmSpec", "algorithm_spec", "discover",
           "register_algorithm", "register_algorithm_schemas"]
