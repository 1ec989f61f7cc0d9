"""The ``table`` evaluator: a cell's score is its validation accuracy in the space's tabular benchmark.

No network is built or trained: a query costs nothing but a lookup, so the budget of a discrete
search (``algorithm.budget.evaluations``) counts queries, the way the NAS-Bench-201 paper's
tabular baselines count them. Only ``val_acc`` is read — the accuracy on the benchmark's
validation split, which a search may select on; ``test_acc`` is reported in ``summary.json``
(``benchmark``) and never reaches a strategy.
"""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError
from nas.evaluate.base import Evaluator, Score, Workbench


class TableEvaluator(Evaluator):
    name = "table"
    measures_accuracy = True

    def __init__(self, bench: Workbench):
        super().__init__(bench)
        if not getattr(bench.space, "table_spec", None):
            raise ConfigError(f"algorithm.evaluator=table needs a space with a table of known answers "
                              f"(space={bench.space.name} has none; NAS-Bench-201: space=nb201 space.table=...)")

    def score_one(self, genotype: Any) -> Score:
        return Score(self.bench.space.table_val_acc(genotype) / 100.0, 0.0, 0)
