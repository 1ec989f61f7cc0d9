"""Primitive operations and search spaces, all reachable through one registry."""

from nas.ops.primitives import (
    DARTS_PRIMITIVES,
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
)
from nas.ops.registry import OPS, SPACES, OpSpec, get_op, register_op, register_space, resolve_space

__all__ = [
    "DARTS_PRIMITIVES", "OPS", "SPACES", "DilConv", "FactorizedReduce", "Identity", "OpSpec", "ReLUConvBN",
    "SepConv", "Zero", "get_op", "register_op", "register_space", "resolve_space",
]
