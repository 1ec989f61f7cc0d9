"""The ``train`` evaluator: a short retrain of the discrete network, the most faithful and the dearest
estimate.

Each candidate's network (the search's size, CIFAR stem, no auxiliary head) is trained from scratch
for ``epochs`` epochs on the weight part of the search split — the same augmented batches, in the
same order, for every candidate — and scored by its accuracy on the held-out part. The step is the
retrain's own (``nas.train.task.sgd_step``: forward, loss, backward, clip, SGD) and so is the cosine
schedule, so "E-epoch training" here is the retrain recipe cut short, not a second recipe. The epoch
count is the fidelity: 1 epoch ranks coarsely and cheaply, more epochs rank closer to a full retrain.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.evaluate.base import Evaluator, Score, Stopwatch, Workbench, genotype_seed, held_out_accuracy, seeded
from nas.evaluate.config import TrainEvaluatorConfig
from nas.genotype import Genotype
from nas.train.config import TrainConfig, TrainOptimConfig
from nas.train.task import build_scheduler, sgd_step


def recipe(cfg: TrainEvaluatorConfig) -> TrainConfig:
    """The retrain config the short training follows: no auxiliary loss, drop path or cutout (a few
    epochs are too short for regularisers to pay), SGD with cosine annealing to 0."""
    optim = TrainOptimConfig(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule="cosine",
                             lr_min=0.0, grad_clip=cfg.grad_clip)
    return TrainConfig(epochs=cfg.epochs, optim=optim, aux_weight=0.0, drop_path_prob=0.0)


class TrainEvaluator(Evaluator):
    name = "train"
    measures_accuracy = True

    def __init__(self, bench: Workbench, cfg: TrainEvaluatorConfig):
        super().__init__(bench)
        self.cfg = cfg
        self.recipe = recipe(cfg)

    def score_one(self, genotype: Genotype) -> Score:
        clock, images = Stopwatch(), 0
        model = self.bench.network(genotype)
        o = self.recipe.optim
        optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        scheduler = build_scheduler(optimizer, self.recipe)
        criterion = nn.CrossEntropyLoss()
        with seeded(genotype_seed(self.bench.seed, genotype, self.bench.space), self.bench.device):  # stochastic ops (noise)
            for epoch in range(self.cfg.epochs):
                model.train()
                for batch in self.bench.train_batches(epoch):
                    sgd_step(model, model, optimizer, criterion, batch, 0.0, self.recipe)
                    images += len(batch[1])
                scheduler.step()
            model.eval()
            accuracy, seen = held_out_accuracy(lambda x: model(x)[0], self.bench.data.val_eval.batches(0),
                                               self.cfg.eval_batches)
        return Score(accuracy, clock.elapsed, images + seen)
