"""The random baseline (``algorithm=random``): a genotype drawn uniformly under derivation's rules.

Every search has to beat random cells (DARTS reports random cells at 3.29 % on CIFAR-10). Nothing
is trained: the run draws one genotype of the space uniformly under its rules (DARTS: k parents per
node, no ``none``, at most ``derive.max_skip`` skip connections in the normal cell), seeded by ``seed``, and writes it like a search's result, so
that "searched vs random at equal retrain budget" is the same ``nas-train genotype=<run dir>``
command for both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.checkpoint import write_json
from nas.config import summary_of
from nas.distributed import World
from nas.engine import EpochTimer
from nas.genotype import save_json
from nas.logging import TBLogger
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import Algorithm, AlgorithmConfig, algorithm_name
from nas.search.diagnostics import param_free_scalars
from nas.spaces import Sampler, benchmark_of, make_space, rules_of


@dataclass
class RandomConfig(AlgorithmConfig):
    name: str = algorithm_name("random")


@register_algorithm("random", RandomConfig)
class RandomCell(Algorithm):
    trains_supernet = False

    def run(self, cfg: Any, run_dir: Path, world: World) -> dict[str, Any]:
        timer = EpochTimer()
        space = make_space(cfg.space)
        genotype = Sampler(space, cfg.model, rules_of(cfg)).sample(random.Random(cfg.seed))
        diagnostics = param_free_scalars(genotype, space)
        meta = {"algorithm": "random", "space": list(space.op_names), "space_name": cfg.space.name, "seed": cfg.seed,
                "k": cfg.derive.k, "config": summary_of(cfg)}
        summary = {
            "genotype": genotype.to_dict(), "genotype_text": genotype.to_text(), "epochs": 0, "steps": 0,
            "final_val_acc": None, "final_val_loss": None, "stop_reason": "random sample", "seed": cfg.seed,
            "algorithm": "random", "run_dir": str(run_dir), "diagnostics": [{"epoch": 0, **diagnostics}],
            "history": [], "wall_time_s": timer.wall_time, "world_size": world.size, "space": cfg.space.name,
            **benchmark_of(space, genotype),
        }
        if world.is_main:
            save_json(run_dir / "genotype.json", genotype, meta)
            write_json(run_dir / "summary.json", summary)
            with TBLogger(run_dir / "tb") as tb:
                tb.scalars(diagnostics, 0)
                if cfg.log.images:
                    tb.genotype(genotype, space.images(genotype), 0)
                tb.text("genotype_final", f"```\n{genotype.to_text()}\n```", 0)
        return summary
