"""The DARTS CNN cell space (Liu et al., ICLR 2019) and its op-set variants (R-DARTS' s2–s4).

Two cell inputs, ``model.nodes`` intermediate nodes each summing a mixed edge from every earlier
state (14 edges at 4 nodes), the output the concatenation of the nodes; a normal and a reduction
cell with one alpha tensor each; reduction cells at layers//3 and 2·layers//3. Derivation keeps the
k strongest non-``none`` parents of every node (``derive.k``), the P-DARTS cap on skip connections
in the normal cell (``derive.max_skip``). The genotype is the DARTS code's ``Genotype(...)``.
The pieces live in ``darts_supernet``, ``darts_networks`` and ``darts_derive``; this module is the
contract that the search, the retraining and the discrete strategies talk to.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nas.cells import edge_inputs
from nas.errors import ConfigError, GenotypeError
from nas.genotype import PUBLISHED, Genotype, Pair, from_mapping
from nas.genotype import load as load_genotype
from nas.ops import OPS, get_op
from nas.spaces.base import Choice, Rules, SearchSpace
from nas.spaces.darts_derive import check_k, derive_genotype
from nas.spaces.darts_networks import EvalNetwork, build_network
from nas.spaces.darts_supernet import Supernet, darts_edges

KINDS = ("normal", "reduce")


def canonical(genotype: Genotype) -> Genotype:
    """The same cells with each node's pairs listed by input, then op: two genotypes that build the
    same network (a node sums its inputs in any order) become equal."""
    return Genotype(_sorted_nodes(genotype.normal, len(genotype.normal_concat)), list(genotype.normal_concat),
                    _sorted_nodes(genotype.reduce, len(genotype.reduce_concat)), list(genotype.reduce_concat))


def _sorted_nodes(pairs: Sequence[Pair], nodes: int) -> list[Pair]:
    k = max(len(pairs) // max(nodes, 1), 1)
    out: list[Pair] = []
    for start in range(0, len(pairs), k):
        out += sorted(((op, int(src)) for op, src in pairs[start:start + k]), key=lambda pair: (pair[1], pair[0]))
    return out


class DartsSpace(SearchSpace):
    name = "darts"
    collapse_kind = "normal"

    def __init__(self, op_names: Sequence[str], table: str | None = None, table_dataset: str | None = None):
        super().__init__(op_names)
        if table:
            raise ConfigError("the DARTS space has no tabular benchmark: space.table must stay null")
        self.candidate_ops = tuple(op for op in self.op_names if not get_op(op).zero)

    # -- topology --------------------------------------------------------------------------------
    def alpha_shapes(self, model: Any) -> dict[str, int]:
        return darts_edges(model.nodes)[0]

    def node_sizes(self, model: Any) -> dict[str, list[int]]:
        return darts_edges(model.nodes)[1]

    def edge_labels(self, model: Any) -> dict[str, list[str]]:
        from nas.logging.plots import edge_labels

        labels = edge_labels(model.nodes)
        return {kind: labels for kind in KINDS}

    # -- networks --------------------------------------------------------------------------------
    def validate_model(self, model: Any) -> None:
        if getattr(model, "name", "cifar") not in ("cifar", "imagenet"):
            raise ConfigError(f"space darts retrains in model=cifar or model=imagenet, not model={model.name}")

    def build_supernet(self, model: Any, num_classes: int, in_channels: int, **options: Any) -> Supernet:
        return Supernet(self.op_names, channels=model.channels, layers=model.layers, num_classes=num_classes,
                        nodes=model.nodes, stem_multiplier=model.stem_multiplier, in_channels=in_channels, **options)

    def build_network(self, genotype: Genotype, model: Any, num_classes: int, in_channels: int = 3) -> EvalNetwork:
        self.validate_model(model)
        return build_network(model.name, genotype, model.channels, model.layers, num_classes, model.auxiliary,
                             in_channels)

    def network_at_search_size(self, genotype: Genotype, model: Any, num_classes: int, in_channels: int
                               ) -> EvalNetwork:
        return build_network("cifar", genotype, model.channels, model.layers, num_classes, auxiliary=False,
                             in_channels=in_channels)

    # -- derivation ------------------------------------------------------------------------------
    def derive(self, weights: Mapping[str, torch.Tensor], model: Any, rules: Rules,
               edge_scales: Mapping[str, torch.Tensor] | None = None) -> Genotype:
        return derive_genotype(weights, self.op_names, model.nodes, rules.k, rules.max_skip, edge_scales)

    def path_of(self, genotype: Genotype, model: Any, device: torch.device | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
        nodes = model.nodes
        if genotype.nodes != nodes or any(list(c) != list(range(2, nodes + 2))
                                          for c in (genotype.normal_concat, genotype.reduce_concat)):
            raise GenotypeError(f"the supernet has {nodes} nodes, all concatenated; the genotype "
                                f"{genotype.to_text()} does not fit it (model.nodes)")
        index = {name: i for i, name in enumerate(self.op_names)}
        edge_of = {pair: e for e, pair in enumerate(edge_inputs(nodes))}
        weights, active = {}, {}
        for kind in KINDS:
            pairs = getattr(genotype, kind)
            k = len(pairs) // nodes
            w = torch.zeros(len(edge_of), len(self.op_names))
            ops: list[list[int]] = [[] for _ in edge_of]
            for position, (op, src) in enumerate(pairs):
                if op not in index:
                    raise GenotypeError(f"op '{op}' of the genotype is not in the searched space "
                                        f"({', '.join(self.op_names)})")
                e = edge_of[(position // k, src)]
                w[e, index[op]] += 1.0
                if index[op] not in ops[e]:
                    ops[e].append(index[op])
            weights[kind], active[kind] = w.to(device) if device is not None else w, ops
        return weights, active

    # -- genotypes -------------------------------------------------------------------------------
    def from_dict(self, data: Mapping[str, Any]) -> Genotype:
        return from_mapping(data, OPS)

    def load(self, spec: str) -> Genotype:
        return load_genotype(spec, OPS)

    def published(self) -> dict[str, Genotype]:
        return dict(PUBLISHED)

    def ops_of(self, genotype: Genotype) -> dict[str, list[str]]:
        return {kind: [op for op, _ in getattr(genotype, kind)] for kind in KINDS}

    def canonical(self, genotype: Genotype) -> Genotype:
        return canonical(genotype)

    def images(self, genotype: Genotype, title: str = "") -> dict[str, np.ndarray]:
        from nas.logging.plots import cell_diagram

        return {kind: cell_diagram(getattr(genotype, kind), getattr(genotype, f"{kind}_concat"),
                                   title=f"{kind} cell{', ' + title if title else ''}") for kind in KINDS}

    # -- discrete search -------------------------------------------------------------------------
    def _subsets(self, node: int, k: int) -> list[tuple[int, ...]]:
        return list(itertools.combinations(range(node + 2), k))

    def choices(self, model: Any, rules: Rules) -> list[Choice]:
        """Per cell and node: its k inputs as one choice among the k-subsets of its 2 + j
        predecessors, then the op of each of the k kept edges (the space's ops but ``none``)."""
        check_k(rules.k)
        if not self.candidate_ops:
            raise ConfigError("cannot search a space that holds only the zero op")
        out = []
        for kind in KINDS:
            for node in range(model.nodes):
                subsets = [",".join(map(str, s)) for s in self._subsets(node, rules.k)]
                out.append(Choice(f"{kind}{node}_inputs", tuple(subsets)))
                out.extend(Choice(f"{kind}{node}_op{slot}", self.candidate_ops) for slot in range(rules.k))
        return out

    def decode(self, values: Sequence[int], model: Any, rules: Rules) -> Genotype:
        it = iter(values)
        cells = {}
        for kind in KINDS:
            pairs = []
            for node in range(model.nodes):
                inputs = self._subsets(node, rules.k)[next(it)]
                pairs.extend((self.candidate_ops[next(it)], src) for src in inputs)
            cells[kind] = pairs
        concat = list(range(2, 2 + model.nodes))
        return Genotype(cells["normal"], concat, cells["reduce"], list(concat))

    def encode(self, genotype: Genotype, model: Any, rules: Rules) -> list[int]:
        g = self.canonical(genotype)
        values = []
        for kind in KINDS:
            pairs = getattr(g, kind)
            for node in range(model.nodes):
                mine = pairs[node * rules.k:(node + 1) * rules.k]
                values.append(self._subsets(node, rules.k).index(tuple(src for _, src in mine)))
                values.extend(self.candidate_ops.index(op) for op, _ in mine)
        return values
