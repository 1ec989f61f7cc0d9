"""The registry of search spaces: a topology (a ``SearchSpace`` class) with a named op set.

``space=<name>`` picks an entry; ``space.ops=[...]`` replaces its op set. The DARTS cell space comes
with its op sets darts (the 8 DARTS ops) and R-DARTS' stress sets s2, s3, s4; NAS-Bench-201 with
its 5 ops. A new space is one module with a ``SearchSpace`` subclass that calls
``register_search_space`` for each of its op sets, plus ``configs/search/space/<name>.yaml``
(and ``configs/train/space/<name>.yaml`` to retrain its cells).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from nas.ops import resolve_space
from nas.spaces.base import Choice, Rules, Sampler, SearchSpace
from nas.spaces.darts import DartsSpace
from nas.spaces.nb201 import Nb201Space


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    cls: type[SearchSpace]
    op_set: str  # a named op set of the op registry


SEARCH_SPACES: dict[str, SpaceSpec] = {}


def register_search_space(name: str, cls: type[SearchSpace], op_set: str | None = None) -> None:
    if name in SEARCH_SPACES:
        warnings.warn(f"search space '{name}' registered again; the new one replaces the old", stacklevel=2)
    SEARCH_SPACES[name] = SpaceSpec(name, cls, op_set or name)


for _name in ("darts", "s2", "s3", "s4"):
    register_search_space(_name, DartsSpace)
register_search_space("nb201", Nb201Space)


def space_spec(name: str) -> SpaceSpec:
    try:
        return SEARCH_SPACES[name]
    except KeyError:
        raise ConfigError(f"unknown search space '{name}'; registered spaces: {', '.join(SEARCH_SPACES)}") from None


def make_space(cfg: Any) -> SearchSpace:
    """The space a ``space`` config node names (``name``, ``ops``, ``table``, ``table_dataset``)."""
    spec = space_spec(cfg.name)
    ops = resolve_space(spec.op_set, cfg.ops)
    return spec.cls(ops, table=getattr(cfg, "table", None), table_dataset=getattr(cfg, "table_dataset", None))


def rules_of(cfg: Any) -> Rules:
    """The derivation rules of a search config (``derive.k``, ``derive.max_skip``)."""
    return Rules(k=cfg.derive.k, max_skip=cfg.derive.max_skip)


def benchmark_of(space: SearchSpace, genotype: Any) -> dict[str, Any]:
    """``{"benchmark": ...}`` for summary.json: the genotype's known answer when its space has a
    table (reported, never selected on), else nothing."""
    known = space.lookup(genotype)
    return {"benchmark": known} if known is not None else {}


__all__ = ["benchmark_of", "SEARCH_SPACES", "Choice", "DartsSpace", "Nb201Space", "Rules", "Sampler", "SearchSpace", "SpaceSpec",
           "make_space", "register_search_space", "rules_of", "space_spec"]
