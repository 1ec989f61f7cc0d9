"""The one registry of primitive operations and of search spaces.

An op is registered by name with a factory ``factory(C, stride, affine) -> nn.Module`` and a few
facts about it that the rest of the toolkit asks for instead of testing names (``'pool' in name``):
whether it outputs zeros (it is never computed in a mixed edge), whether it has parameters (the
collapse diagnostics count parameter-free ops), whether it is an identity (drop path skips those)
and whether the search network follows it with a BatchNorm (the DARTS pools).

A search space is a named, ordered list of registered op names.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from nas.errors import ConfigError

OpFactory = Callable[[int, int, bool], nn.Module]


@dataclass(frozen=True)
class OpSpec:
    name: str
    factory: OpFactory
    zero: bool = False  # outputs zeros: skipped in mixed edges, excluded from derivation
    parameter_free: bool = False  # no learnable weights at any stride (pools, skip, none)
    identity: bool = False  # identity at stride 1: no drop path on it
    normalize_in_search: bool = False  # the DARTS search net puts BN(affine=False) after it

    def build(self, channels: int, stride: int, affine: bool) -> nn.Module:
        return self.factory(channels, stride, affine)


OPS: dict[str, OpSpec] = {}
SPACES: dict[str, tuple[str, ...]] = {}


def register_op(name: str, **facts: bool) -> Callable[[OpFactory], OpFactory]:
    """Decorator: register ``factory(C, stride, affine)`` under ``name`` with its facts."""

    def decorator(factory: OpFactory) -> OpFactory:
        if name in OPS:
            warnings.warn(f"op '{name}' registered again; the new factory replaces the old one", stacklevel=2)
        OPS[name] = OpSpec(name=name, factory=factory, **facts)
        return factory

    return decorator


def get_op(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise ConfigError(f"unknown op '{name}'; registered ops: {', '.join(OPS)}") from None


def register_space(name: str, op_names: Sequence[str]) -> None:
    """Register a search space: an ordered list of registered op names."""
    for op in op_names:
        get_op(op)
    if len(set(op_names)) != len(op_names):
        raise ConfigError(f"search space '{name}' lists an op twice: {list(op_names)}")
    SPACES[name] = tuple(op_names)


def resolve_space(name: str, op_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The op list of a space: ``op_names`` when given (a custom space), else the registered ``name``."""
    if op_names:
        ops = tuple(op_names)
        for op in ops:
            get_op(op)
        if len(set(ops)) != len(ops):
            raise ConfigError(f"space.ops lists an op twice: {list(ops)}")
        if all(get_op(op).zero for op in ops):
            raise ConfigError("space.ops must hold at least one op that is not 'none'")
        return ops
    try:
        return SPACES[name]
    except KeyError:
        raise ConfigError(f"unknown search space '{name}'; registered spaces: {', '.join(SPACES)}") from None
