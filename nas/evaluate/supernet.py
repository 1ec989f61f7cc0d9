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
batches along the candidate's path (``nas.spaces.calibration``), as SPOS does.

The supernet's training is the evaluator's one-time ``setup`` cost, apart from the per-candidate
costs; a search checkpoints the trained supernet, so a resumed search never trains it again.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from nas.data.loader import derive_seed
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
from nas.spaces import Sampler
from nas.spaces.calibration import recalibrate_batchnorm
from nas.spaces.supernet import SupernetBase

_INIT_STREAM, _PATH_STREAM = 0x5B1, 0x5B2  # seeds of the supernet's weights and of its training paths
Path = tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]


def path_of(genotype: Any, bench: Workbench) -> Path:
    """The op weights and active ops that make the supernet compute exactly ``genotype`` (its space's rule)."""
    return bench.space.path_of(genotype, bench.model, bench.device)


class OnePath(nn.Module):
    """The supernet restricted to one path, as a plain module (``model(x)``), for BatchNorm calibration."""

    def __init__(self, supernet: SupernetBase, path: Path):
        super().__init__()
        self.supernet = supernet
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, *self.path)


class SupernetEvaluator(Evaluator):
    name = "supernet"
    measures_accuracy = True

    def __init__(self, bench: Workbench, cfg: SupernetEvaluatorConfig, sampler: Sampler):
        super().__init__(bench)
        self.cfg, self.sampler = cfg, sampler
        with seeded(derive_seed(bench.seed, _INIT_STREAM), bench.device):
            model = bench.space.build_supernet(bench.model, bench.data.num_classes, bench.data.in_channels)
        self.model: SupernetBase = bench.place(model)  # type: ignore[assignment]
        self.ready = False

    def sample_path(self, rng: random.Random) -> Path:
        return path_of(self.sampler.sample(rng), self.bench)

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

    def score_one(self, genotype: Any) -> Score:
        clock = Stopwatch()
        path = path_of(genotype, self.bench)
        images = 0
        if self.cfg.calibration_batches:  # the same training batches for every candidate
            with seeded(genotype_seed(self.bench.seed, genotype, self.bench.space), self.bench.device):  # stochastic ops (noise)
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
