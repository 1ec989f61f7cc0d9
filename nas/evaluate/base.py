"""What every evaluator shares: the interface (genotypes in, scores with their cost out) and the bench.

A discrete search is only as good as the estimate of how well a cell trains, and the estimates
differ in cost by orders of magnitude: training it for a few epochs, scoring it with weights
inherited from a shared supernet, or a zero-cost proxy at initialisation. To compare them fairly
(``nas-rank``) and to swap them under a strategy (``algorithm.evaluator``), they share one interface:

* ``score(genotypes) -> [Score]``: one score per genotype (higher is better) and what it cost, in
  seconds and in images passed through a network;
* ``prepare()``: one-time work shared by every candidate (training the supernet), whose cost is
  ``setup``; ``ready`` says whether it is done, so that a resumed search does not redo it;
* ``state_dict()`` / ``load_state_dict()``: what a checkpoint must keep (the trained supernet).

Scores are a function of the genotype alone: every network an evaluator builds is initialised
from a seed derived from the run's seed and the genotype (``genotype_seed``), and every batch it
sees is fixed by the data's seed. A genotype therefore gets the same score whenever, and in
whichever order, it is evaluated — a resumed search replays exactly, and a cache of scores is exact.

The ``Workbench`` is the data and sizes every evaluator works on: the search's split of the training
images (the weight part to train on, the held-out alpha part to score on; the test split is never
touched), the op space and the network dimensions of the search (``model.*``).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import nn

from nas.data import SearchData, build_search_data
from nas.data.loader import derive_seed
from nas.genotype import Genotype
from nas.spaces import SearchSpace, make_space
from nas.spaces.darts import canonical

Batch = tuple[torch.Tensor, torch.Tensor]
Stop = Callable[[], bool]


@dataclass(frozen=True)
class Cost:
    """What an evaluation spent: wall-clock seconds and images passed through a network."""

    seconds: float = 0.0
    images: int = 0


@dataclass(frozen=True)
class Score:
    """One genotype's score (higher is better; NaN when it could not be computed) and its cost."""

    value: float
    seconds: float
    images: int

    @property
    def rank_value(self) -> float:
        """The value to rank by: a score that could not be computed (NaN) ranks below every other."""
        return -math.inf if math.isnan(self.value) else self.value


@dataclass
class Workbench:
    """The data, space and sizes every evaluator works on (one per search or ``nas-rank`` run)."""

    data: SearchData
    space: SearchSpace
    model: Any  # the search's ``model`` sizes (the supernet's; candidates are built at them)
    seed: int
    device: torch.device
    channels_last: bool = False
    max_steps_per_epoch: int | None = None

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.space.op_names

    def steps_per_epoch(self) -> int:
        """Training steps of one epoch over the weight part (capped by ``max_steps_per_epoch``)."""
        steps = len(self.data.train)
        return min(steps, self.max_steps_per_epoch) if self.max_steps_per_epoch else steps

    def place(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def network(self, genotype: Any) -> nn.Module:
        """The discrete network of ``genotype`` at the search's size (no auxiliary head), initialised
        from the genotype's own seed."""
        with seeded(genotype_seed(self.seed, genotype, self.space), self.device):
            net = self.space.network_at_search_size(genotype, self.model, self.data.num_classes,
                                                    self.data.in_channels)
        return self.place(net)

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of one training epoch (augmented, seeded by the data seed: the same for every
        candidate), capped at ``steps_per_epoch``."""
        return islice(self.data.train.batches(epoch), self.steps_per_epoch())


def build_workbench(cfg: Any, device: torch.device) -> Workbench:
    """The workbench of a config with ``data``, ``space``, ``model``, ``batch_size``, ``seed``,
    ``channels_last`` and ``max_steps_per_epoch`` (a search's or ``nas-rank``'s)."""
    d = cfg.data
    data = build_search_data(name=d.name, root=d.root, download=d.download, train_portion=d.train_portion,
                             image_size=d.image_size, batch_size=cfg.batch_size, seed=cfg.seed, device=device,
                             limit=d.limit, channels_last=cfg.channels_last)
    return Workbench(data=data, space=make_space(cfg.space), model=cfg.model, seed=cfg.seed, device=device,
                     channels_last=cfg.channels_last, max_steps_per_epoch=cfg.max_steps_per_epoch)


class Evaluator:
    """Genotypes in, scores out. Subclasses score one genotype (``score_one``); those with shared
    one-time work override ``prepare`` and start with ``ready = False``."""

    name = "evaluator"
    measures_accuracy = False  # True: the score is an accuracy on the held-out split

    def __init__(self, bench: Workbench):
        self.bench = bench
        self.ready = True
        self.setup = Cost()

    def prepare(self, stop: Stop | None = None) -> None:
        """One-time work shared by every candidate; returns early, still not ready, once ``stop()``."""

    def score(self, genotypes: Sequence[Genotype]) -> list[Score]:
        if not self.ready:
            raise RuntimeError(f"the {self.name} evaluator must be prepared before it scores")
        return [self.score_one(g) for g in genotypes]

    def score_one(self, genotype: Genotype) -> Score:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


# -- genotypes as keys and seeds -------------------------------------------------------------------------
def genotype_key(genotype: Any, space: SearchSpace | None = None) -> str:
    """A text that identifies the network a genotype builds (the cache key of a search); without a
    space, a DARTS genotype."""
    return space.key(genotype) if space is not None else canonical(genotype).to_text()


def genotype_seed(seed: int, genotype: Any, space: SearchSpace | None = None) -> int:
    """The seed of every network an evaluator builds for ``genotype``: a function of the run's seed and
    the genotype alone, so that its score does not depend on when it was evaluated."""
    return derive_seed(seed, zlib.crc32(genotype_key(genotype, space).encode()))


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block on torch's global RNG seeded with ``seed``, and give the caller's RNG back after it
    (a search's own random streams are not disturbed by evaluating a candidate)."""
    devices = [torch.cuda.current_device()] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed % 2**63)
        yield


# -- measuring -------------------------------------------------------------------------------------------
class Stopwatch:
    """Seconds since it started (``elapsed``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def finite(value: float | None) -> float | None:
    """A number JSON can hold: None for NaN and ±inf (result files refuse them)."""
    return value if value is not None and math.isfinite(value) else None


@torch.no_grad()
def held_out_accuracy(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[Batch],
                      limit: int | None = None) -> tuple[float, int]:
    """(accuracy, images) of ``forward`` over the first ``limit`` of ``batches`` (None: all of them)."""
    correct, seen = 0, 0
    for x, y in islice(batches, limit):
        correct += int((forward(x).argmax(1) == y).sum())
        seen += len(y)
    return correct / max(seen, 1), seen
