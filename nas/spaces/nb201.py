"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a search space: the field's standard benchmark.

Macro skeleton (the benchmark's, so its sizes are ours): a 3×3 conv stem to C channels + BN; three
stages of N cells (C, 2C, 4C) joined by residual reduction blocks (ReLU-Conv3×3-BN stride 2,
ReLU-Conv3×3-BN, shortcut avg-pool 2×2 + 1×1 conv); BN-ReLU, global pooling, a linear classifier.
``model.layers`` is N, the cells per stage (5 in the benchmark); ``model.channels`` is C (16).

The cell (``nas.cells.nb201``) has 4 nodes and all 6 edges, each one of none, skip_connect,
nor_conv_1x1, nor_conv_3x3, avg_pool_3x3. One alpha tensor (6 × 5) is shared by every cell.
Derivation is the argmax op of each edge, ``none`` included, every edge kept (``derive.k`` does not
apply); ``derive.max_skip`` caps the skip connections, an edge over the cap falling back to its
next strongest op. The genotype is the benchmark's text ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``,
read by a strict pattern (never evaluated) and looked up in the configured table of known answers.

Reference sizes at C=16, N=5, 10 classes (tests/test_nb201.py): all-nor_conv_3x3 network 1,531,546
parameters; all-skip_connect 73,306; the weight-sharing supernet (BatchNorm affine off, 5 ops)
1,692,826 weights + 30 alphas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nas.cells.nb201 import DiscreteCell201, SearchCell201, nb201_edges
from nas.errors import ConfigError, GenotypeError
from nas.ops import ReLUConvBN, get_op
from nas.spaces.architecture import Active, Architecture
from nas.spaces.base import Choice, Rules, SearchSpace
from nas.spaces.supernet import SupernetBase
from nas.spaces.table import load_table
from nas.spaces.weighting import WeightingRule

KIND = "cell"
EDGES = nb201_edges(3)  # (target, source): 1←0, 2←0, 2←1, 3←0, 3←1, 3←2
_TEXT = re.compile(r"\|([a-z0-9_]+)~0\|\+\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|\+"
                   r"\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|([a-z0-9_]+)~2\|")
MAX_TEXT = 4096


class Cell201(NamedTuple):
    """One op per edge, in the benchmark's edge order."""

    ops: tuple[str, ...]

    def to_text(self) -> str:
        groups, e = [], 0
        for j in range(1, 4):
            groups.append("|" + "|".join(f"{self.ops[e + i]}~{i}" for i in range(j)) + "|")
            e += j
        return "+".join(groups)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.to_text(), "edges": [[op, src, dst] for op, (dst, src) in zip(self.ops, EDGES)]}


def parse_cell(text: str, known_ops: Sequence[str]) -> Cell201:
    """The benchmark's ``|op~0|+|op~0|op~1|+...`` text, checked against the space's ops."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise GenotypeError(f"NAS-Bench-201 cell text of {len(text)} characters is far too long")
    match = _TEXT.fullmatch(text)
    if match is None:
        raise GenotypeError(f"'{text[:120]}' is not a NAS-Bench-201 cell: expected "
                            "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with one op per edge")
    ops = tuple(match.groups())
    unknown = sorted(set(ops) - set(known_ops))
    if unknown:
        raise GenotypeError(f"NAS-Bench-201 cell uses op(s) {', '.join(unknown)} outside the space "
                            f"({', '.join(known_ops)})")
    return Cell201(ops)


class ResNetBlock(nn.Module):
    """The benchmark's reduction block: two ReLU-Conv3×3-BN (the first strided) plus an avg-pool +
    1×1 conv shortcut. Affine BatchNorm in the supernet too, as the benchmark builds it."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Skeleton(nn.Module):
    """Stem, 3 stages of ``cells_per_stage`` cells joined by reduction blocks, BN-ReLU, pool, linear;
    ``make_cell(channels)`` builds one cell of a stage."""

    def __init__(self, make_cell: Any, channels: int, cells_per_stage: int, num_classes: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResNetBlock(c, 2 * c))
                c *= 2
            layers.extend(make_cell(c) for _ in range(cells_per_stage))
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class Nb201Supernet(SupernetBase):
    """The weight-sharing supernet: a mixed edge on each of the 6 edges of every cell, one alpha tensor."""

    def __init__(self, op_names: Sequence[str], channels: int, cells_per_stage: int, num_classes: int,
                 in_channels: int = 3, alpha_init_std: float = 1e-3, partial_channels: int = 1,
                 edge_norm: bool = False, recompute: bool = False, rule: WeightingRule | None = None):
        super().__init__()
        self.op_names = tuple(op_names)
        self.recompute = recompute
        self.body = Skeleton(lambda c: SearchCell201(self.op_names, c, partial_channels=partial_channels),
                             channels, cells_per_stage, num_classes, in_channels)
        self.arch = Architecture(self.op_names, {KIND: len(EDGES)}, {KIND: [1, 2, 3]}, init_std=alpha_init_std,
                                 edge_norm=edge_norm, rule=rule)

    def forward(self, x: torch.Tensor, edge_weights: dict[str, torch.Tensor] | None = None, active: Active = None,
                recompute: bool | None = None) -> torch.Tensor:
        recompute = (self.recompute if recompute is None else recompute) and torch.is_grad_enabled()
        if edge_weights is None:
            edge_weights, active = self.arch.forward_weights(self.training)
        alive = self.arch.alive_lists() if active is None else active
        scales = self.arch.edge_scales()
        s = self.body.stem(x)
        for layer in self.body.layers:
            if isinstance(layer, SearchCell201):
                args = (s, edge_weights[KIND], None if alive is None else alive[KIND],
                        None if scales is None else scales[KIND], self.arch.aux_skip)
                s = self.run_cell(layer, args, recompute)
            else:
                s = layer(s)
        return self.body.head(s)


class Nb201Network(nn.Module):
    """The discrete network of one cell, for retraining (no auxiliary head)."""

    def __init__(self, cell: Cell201, channels: int, cells_per_stage: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.body = Skeleton(lambda c: DiscreteCell201(cell.ops, c), channels, cells_per_stage, num_classes,
                             in_channels)

    def forward(self, x: torch.Tensor, drop_path_prob: float = 0.0) -> tuple[torch.Tensor, None]:
        s = self.body.stem(x)
        for layer in self.body.layers:
            s = layer(s, drop_path_prob) if isinstance(layer, DiscreteCell201) else layer(s)
        return self.body.head(s), None


class Nb201Space(SearchSpace):
    name = "nb201"
    collapse_kind = KIND

    def __init__(self, op_names: Sequence[str], table: str | None = None, table_dataset: str | None = None):
        super().__init__(op_names)
        self.table_spec, self.table_dataset = table, table_dataset

    # -- topology --------------------------------------------------------------------------------
    def alpha_shapes(self, model: Any) -> dict[str, int]:
        return {KIND: len(EDGES)}

    def node_sizes(self, model: Any) -> dict[str, list[int]]:
        return {KIND: [1, 2, 3]}

    def edge_labels(self, model: Any) -> dict[str, list[str]]:
        return {KIND: [f"{src}→{dst}" for dst, src in EDGES]}

    # -- networks --------------------------------------------------------------------------------
    def validate_model(self, model: Any) -> None:
        if getattr(model, "nodes", 3) != 3:
            raise ConfigError(f"space nb201 has the benchmark's fixed cell (3 nodes after its input); "
                              f"model.nodes={model.nodes} does not apply")
        if getattr(model, "stem_multiplier", 1) != 1:
            raise ConfigError("space nb201's stem outputs model.channels: model.stem_multiplier must be 1")
        if getattr(model, "name", "nb201") != "nb201":
            raise ConfigError(f"space nb201 builds its own network; model={model.name} is a DARTS network "
                              "(use model=nb201, which space=nb201 selects)")
        if getattr(model, "auxiliary", False):
            raise ConfigError("space nb201's network has no auxiliary head: model.auxiliary must be false")

    def build_supernet(self, model: Any, num_classes: int, in_channels: int, **options: Any) -> Nb201Supernet:
        self.validate_model(model)
        return Nb201Supernet(self.op_names, model.channels, model.layers, num_classes, in_channels, **options)

    def build_network(self, genotype: Cell201, model: Any, num_classes: int, in_channels: int = 3) -> Nb201Network:
        self.validate_model(model)
        return Nb201Network(genotype, model.channels, model.layers, num_classes, in_channels)

    def network_at_search_size(self, genotype: Cell201, model: Any, num_classes: int, in_channels: int
                               ) -> Nb201Network:
        return Nb201Network(genotype, model.channels, model.layers, num_classes, in_channels)

    # -- derivation ------------------------------------------------------------------------------
    def derive(self, weights: Mapping[str, torch.Tensor], model: Any, rules: Rules,
               edge_scales: Mapping[str, torch.Tensor] | None = None) -> Cell201:
        """The strongest op of every edge (ties: the op listed first); over the skip cap, the weakest
        skip edge falls back to its next strongest op, until the cell obeys the cap."""
        rows = weights[KIND].detach().cpu().tolist()
        banned: set[int] = set()
        identity = [get_op(op).identity for op in self.op_names]
        while True:
            chosen = []
            for e, row in enumerate(rows):
                options = [i for i in range(len(row)) if not (e in banned and identity[i])]
                chosen.append(max(options, key=lambda i, r=row: (r[i], -i)))
            skips = [(rows[e][op], e) for e, op in enumerate(chosen) if identity[op]]
            if rules.max_skip is None or len(skips) <= rules.max_skip:
                return Cell201(tuple(self.op_names[i] for i in chosen))
            banned.add(min(skips)[1])

    def path_of(self, genotype: Cell201, model: Any, device: torch.device | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
        index = {name: i for i, name in enumerate(self.op_names)}
        for op in genotype.ops:
            if op not in index:
                raise GenotypeError(f"op '{op}' of the cell is not in the searched space ({', '.join(self.op_names)})")
        w = torch.zeros(len(EDGES), len(self.op_names))
        for e, op in enumerate(genotype.ops):
            w[e, index[op]] = 1.0
        active = [[index[op]] for op in genotype.ops]
        return {KIND: w if device is None else w.to(device)}, {KIND: active}

    # -- genotypes -------------------------------------------------------------------------------
    def from_dict(self, data: Mapping[str, Any]) -> Cell201:
        if not isinstance(data, Mapping) or not isinstance(data.get("arch"), str):
            raise GenotypeError("a NAS-Bench-201 genotype is an object with 'arch': '|op~0|+|op~0|op~1|+...'")
        return parse_cell(data["arch"], self.op_names)

    def load(self, spec: str) -> Cell201:
        if spec.lstrip().startswith("|"):
            return parse_cell(spec, self.op_names)
        path = Path(spec).expanduser()
        if path.is_dir() and (path / "genotype.json").is_file():
            path = path / "genotype.json"
        if not path.is_file():
            raise GenotypeError(f"genotype '{spec}' is neither a NAS-Bench-201 cell text (|op~0|+...) nor a file")
        try:
            text = path.read_text()[: MAX_TEXT * 64]
        except (OSError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"cannot read genotype file {path}: {exc}") from None
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise GenotypeError(f"malformed genotype JSON in {path}: {exc}") from None
            space = data.get("meta", {}).get("space_name") if isinstance(data.get("meta"), dict) else None
            if space not in (None, self.name):
                raise GenotypeError(f"{path} holds a genotype of space {space}, not nb201")
            return self.from_dict(data)
        return parse_cell(text, self.op_names)

    def ops_of(self, genotype: Cell201) -> dict[str, list[str]]:
        return {KIND: list(genotype.ops)}

    def images(self, genotype: Cell201, title: str = "") -> dict[str, np.ndarray]:
        from nas.logging.plots import dag_diagram

        edges = [(src, dst, op) for op, (dst, src) in zip(genotype.ops, EDGES) if not get_op(op).zero]
        return {KIND: dag_diagram(4, edges, ["in", "1", "2", "out"], title=title or "NAS-Bench-201 cell")}

    # -- discrete search -------------------------------------------------------------------------
    def choices(self, model: Any, rules: Rules) -> list[Choice]:
        return [Choice(f"edge{src}{dst}", self.op_names) for dst, src in EDGES]

    def decode(self, values: Sequence[int], model: Any, rules: Rules) -> Cell201:
        return Cell201(tuple(self.op_names[v] for v in values))

    def encode(self, genotype: Cell201, model: Any, rules: Rules) -> list[int]:
        return [self.op_names.index(op) for op in genotype.ops]

    # -- the tabular benchmark -------------------------------------------------------------------
    def lookup(self, genotype: Cell201) -> dict[str, Any] | None:
        if not self.table_spec:
            return None
        table = load_table(self.table_spec)
        entry = table.lookup(genotype.to_text())
        info: dict[str, Any] = {"table": table.source, "dataset": self.table_dataset, "cells": len(table),
                                "optimum_test_acc": table.optimum, "mean_test_acc": table.mean_test}
        if entry is None:
            return {**info, "found": False}
        return {**info, "found": True, "val_acc": entry.val_acc, "test_acc": entry.test_acc, "rank": entry.rank,
                "val_rank": entry.val_rank}

    def table_val_acc(self, genotype: Cell201) -> float:
        """The one figure a search may select on: the table's validation accuracy (%)."""
        entry = load_table(self.table_spec).lookup(genotype.to_text()) if self.table_spec else None
        if entry is None:
            raise ConfigError(f"cell {genotype.to_text()} is not in the table {self.table_spec}")
        return entry.val_acc
