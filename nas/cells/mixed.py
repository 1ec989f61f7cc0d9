"""The mixed edge: every op of a search space on one edge, summed with weights given from outside.

The edge does not know how its weights are made (softmax, softmax(α/T), noisy α): the
architecture above it decides, so each new weighting rule is one change in one place. It does know
which of its ops are still alive: ASAP prunes ops permanently, and a pruned op is *not computed*
(not multiplied by zero), so a pruned edge costs what its surviving ops cost. The ``none`` op
outputs zeros, so it is never computed either; it still takes part in the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.ops import get_op


class MixedEdge(nn.Module):
    def __init__(self, op_names: Sequence[str], channels: int, stride: int):
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride = stride
        specs = [get_op(name) for name in self.op_names]
        ops = []
        for spec in specs:
            op = spec.build(channels, stride, affine=False)
            if spec.normalize_in_search:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._zero = [spec.zero for spec in specs]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, alive: Sequence[int] | None = None) -> torch.Tensor:
        """``weights``: one weight per op of the space; ``alive``: indices of the ops still in the edge."""
        indices = range(len(self.ops)) if alive is None else alive
        out = None
        for i in indices:
            if self._zero[i]:
                continue
            term = weights[i] * self.ops[i](x)
            out = term if out is None else out + term
        if out is None:  # only zero ops are left on this edge
            out = self._zeros_like_output(x) * weights.sum()
        return out

    def _zeros_like_output(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])
