"""The structured config of ``nas-rank`` and its start-up validation.

A ranking needs what a search's evaluators need — the data and its search split (the shared
``data`` group), the op space, the network sizes (``model``: the supernet's and the discrete
networks' width, depth and nodes), the seed and the batch — plus the genotypes to score and the
evaluators to score them with, each with the same settings a discrete search gives it
(``train.*``, ``supernet.*``, ``zero_cost.*``; ``nas.evaluate.config``). Every bad value fails with
one ``ConfigError`` line (exit code 2) before any data is read or anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from nas.config import MAX_SEED, DataConfig, check, check_limits, option, to_validated
from nas.evaluate.config import SupernetEvaluatorConfig, TrainEvaluatorConfig, ZeroCostEvaluatorConfig
from nas.evaluate.factory import EVALUATOR_NAMES
from nas.evaluate.zero_cost import PROXIES
from nas.search.config import SpaceConfig, SupernetConfig


@dataclass
class GenotypeSetConfig:
    """The genotypes to score: every source given, in this order (at least two genotypes in all)."""

    folder: str | None = option(None, free="a path; every genotype.json below it is read")
    names: list[str] = option(free="published names, genotype files or run directories, or Genotype(...) texts; "
                                   "each checked when it is read", factory=list)
    random: int = option(0, ge=0, le=1_000_000)  # this many random cells, drawn under the rules below
    k: int = option(2, ge=1, le=2)  # parents per node of the random cells (and the supernet's paths)
    max_skip: int | None = option(None, ge=0)  # at most this many skip_connect in their normal cell

    def validate(self) -> None:
        check(self.folder is not None or self.names or self.random,
              "genotypes: give genotypes.folder=<dir>, genotypes.names=[...] or genotypes.random=<N>")


@dataclass
class RankConfig:
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: SupernetConfig = field(default_factory=SupernetConfig)
    genotypes: GenotypeSetConfig = field(default_factory=GenotypeSetConfig)
    # Columns of the table: train, supernet, zero_cost (the proxy zero_cost.proxy names) or a proxy's name.
    evaluators: list[str] = option(choices=EVALUATOR_NAMES, each=True, factory=lambda: ["train", *PROXIES])
    train: TrainEvaluatorConfig = field(default_factory=TrainEvaluatorConfig)
    supernet: SupernetEvaluatorConfig = field(default_factory=SupernetEvaluatorConfig)
    zero_cost: ZeroCostEvaluatorConfig = field(default_factory=ZeroCostEvaluatorConfig)
    seed: int = option(0, ge=0, le=MAX_SEED)
    batch_size: int = option(32, ge=2, le=65_536)
    max_steps_per_epoch: int | None = option(None, ge=1)  # cap the training steps of an epoch (smoke tests)
    device: str = option("auto", pattern=r"auto|cpu|cuda(:\d+)?")
    threads: int | None = option(None, ge=1, le=1024)
    channels_last: bool = option(False, free="a switch")
    overwrite: bool = option(False, free="a switch")
    resume: ClassVar[None] = None  # a ranking is not resumed: nothing to continue (nas.cli.run_command asks)

    def validate(self) -> None:
        self.data.check_root()
        check(len(self.evaluators) > 0, "evaluators must name at least one evaluator")
        columns = [self.zero_cost.proxy if name == "zero_cost" else name for name in self.evaluators]
        twice = sorted({c for c in columns if columns.count(c) > 1})
        check(not twice, f"evaluators lists {', '.join(twice)} twice")


def register_rank_configs() -> None:
    """Make the schema known to Hydra (``rank.yaml`` lists it first in its defaults)."""
    ConfigStore.instance().store(name="rank_schema", node=RankConfig)


def to_rank_config(cfg: DictConfig | RankConfig) -> RankConfig:
    return to_validated(cfg, check_limits)


__all__ = ["GenotypeSetConfig", "RankConfig", "register_rank_configs", "to_rank_config"]
