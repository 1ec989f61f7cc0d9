"""What every search algorithm is given and may do, and the config keys that one-shot methods share.

An algorithm is a hook of the engine (per-step and per-epoch callbacks, a stop condition, its own
checkpoint state) that also decides what one search step does. It never sees the run: it is
handed a narrow ``SearchContext`` — the supernet, the bilevel stepper, the TensorBoard logger and
the counters — once the supernet exists. Before that, it is asked for its weighting rule (how
alphas become op weights) and how the alphas start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import MISSING

from nas.config import check, option
from nas.engine import Counters, Hook, Task
from nas.spaces.weighting import WeightingRule

if TYPE_CHECKING:
    from pathlib import Path

    from nas.distributed import World
    from nas.logging import TBLogger
    from nas.search.bilevel import Batch, Bilevel
    from nas.spaces.darts_supernet import Supernet


CHECKPOINT_FORMAT = "nas-search/2"  # every search's checkpoints, whichever task wrote them


def algorithm_name(name: str) -> Any:
    """The ``name`` field of an algorithm's config: its registered name."""
    return option(name, free="the registered name, checked against the algorithm registry")


@dataclass
class AlgorithmConfig:
    """Every algorithm's config carries its registered name; the rest belongs to the algorithm."""

    name: str = algorithm_name(MISSING)


@dataclass
class EarlyStopConfig:
    """DARTS+ (Liang et al., 2019): end the search before the derived cell collapses."""

    max_skip: int | None = option(None, ge=0)  # stop once the derived normal cell holds this many skip_connect
    stable_epochs: int | None = option(None, ge=1)  # stop once the argmax ops have not changed for this many epochs


@dataclass
class OneShotConfig(AlgorithmConfig):
    """Keys of every supernet-based algorithm: the collapse remedies, which combine with any of them
    (README, "Collapse-resistant search"); all are off by default."""

    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    partial_channels: int = option(1, ge=1, le=64)  # PC-DARTS: 1/K of the channels enter each mixed edge
    edge_norm: bool | None = option(None, free="a switch; None: on with partial channels")  # PC-DARTS
    perturb: str = option("none", choices=("none", "uniform"))  # SDARTS-RS noise on the alphas, weight step only
    perturb_epsilon: float = option(0.03, ge=0.0, le=10.0)  # half-width of the uniform noise
    aux_skip: bool = option(False, free="a switch")  # DARTS-: an identity path on every edge, weight 1 → 0

    def validate_with(self, cfg: Any) -> None:
        """Checks against the whole search config (``nas.search.config.SearchConfig``)."""
        check(cfg.model.channels % self.partial_channels == 0,
              f"algorithm.partial_channels={self.partial_channels} must divide model.channels={cfg.model.channels}")


@dataclass
class BilevelConfig(OneShotConfig):
    """Keys of the algorithms whose alpha step may be unrolled (second order)."""

    order: int = option(1, choices=(1, 2))  # 1: first order, 2: unrolled second order
    hessian: str = option("finite_difference", choices=("finite_difference", "exact"))  # 2nd order's Hessian product
    fd_epsilon: float = option(0.01, gt=0.0, le=1.0)  # finite-difference radius (DARTS: 0.01 / ‖∇‖)


@dataclass
class SearchContext:
    """What an algorithm may touch: the supernet, the bilevel stepper, the logger and the counters."""

    supernet: Supernet
    bilevel: Bilevel
    tb: TBLogger
    counters: Counters
    log_every: int
    train_batches: Callable[[], Iterator[Batch]]  # unaugmented-order training batches (BatchNorm calibration)

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.supernet.op_names


class Algorithm(Hook):
    """A search method; the defaults are DARTS: softmax weights, alphas at 1e-3·N(0, 1), and each
    step an alpha step on a validation batch followed by a weight step on a training batch."""

    name = "algorithm"  # the key of its state in checkpoints
    trains_supernet = True  # False: a method that never trains a supernet (random sampling)
    alpha_init_std = 1e-3

    def __init__(self, cfg: AlgorithmConfig):
        self.cfg = cfg
        self.ctx: SearchContext

    def task(self, cfg: Any, world: World, device: str, counters: Counters, tb: TBLogger, run_dir: Path,
             resume_state: dict[str, Any] | None) -> Task | None:
        """The engine task that runs this method; None (the default): the supernet search of
        ``nas.search.task``. A method that trains no supernet (a discrete search, a random draw)
        returns its own task, and the engine runs it like any other."""
        return None

    def make_rule(self) -> WeightingRule:
        """The weighting rule of the supernet (asked once, before the supernet is built)."""
        return WeightingRule()

    def regularizer(self) -> Callable[[], torch.Tensor] | None:
        """An extra loss on the alphas, added to L_val in the alpha step (None: none)."""
        return None

    def setup(self, ctx: SearchContext) -> None:
        """Called once the supernet, optimizers and logger exist, before the first step."""
        self.ctx = ctx

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        return self.ctx.bilevel.step(train, val)

    def before_evaluate(self) -> None:
        """At the end of each epoch, before the supernet is evaluated."""

    def summary(self) -> dict[str, Any]:
        """Algorithm-specific entries for summary.json."""
        return {}
