"""The mixed edge: every op of a search space on one edge, summed with weights given from outside.

The edge does not know how its weights are made (softmax, softmax(α/T), noisy α): the
architecture above it decides, so each new weighting rule is one change in one place. It does know
which of its ops are still alive: ASAP prunes ops permanently, and a pruned op is *not computed*
(not multiplied by zero), so a pruned edge costs what its surviving ops cost. The ``none`` op
outputs zeros, so it is never computed either; it still takes part in the softmax.

Two collapse remedies are options of the edge. PC-DARTS partial channels (``partial_channels=K``):
only the first C/K channels go through the ops, the rest bypass them (max-pooled on a reducing
edge), and a channel shuffle mixes the two parts so the next edge sees other channels; this cuts
the memory of the mixed op by about K. DARTS- auxiliary skip (``aux_skip`` > 0 in ``forward``): the
edge adds ``aux_skip·x``, a residual path outside the softmax that lets the skip op's weight mean
"better than a free residual", not "a free residual".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.ops import get_op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` equal channel groups (ShuffleNet): channel i of group g moves to i·groups + g."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedEdge(nn.Module):
    def __init__(self, op_names: Sequence[str], channels: int, stride: int, partial_channels: int = 1,
                 search_norm: bool = True):
        super().__init__()
        if channels % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} does not divide {channels} channels")
        self.op_names = tuple(op_names)
        self.stride = stride
        self.partial_channels = partial_channels
        self.op_channels = channels // partial_channels
        specs = [get_op(name) for name in self.op_names]
        ops = []
        for spec in specs:
            op = spec.build(self.op_channels, stride, affine=False)
            if search_norm and spec.normalize_in_search:  # the DARTS search net's BN after pools
                op = nn.Sequential(op, nn.BatchNorm2d(self.op_channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._zero = [spec.zero for spec in specs]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, alive: Sequence[int] | None = None,
                aux_skip: float = 0.0) -> torch.Tensor:
        """``weights``: one weight per op of the space; ``alive``: indices of the ops still in the edge;
        ``aux_skip``: the weight of the auxiliary identity path (stride-1 edges only)."""
        if self.partial_channels == 1:
            out = self._mixed(x, weights, alive)
        else:
            # A channel slice of a channels_last tensor is not dense, and some CPU kernels write out of
            # bounds on such input (a heap corruption with FactorizedReduce, torch 2.14): copy it.
            fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            part, rest = x[:, : self.op_channels].contiguous(memory_format=fmt), x[:, self.op_channels :]
            if self.stride > 1:
                rest = F.max_pool2d(rest, self.stride, self.stride, ceil_mode=True)
            out = channel_shuffle(torch.cat([self._mixed(part, weights, alive), rest], dim=1), self.partial_channels)
        if aux_skip and self.stride == 1:
            out = out + aux_skip * x
        return out

    def _mixed(self, x: torch.Tensor, weights: torch.Tensor, alive: Sequence[int] | None) -> torch.Tensor:
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
