"""Architecture state: alphas, op masks and the rule that turns them into edge weights.

The alphas are registered parameters of this module (so they are in every ``state_dict`` and
checkpoint) but live apart from the network weights: the supernet exposes ``weights()`` and
``alphas()`` by reference for the two optimizers. The masks record which ops are still alive on
each edge (ASAP prunes them permanently); the temperature scales the softmax (1 for DARTS).
``edge_weights`` is the one place where alphas become op weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KINDS = ("normal", "reduce")


class Architecture(nn.Module):
    def __init__(self, op_names: Sequence[str], edges: int, init_std: float = 1e-3):
        super().__init__()
        self.op_names = tuple(op_names)
        shape = (edges, len(self.op_names))
        # DARTS initialises alphas at 1e-3·N(0,1); ASAP at exactly 0 (init_std=0).
        self.alpha_normal = nn.Parameter(init_std * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(init_std * torch.randn(shape))
        self.register_buffer("alive_normal", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("alive_reduce", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("temperature", torch.tensor(1.0))
        self._alive_lists: dict[str, list[list[int]]] | None = None

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def alive(self) -> dict[str, torch.Tensor]:
        return {"normal": self.alive_normal, "reduce": self.alive_reduce}

    def edge_weights(self, alphas: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """softmax(α / T) over the ops alive on each edge; pruned ops get weight exactly 0."""
        alphas = self.alphas() if alphas is None else alphas
        weights = {}
        for kind, alpha in alphas.items():
            logits = (alpha / self.temperature).masked_fill(~self.alive()[kind], float("-inf"))
            weights[kind] = torch.softmax(logits, dim=-1)
        return weights

    def alive_lists(self) -> dict[str, list[list[int]]] | None:
        """Per kind and edge, the indices of live ops, or None while nothing is pruned (fast path).

        Cached on the host: the masks change only when ops are pruned or a state is loaded, and
        reading them every forward would synchronise a GPU each step.
        """
        if self._alive_lists is None:
            if all(bool(mask.all()) for mask in self.alive().values()):
                self._alive_lists = {}
            else:
                self._alive_lists = {
                    kind: [row.nonzero().flatten().tolist() for row in mask] for kind, mask in self.alive().items()
                }
        return self._alive_lists or None

    def prune(self, kind: str, edge: int, op: int) -> None:
        """Remove one op from an edge for good; the last live op of an edge is never removed."""
        mask = self.alive()[kind]
        if not mask[edge, op]:
            return
        if int(mask[edge].sum()) <= 1:
            raise ValueError(f"refusing to prune the last op of {kind} edge {edge}")
        mask[edge, op] = False
        self._alive_lists = None

    def ops_alive(self) -> dict[str, int]:
        return {kind: int(mask.sum()) for kind, mask in self.alive().items()}

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._alive_lists = None
