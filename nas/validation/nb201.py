"""NAS-Bench-201 validation: what each method finds, scored against the table's 15,625 known answers.

Tabular part. Each discrete strategy (random search, regularised evolution, REINFORCE, TPE) runs
on the table itself: a query returns a cell's ``val_acc`` (the ``table`` evaluator's score), the
strategy keeps the best cell by validation accuracy, and its ``test_acc`` — looked up afterwards,
never shown to the strategy — is the result. A run of ``max(budgets)`` queries gives every smaller
budget as its best-so-far (a search stopped after n queries holds exactly that cell). Repeated
proposals count as queries, as in a real search. Beside them: the optimum, the mean cell, and
random search's exact expectation from the table (``BenchmarkTable.expected_random_search``), which
the measured random-search mean must match within its standard error: that checks the harness.

The strategies here are the very classes ``nas-search algorithm=<name> algorithm.evaluator=table``
runs (``nas.search.algorithms``), driven in-process because hundreds of seeds × hundreds of
queries would otherwise be dominated by process start-up; tests/test_validation_nb201.py checks
that a driven run equals the command's run.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from nas.spaces import Rules, Sampler, make_space
from nas.spaces.table import BenchmarkTable, load_table

STRATEGIES = ("random_search", "evolution", "reinforce", "tpe")


def space_of(table: str, ops: Sequence[str] | None = None) -> Any:
    return make_space(SimpleNamespace(name="nb201", ops=list(ops) if ops else None, table=table, table_dataset=None))


def strategy(name: str) -> Any:
    from nas.search.algorithms import algorithm_spec

    spec = algorithm_spec(name)
    return spec.create(spec.config(evaluator="table"))


def best_so_far(name: str, seed: int, budget: int, table: str, ops: Sequence[str] | None = None) -> list[str]:
    """The best-by-val cell (its text) after each of ``budget`` queries of strategy ``name``."""
    space = space_of(table, ops)
    sampler = Sampler(space, SimpleNamespace(nodes=3), Rules())
    search = strategy(name)
    search.begin(sampler, seed)
    best, best_val, curve = None, -math.inf, []
    for _ in range(budget):
        cell = search.propose()
        val = space.table_val_acc(cell)  # what the table evaluator scores, and nothing else
        search.observe(cell, val / 100.0)
        if val > best_val:
            best, best_val = cell.to_text(), val
        curve.append(best)
    return curve


def summarise(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 3), "std": round(std, 3), "se": round(std / math.sqrt(n), 3),
            "n": n}


def tabular_table(table: str, strategies: Sequence[str], seeds: Sequence[int], budgets: Sequence[int],
                  jobs: int = 1) -> dict[str, Any]:
    """Per strategy and budget: the test accuracy (%) of the best-by-val cell, mean ± std over seeds."""
    bench: BenchmarkTable = load_table(table)
    top = max(budgets)
    out: dict[str, Any] = {
        "table": bench.source, "cells": len(bench), "optimum_test_acc": round(bench.optimum, 3),
        "mean_cell_test_acc": round(bench.mean_test, 3), "seeds": len(seeds), "budgets": list(budgets),
        "random_search_expected": {str(n): round(bench.expected_random_search(n), 3) for n in budgets},
        "strategies": {},
    }
    for name in strategies:
        curves = _map(jobs, [(name, seed, top, table) for seed in seeds])
        per_budget = {}
        for n in budgets:
            tests = [bench.lookup(curve[n - 1]).test_acc for curve in curves]
            per_budget[str(n)] = summarise(tests)
        out["strategies"][name] = per_budget
    rs = out["strategies"].get("random_search")
    if rs:  # the harness check: the measured random-search mean against its closed form
        out["random_search_check"] = {
            n: {"measured": rs[n]["mean"], "expected": out["random_search_expected"][n],
                "within_2se": abs(rs[n]["mean"] - out["random_search_expected"][n]) <= 2 * max(rs[n]["se"], 1e-9)}
            for n in rs}
    return out


def _run(task: tuple) -> list[str]:
    return best_so_far(*task)


def _map(jobs: int, tasks: list[tuple]) -> list[list[str]]:
    if jobs == 1:
        return [_run(t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_run, tasks, chunksize=max(1, len(tasks) // (4 * jobs))))


def random_cells(seeds: Sequence[int], table: str) -> list[str]:
    """One uniformly random cell per seed (the baseline column of the one-shot table)."""
    sampler = Sampler(space_of(table), SimpleNamespace(nodes=3), Rules())
    return [sampler.sample(random.Random(seed)).to_text() for seed in seeds]
