"""The random baseline (``algorithm=random``): a genotype drawn uniformly under derivation's rules.

Every search has to beat random cells (DARTS reports random cells at 3.29 % on CIFAR-10). Nothing
is trained: the run draws one genotype of the space uniformly under its rules (DARTS: k parents per
node, no ``none``, at most ``derive.max_skip`` skip connections in the normal cell), seeded by ``seed``,
and writes it like a search's result, so that "searched vs random at equal retrain budget" is the
same ``nas-train genotype=<run dir>`` command for both. It is a task of the engine with no steps:
its one epoch draws nothing more, and the engine writes the checkpoint and ``summary.json`` as for
every other run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.config import summary_of
from nas.distributed import World
from nas.engine import Counters, Engine, Hook
from nas.genotype import save_json
from nas.logging import TBLogger
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import CHECKPOINT_FORMAT, Algorithm, AlgorithmConfig, algorithm_name
from nas.search.diagnostics import param_free_scalars
from nas.spaces import Sampler, benchmark_of, make_space, rules_of


@dataclass
class RandomConfig(AlgorithmConfig):
    name: str = algorithm_name("random")


@register_algorithm("random", RandomConfig)
class RandomCell(Algorithm):
    trains_supernet = False

    def task(self, cfg: Any, world: World, device: str, counters: Counters, tb: TBLogger, run_dir: Path,
             resume_state: dict[str, Any] | None) -> RandomCellTask:
        return RandomCellTask(cfg, world, counters, tb, run_dir)


class Drawn(Hook):
    """The run ends once its one epoch is done: a random draw has nothing to continue."""

    def stop_reason(self, engine: Engine) -> str | None:
        return "random sample" if engine.counters.epoch else None


class RandomCellTask:
    """One uniform draw from the space, written as a search's result (``nas.engine.Task``)."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, cfg: Any, world: World, counters: Counters, tb: TBLogger, run_dir: Path):
        self.cfg, self.world, self.tb, self.run_dir = cfg, world, tb, Path(run_dir)
        self.space = make_space(cfg.space)
        self.genotype = Sampler(self.space, cfg.model, rules_of(cfg)).sample(random.Random(cfg.seed))
        counters.epochs = 1
        self.hooks: list[Hook] = [Drawn()]

    def steps_per_epoch(self) -> int:
        return 0

    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        return iter(())

    def step(self, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        raise AssertionError("a random draw has no steps")

    def end_train_epoch(self) -> None:
        """Nothing is trained."""

    def evaluate(self, engine: Engine) -> dict[str, float]:
        return {}

    def end_epoch(self, engine: Engine, metrics: dict[str, float]) -> Sequence[str]:
        return ()

    def publish(self, engine: Engine) -> None:
        """``genotype.json``, the cell's parameter-free counts and its drawing in TensorBoard."""
        if not self.world.is_main:
            return
        save_json(self.run_dir / "genotype.json", self.genotype, {
            "algorithm": "random", "space": list(self.space.op_names), "space_name": self.cfg.space.name,
            "seed": self.cfg.seed, "k": self.cfg.derive.k, "config": summary_of(self.cfg)})
        self.tb.scalars(param_free_scalars(self.genotype, self.space), 0)
        if self.cfg.log.images:
            self.tb.genotype(self.genotype, self.space.images(self.genotype), 0)
        self.tb.text("genotype_final", f"```\n{self.genotype.to_text()}\n```", 0)

    def summary(self, engine: Engine) -> dict[str, Any]:
        return {
            "genotype": self.genotype.to_dict(), "genotype_text": self.genotype.to_text(),
            "final_val_acc": None, "final_val_loss": None, "seed": self.cfg.seed, "algorithm": "random",
            "diagnostics": [{"epoch": 0, **param_free_scalars(self.genotype, self.space)}],
            "space": self.cfg.space.name, **benchmark_of(self.space, self.genotype),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.genotype = self.space.from_dict(state["genotype"])

    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        return ()
