"""The ``supernet`` evaluator: weight sharing with uniform single-path sampling (SPOS, Guo et al. 2020;
random search with weight sharing, Li & Talwalkar 2019).

One supernet — the search's, every op on every edge — is trained once, and every candidate is then
scored with the weights it inherits from it. Each training step draws one cell uniformly from the
candidates themselves (k parents per node, no ``none``, at most ``derive.max_skip`` skips: the same
sampler as ``algorithm=random``) and trains only that path: the edges the cell keeps carry their
op with weight 1 and every other op and edge is not computed. No architecture parameter is learnt,
so no path is favoured: the shared weights are meant to rank every candidate fairly.

A candidate is scored by running the supernet along its own path, in eval mode, on the held-out
part of the search split. The BatchNorm statistics gathered in training average over many paths
and describe none of them, so they are first re-estimated on ``calibration_batches`` training
batches along the candidate's path (``nas.search.calibration``), as SPOS does.

The supernet's training is the evaluator's one-time ``setup`` cost, apart from the per-candidate
costs; a search checkpoints the trained supernet, so a resumed search never trains it again.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from nas.cells import edge_inputs
from nas.data.loader import derive_seed
from nas.errors import GenotypeError
from nas.evaluate.base import (
    Cost,
    Evaluator,
    Score,
    Stop,
    Stopwatch,
    Workbench,
    genotype_seed,
    held_out_accuracy,
    seeded,
)
from nas.evaluate.config import SupernetEvaluatorConfig
from nas.genotype import Genotype
from nas.search.calibration import recalibrate_batchnorm
from nas.search.random_genotype import sample_genotype
from nas.search.supernet import Supernet

_INIT_STREAM, _PATH_STREAM = 0x5B1, 0x5B2  # seeds of the supernet's weights and of its training paths
Path = tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]


def path_of(genotype: Genotype, op_names: tuple[str, ...], nodes: int, device: torch.device | None = None) -> Path:
    """The op weights and active ops that make the supernet compute exactly ``genotype``'s cells:
    weight 1 on each kept (edge, op), and nothing computed anywhere else."""
    if genotype.nodes != nodes or any(list(c) != list(range(2, nodes + 2))
                                      for c in (genotype.normal_concat, genotype.reduce_concat)):
        raise GenotypeError(f"the supernet has {nodes} nodes, all concatenated; the genotype "
                            f"{genotype.to_text()} does not fit it (model.nodes)")
    index = {name: i for i, name in enumerate(op_names)}
    edge_of = {pair: e for e, pair in enumerate(edge_inputs(nodes))}
    weights, active = {}, {}
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        k = len(pairs) // nodes
        w = torch.zeros(len(edge_of), len(op_names))
        ops: list[list[int]] = [[] for _ in edge_of]
        for position, (op, src) in enumerate(pairs):
            if op not in index:
                raise GenotypeError(f"op '{op}' of the genotype is not in the searched space ({', '.join(op_names)})")
            e = edge_of[(position // k, src)]
            w[e, index[op]] += 1.0
            if index[op] not in ops[e]:
                ops[e].append(index[op])
        weights[kind], active[kind] = w.to(device) if device is not None else w, ops
    return weights, active


class OnePath(nn.Module):
    """The supernet restricted to one path, as a plain module (``model(x)``), for BatchNorm calibration."""

    def __init__(self, supernet: Supernet, path: Path):
        super().__init__()
        self.supernet = supernet
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, *self.path)


class SupernetEvaluator(Evaluator):
    name = "supernet"
    measures_accuracy = True

    def __init__(self, bench: Workbench, cfg: SupernetEvaluatorConfig, k: int, max_skip: int | None):
        super().__init__(bench)
        self.cfg, self.k, self.max_skip = cfg, k, max_skip
        with seeded(derive_seed(bench.seed, _INIT_STREAM), bench.device):
            model = Supernet(bench.op_names, channels=bench.channels, layers=bench.layers,
                             num_classes=bench.data.num_classes, nodes=bench.nodes,
                             stem_multiplier=bench.stem_multiplier, in_channels=bench.data.in_channels)
        self.model: Supernet = bench.place(model)  # type: ignore[assignment]
        self.ready = False

    def sample_path(self, rng: random.Random) -> Path:
        g = sample_genotype(self.bench.op_names, self.bench.nodes, self.k, rng.getrandbits(63), self.max_skip)
        return path_of(g, self.bench.op_names, self.bench.nodes, self.bench.device)

    def prepare(self, stop: Stop | None = None) -> None:
        """Train the shared weights, one uniformly drawn path per step; a ``stop()`` leaves it unready
        (a resumed run then trains it again, from the same seeds, to the same weights)."""
        if self.ready:
            return
        cfg, bench, model = self.cfg, self.bench, self.model
        clock, images = Stopwatch(), 0
        rng = random.Random(derive_seed(bench.seed, _PATH_STREAM))
        optimizer = torch.optim.SGD(model.weights(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=0.0)
        criterion = nn.CrossEntropyLoss()
        model.train()
        with seeded(derive_seed(bench.seed, _PATH_STREAM, 1), bench.device):  # stochastic ops (noise)
            for epoch in range(cfg.epochs):
                for x, y in bench.train_batches(epoch):
                    if stop is not None and stop():
                        return
                    loss = criterion(model(x, *self.sample_path(rng)), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(list(model.weights()), cfg.grad_clip)
                    optimizer.step()
                    images += len(y)
                scheduler.step()
        self.ready, self.setup = True, Cost(clock.elapsed, images)

    def score_one(self, genotype: Genotype) -> Score:
        clock = Stopwatch()
        path = path_of(genotype, self.bench.op_names, self.bench.nodes, self.bench.device)
        images = 0
        if self.cfg.calibration_batches:  # the same training batches for every candidate
            with seeded(genotype_seed(self.bench.seed, genotype), self.bench.device):  # stochastic ops (noise)
                used = recalibrate_batchnorm(OnePath(self.model, path), self.bench.data.train.batches(0),
                                             self.cfg.calibration_batches)
            images += used * self.bench.data.train.batch_size
        self.model.eval()
        try:
            accuracy, seen = held_out_accuracy(lambda x: self.model(x, *path), self.bench.data.val_eval.batches(0),
                                               self.cfg.eval_batches)
        finally:
            self.model.train()
        return Score(accuracy, clock.elapsed, images + seen)

    def state_dict(self) -> dict[str, Any]:
        if not self.ready:
            return {"ready": False}
        return {"ready": True, "model": self.model.state_dict(), "setup": [self.setup.seconds, self.setup.images]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("ready"):
            self.model.load_state_dict(state["model"])
            self.setup = Cost(float(state["setup"][0]), int(state["setup"][1]))
            self.ready = True
