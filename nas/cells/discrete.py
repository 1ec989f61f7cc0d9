"""The discrete cell: the fixed DAG a genotype describes, as used by the evaluation networks.

Node j sums the outputs of its k chosen ops, each applied to one earlier state (the two cell
inputs 0/1 or an earlier node 2..). Ops on the cell inputs of a reduction cell have stride 2. The
output concatenates the states listed in the genotype's ``*_concat``, so the cell emits
``len(concat) · C`` channels; ``multiplier`` tells the network how many.

Drop path (FractalNet's regulariser, as DARTS uses it): in training, each op output is zeroed
for a random subset of the samples and rescaled by 1/keep so its expectation is unchanged. An
identity op is left alone: dropping it would cut the cell's only shortcut without regularising
any weights. Which ops are identities is a fact of the op registry, never a test of names.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.genotype import Genotype
from nas.ops import FactorizedReduce, ReLUConvBN, get_op


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``prob``; scale the kept ones by 1/(1 − prob)."""
    if prob <= 0.0:
        return x
    keep = 1.0 - prob
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * (mask / keep)


class DiscreteCell(nn.Module):
    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        kind = "reduce" if reduction else "normal"
        pairs = getattr(genotype, kind)
        self.concat = list(getattr(genotype, f"{kind}_concat"))
        # Like nas.genotype.validate: every concatenated node is fed by the same number of ops.
        self.nodes = len(self.concat)
        self.k = len(pairs) // self.nodes
        self.multiplier = len(self.concat)
        # The previous-previous state has twice the resolution when the previous cell reduced.
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        ops, droppable = [], []
        for op_name, index in pairs:
            spec = get_op(op_name)
            stride = 2 if reduction and index < 2 else 1
            ops.append(spec.build(channels, stride, affine=True))
            droppable.append(not (spec.identity and stride == 1))
        self.ops = nn.ModuleList(ops)
        self.inputs = [index for _, index in pairs]
        self.droppable = droppable

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_path_prob: float = 0.0) -> torch.Tensor:
        """``drop_path_prob`` acts only in training mode."""
        drop = drop_path_prob if self.training else 0.0
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.nodes):
            total = None
            for e in range(node * self.k, (node + 1) * self.k):
                out = self.ops[e](states[self.inputs[e]])
                if self.droppable[e]:
                    out = drop_path(out, drop)
                total = out if total is None else total + out
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)
