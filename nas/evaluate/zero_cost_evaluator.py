"""The ``zero_cost`` evaluator: a proxy of the untrained network (``nas.evaluate.zero_cost``), the
train-less estimate that ranks a cell in a fraction of a second.

Each candidate's discrete network (the same network the ``train`` evaluator would train, with the
same initial weights: both are seeded by the genotype) is scored by one proxy on the first
``batches`` training batches, the same batches for every candidate, and the scores are averaged. The
proxies leave the network as they found it and never touch the global RNG. How far a proxy can be
trusted on a given dataset is what ``nas-rank`` measures.
"""

from __future__ import annotations

import math
from itertools import islice

from nas.evaluate.base import Evaluator, Score, Stopwatch, Workbench, genotype_seed, seeded
from nas.evaluate.config import ZeroCostEvaluatorConfig
from nas.evaluate.zero_cost import proxy_score
from nas.genotype import Genotype


class ZeroCostEvaluator(Evaluator):
    def __init__(self, bench: Workbench, cfg: ZeroCostEvaluatorConfig, proxy: str | None = None):
        super().__init__(bench)
        self.proxy = proxy or cfg.proxy
        self.name = self.proxy
        self.batches = list(islice(bench.data.train.batches(0), cfg.batches))

    def score_one(self, genotype: Genotype) -> Score:
        clock = Stopwatch()
        model = self.bench.network(genotype)
        with seeded(genotype_seed(self.bench.seed, genotype, self.bench.space), self.bench.device):  # stochastic ops (noise)
            values = [proxy_score(self.proxy, model, batch) for batch in self.batches]
        value = math.nan if any(math.isnan(v) for v in values) else sum(values) / len(values)
        # SynFlow reads one all-ones image per call; the others read the whole batch.
        images = len(values) if self.proxy == "synflow" else sum(len(y) for _, y in self.batches)
        return Score(value, clock.elapsed, images)
