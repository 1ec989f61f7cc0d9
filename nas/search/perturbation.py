"""DARTS-PT selection (Wang et al., ICLR 2021): choose ops by what removing them costs, not by α.

The argmax of α is a poor guide to an op's real contribution to the supernet: skip connections
win large α while contributing little. DARTS-PT measures instead. Edge by edge, in a seeded random
order, every op still on the edge is removed in turn (its weight set to 0, the others untouched)
and the supernet's validation accuracy is measured; the op whose removal lowers the accuracy most
is kept, the others are pruned for good, and the supernet is fine-tuned before the next edge.
Then, node by node, the k incoming edges whose removal hurts most become the node's parents.

``select_by_perturbation`` takes the measurement and the fine-tuning as callables, so it runs on
the real supernet in a search and on a stub with known accuracies in the tests.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nas.cells import edge_inputs
from nas.data import BatchCycle
from nas.engine import Engine, Hook
from nas.genotype import Genotype, Pair, save_json
from nas.ops import get_op
from nas.spaces.architecture import Architecture

log = logging.getLogger("nas.search")

Weights = dict[str, torch.Tensor]


def op_to_keep(candidates: Sequence[int], accuracy_without: Callable[[int], float]) -> int:
    """The op whose removal leaves the lowest accuracy (on a tie, the one listed first)."""
    return min(candidates, key=lambda op: (accuracy_without(op), candidates.index(op)))


def edges_to_keep(edges: Sequence[int], accuracy_without: Callable[[int], float], k: int) -> list[int]:
    """The k edges whose removal leaves the lowest accuracy (on a tie, the earlier input)."""
    return sorted(edges, key=lambda e: (accuracy_without(e), edges.index(e)))[:k]


def _without(weights: Weights, kind: str, edge: int, op: int | None = None) -> Weights:
    """The op weights with one op (or, with ``op=None``, a whole edge) set to 0."""
    out = {key: value.clone() for key, value in weights.items()}
    if op is None:
        out[kind][edge] = 0.0
    else:
        out[kind][edge, op] = 0.0
    return out


def select_by_perturbation(arch: Architecture, evaluate: Callable[[Weights], float], tune: Callable[[], None],
                           nodes: int, k: int, seed: int) -> Genotype:
    """Discretise ``arch`` edge by edge (pruning its masks) and return the selected genotype.

    ``evaluate(weights)`` is the supernet's validation accuracy with these op weights;
    ``tune()`` fine-tunes the supernet after each decision.
    """
    op_names = arch.op_names
    real = [i for i, name in enumerate(op_names) if not get_op(name).zero]
    order = [(kind, e) for kind in ("normal", "reduce") for e in range(len(edge_inputs(nodes)))]
    random.Random(seed).shuffle(order)
    for kind, edge in order:
        alive = arch.alive()[kind][edge]
        live = [op for op in range(len(op_names)) if bool(alive[op])]
        candidates = [op for op in live if op in real]
        if len(live) == 1 or not candidates:
            continue
        with torch.no_grad():
            weights = arch.edge_weights()
        keep = op_to_keep(candidates, lambda op, w=weights, kd=kind, ed=edge: evaluate(_without(w, kd, ed, op)))
        for op in live:
            if op != keep:
                arch.prune(kind, edge, op)
        tune()

    with torch.no_grad():
        weights = arch.edge_weights()
    cells: dict[str, list[Pair]] = {}
    for kind in ("normal", "reduce"):
        pairs: list[Pair] = []
        for node in range(nodes):
            incoming = [(e, src) for e, (j, src) in enumerate(edge_inputs(nodes)) if j == node]
            edges = [e for e, _ in incoming]
            kept = edges if len(edges) <= k else edges_to_keep(
                edges, lambda e, kd=kind: evaluate(_without(weights, kd, e)), k)
            for e, src in incoming:
                if e in kept:  # its strongest real op left (the only one, once the edge was decided)
                    live_real = [i for i in real if bool(arch.alive()[kind][e, i])] or real
                    op = max(live_real, key=lambda i, row=weights[kind][e]: float(row[i]))
                    pairs.append((op_names[op], src))
        cells[kind] = pairs
    concat = list(range(2, 2 + nodes))
    return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)


class PerturbationSelection(Hook):
    """DARTS-PT as the search's final phase (``derive.method=perturbation``): after the last epoch,
    the genotype is selected by measured contributions instead of by α.

    It honours SIGTERM/SIGINT before every measurement and fine-tuning step: the checkpoint it then
    writes holds the decisions made so far (in the masks) and the fine-tuning still owed, so a
    resumed run carries on with the next decision.
    """

    name = "perturbation"

    def __init__(self, task: Any):
        self.task = task
        self.stream = BatchCycle(task.data.train)
        self.tune_owed = 0  # fine-tuning steps of the last decision not yet done

    def after_fit(self, engine: Engine) -> None:
        task = self.task
        tune_steps = task.cfg.derive.tune_epochs * task.steps_per_epoch()
        if self.stream.epoch == 0 and self.stream.position == 0:
            self.stream = BatchCycle(task.data.train, epoch=task.counters.epoch)

        def accuracy(weights: Weights) -> float:
            engine.stop_if_signalled()
            return task.evaluate(edge_weights=weights)["acc/val"]

        def tune(steps: int = tune_steps) -> None:
            self.tune_owed = steps
            while self.tune_owed:
                engine.stop_if_signalled()
                with task.autocast():
                    task.bilevel.weight_step(next(self.stream))
                self.tune_owed -= 1

        tune(self.tune_owed)
        log.info("DARTS-PT selection: %d fine-tuning steps between decisions", tune_steps)
        task.genotype = select_by_perturbation(task.model.arch, accuracy, tune, task.cfg.model.nodes,
                                               task.cfg.derive.k, task.cfg.seed)
        if task.world.is_main:
            save_json(task.run_dir / "genotype.json", task.genotype, task.genotype_meta(engine))

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "tune_owed": self.tune_owed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.tune_owed = int(state["tune_owed"])
