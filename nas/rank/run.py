"""One ranking from config to results: ``run_rank(cfg, run_dir)`` is a plain function (the Hydra entry
point only calls it), so tests and notebooks rank without a command line.

The genotypes are collected and checked first, then the run directory is taken (a directory that
holds results is refused unless ``overwrite=true``), then each evaluator in turn prepares (the
supernet trains once) and scores every genotype. The run leaves ``scores.json`` and ``scores.csv``
(the table, rewritten after each evaluator so a long ranking shows its progress) and ``summary.json``
(the cost of each evaluator and the correlation of every pair), beside ``.hydra/`` and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.checkpoint import write_json
from nas.config import summary_of
from nas.engine import EpochTimer, RunDirectory, seed_everything, select_device
from nas.evaluate.base import build_workbench
from nas.evaluate.factory import make_evaluator
from nas.ops import resolve_space
from nas.rank.config import RankConfig
from nas.rank.genotypes import check_fit, collect
from nas.rank.table import Column, correlations, write_table
from nas.spaces import make_space

log = logging.getLogger("nas.rank")


def run_rank(cfg: RankConfig, run_dir: str | Path, changed: dict[str, Any] | None = None,
             on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Score ``cfg.genotypes`` with every evaluator of ``cfg.evaluators`` into ``run_dir``; returns what
    ``summary.json`` holds. ``changed`` is unused (a ranking is never resumed); ``on_start(run_dir)``
    runs once the directory is this run's."""
    run_dir = Path(run_dir)
    op_names = resolve_space(cfg.space.name, cfg.space.ops)
    named = collect(cfg.genotypes, op_names, cfg.model.nodes, cfg.seed)
    if "supernet" in cfg.evaluators:
        check_fit(named, make_space(cfg.space), cfg.model)
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    timer = EpochTimer()
    with RunDirectory(run_dir).acquire(cfg.overwrite):
        if on_start is not None:
            on_start(run_dir)
        bench = build_workbench(cfg, device)
        columns: list[Column] = []
        for name in cfg.evaluators:
            evaluator = make_evaluator(name, cfg, bench, cfg.genotypes.k, cfg.genotypes.max_skip)
            evaluator.prepare()
            scores = []
            for i, (label, genotype) in enumerate(named):
                score = evaluator.score_one(genotype)
                scores.append(score)
                log.info("%s %d/%d %s: %.4g (%.2f s)", evaluator.name, i + 1, len(named), label, score.value,
                         score.seconds)
            columns.append(Column(evaluator.name, scores, evaluator.setup, evaluator.measures_accuracy))
            write_table(run_dir, named, columns)
        summary = {
            "genotypes": [label for label, _ in named],
            "evaluators": [c.cost() for c in columns],
            "correlations": correlations(columns),
            "table": {"json": str(run_dir / "scores.json"), "csv": str(run_dir / "scores.csv")},
            "run_dir": str(run_dir), "seed": cfg.seed, "device": str(device), "threads": torch.get_num_threads(),
            "wall_time_s": timer.wall_time, "config": summary_of(cfg),
        }
        write_json(run_dir / "summary.json", summary)
    return summary
