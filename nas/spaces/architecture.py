"""Architecture state: alphas, op masks and the weighting rule that turns them into op weights.

The alphas are registered parameters of this module (so they are in every ``state_dict`` and
checkpoint) but live apart from the network weights: the supernet exposes ``weights()`` and
``alphas()`` by reference for the two optimizers. The masks record which ops are still alive on
each edge (ASAP prunes them permanently, and a pruned op is never computed). The weighting rule
(``nas.spaces.weighting``, chosen by the search algorithm) is the one place where alphas become op
weights: ``edge_weights`` gives its deterministic weights, ``forward_weights`` those of one pass.

Two remedies add architecture state here: PC-DARTS edge normalisation (``edge_norm``) adds one
learnable β per edge, turned into weights by a softmax over the edges entering the same node
(``edge_scales``); DARTS-'s auxiliary skip has a coefficient ``aux_skip`` that the search loop sets
from its progress each step (a schedule, not a parameter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.spaces.weighting import WeightingRule

Active = dict[str, list[list[int]]] | None


class Architecture(nn.Module):
    """Alphas, masks and β for the cell kinds a space declares (``edges``: edges per kind, e.g.
    {"normal": 14, "reduce": 14} for DARTS, {"cell": 6} for NAS-Bench-201); ``node_sizes``: per kind,
    the edges entering each node, in edge order (edge normalisation groups them)."""

    def __init__(self, op_names: Sequence[str], edges: Mapping[str, int], node_sizes: Mapping[str, Sequence[int]],
                 init_std: float = 1e-3, edge_norm: bool = False, rule: WeightingRule | None = None):
        super().__init__()
        self.op_names = tuple(op_names)
        self.kinds = tuple(edges)
        self._node_sizes = {kind: list(node_sizes[kind]) for kind in self.kinds}
        # Parameters by name (alpha_<kind>), so checkpoints read like the DARTS code's state.
        # DARTS initialises alphas at 1e-3·N(0,1); ASAP at exactly 0 (init_std=0).
        for kind, n in edges.items():
            shape = (n, len(self.op_names))
            self.register_parameter(f"alpha_{kind}", nn.Parameter(init_std * torch.randn(shape)))
            self.register_buffer(f"alive_{kind}", torch.ones(shape, dtype=torch.bool))
        self.rule = rule if rule is not None else WeightingRule()
        self.edge_norm = edge_norm
        if edge_norm:  # PC-DARTS: β = 0 at the start, i.e. all edges of a node weigh the same
            for kind, n in edges.items():
                self.register_parameter(f"beta_{kind}", nn.Parameter(torch.zeros(n)))
        self.aux_skip = 0.0  # DARTS-: weight of the auxiliary identity path, set by the search loop
        self._alive_lists: dict[str, list[list[int]]] | None = None

    def alphas(self) -> dict[str, nn.Parameter]:
        return {kind: getattr(self, f"alpha_{kind}") for kind in self.kinds}

    def betas(self) -> dict[str, nn.Parameter]:
        """Edge-normalisation parameters (empty without ``edge_norm``)."""
        return {kind: getattr(self, f"beta_{kind}") for kind in self.kinds} if self.edge_norm else {}

    def edge_scales(self) -> dict[str, torch.Tensor] | None:
        """Per kind, one weight per edge: softmax of β over the edges entering the same node."""
        if not self.edge_norm:
            return None
        return {kind: torch.cat([torch.softmax(part, dim=0) for part in beta.split(self._node_sizes[kind])])
                for kind, beta in self.betas().items()}

    def alive(self) -> dict[str, torch.Tensor]:
        return {kind: getattr(self, f"alive_{kind}") for kind in self.kinds}

    def edge_weights(self, alphas: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The rule's deterministic op weights (derivation, logging); pruned ops get weight exactly 0."""
        alphas = self.alphas() if alphas is None else alphas
        return {kind: self.rule.probabilities(alpha, self.alive()[kind]) for kind, alpha in alphas.items()}

    def forward_weights(self, training: bool, alphas: dict[str, torch.Tensor] | None = None,
                        ) -> tuple[dict[str, torch.Tensor], Active]:
        """The op weights of one forward pass (a sample, for sampling rules) and the ops it computes
        (None: every live op); ``alphas`` replace the architecture's own (SDARTS' noisy ones)."""
        draw = self.rule.sample if training else self.rule.eval_weights
        weights, active = {}, {}
        for kind, alpha in (self.alphas() if alphas is None else alphas).items():
            weights[kind], active[kind] = draw(alpha, self.alive()[kind])
        if all(a is None for a in active.values()):
            return weights, None
        every = self.alive_lists() or {k: [list(range(len(self.op_names)))] * a.shape[0]
                                       for k, a in self.alphas().items()}
        return weights, {k: every[k] if a is None else a for k, a in active.items()}

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
