"""What the discrete searches share (``algorithm=evolution|reinforce|random_search``): the keys, the cell
space they move in, and the task — evaluate, record, checkpoint, stop — that runs a strategy on the engine.

A strategy is three methods: ``propose()`` the next genotype, ``observe(genotype, score)`` its score,
and its state (``state_dict``), which a checkpoint saves after every evaluation. Everything else is
here, once:

* the candidates are the space's genotypes (``nas.spaces``: its categorical choices under the rules
  of derivation, ``derive.k`` and ``derive.max_skip``), so every strategy runs on every space;
* an evaluator (``algorithm.evaluator``: ``train``, ``supernet`` or ``zero_cost``, ``nas.evaluate``)
  scores them; a genotype seen before gets its recorded score again, at no cost (scores are a
  function of the genotype), and still counts as an evaluation, so a strategy that keeps
  proposing the same cells still ends;
* the budget is a number of evaluations and/or a wall time (``algorithm.budget``), whichever is
  spent first; the wall time counts the evaluator's setup (training the supernet) and every session
  of a resumed run;
* the run directory is a search's: ``genotype.json`` of the best cell (rewritten when it improves),
  ``summary.json`` with every evaluated genotype, its score and cost and the best-so-far curve,
  ``checkpoints/last.pt`` after every evaluation, TensorBoard scalars ``search/score`` and
  ``search/best`` against the evaluation count;
* SIGTERM/SIGINT end the run after the evaluation in progress, with a checkpoint, and
  ``nas-search resume=<run dir>`` continues the same population or policy: the strategy's random
  stream is in the checkpoint, and the scores replay, so the resumed run is the same run.

The run loop is the engine's (``nas.engine``), as for every other task: one evaluation is one step,
the whole budget one epoch, a checkpoint follows every step, the evaluator's one-time setup runs
before the first step (interruptible, like a step), and the wall-time budget is a stop condition.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas import checkpoint
from nas.config import check, option, summary_of
from nas.distributed import World
from nas.engine import Counters, Engine, Hook, NonFiniteLoss, prepare_process
from nas.evaluate.base import Cost, Evaluator, Score, build_workbench, finite, genotype_key
from nas.evaluate.config import (
    EVALUATORS,
    SupernetEvaluatorConfig,
    TrainEvaluatorConfig,
    ZeroCostEvaluatorConfig,
)
from nas.evaluate.factory import make_evaluator
from nas.genotype import save_json
from nas.logging import TBLogger
from nas.search.algorithms.base import CHECKPOINT_FORMAT, Algorithm, AlgorithmConfig
from nas.search.diagnostics import param_free_scalars
from nas.spaces import Sampler, benchmark_of, rules_of

log = logging.getLogger("nas.search")
EVALUATOR_FILE = "evaluator.pt"  # the evaluator's state (a trained supernet), beside last.pt
MAX_EVALUATIONS = 10_000_000  # also the length of the one epoch of a search with only a wall-time budget


@dataclass
class BudgetConfig:
    """When a discrete search ends: after this many evaluations or this much wall time, whichever first."""

    evaluations: int | None = option(100, ge=1, le=MAX_EVALUATIONS)
    seconds: float | None = option(None, gt=0.0)


@dataclass
class DiscreteConfig(AlgorithmConfig):
    """Keys of every discrete search: the evaluator, its settings and the budget."""

    evaluator: str = option("supernet", choices=EVALUATORS)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    train: TrainEvaluatorConfig = field(default_factory=TrainEvaluatorConfig)
    supernet: SupernetEvaluatorConfig = field(default_factory=SupernetEvaluatorConfig)
    zero_cost: ZeroCostEvaluatorConfig = field(default_factory=ZeroCostEvaluatorConfig)

    def validate_with(self, cfg: Any) -> None:
        check(self.budget.evaluations is not None or self.budget.seconds is not None,
              "algorithm.budget needs evaluations=<N> or seconds=<S> (or both): a search without a budget never ends")


def rng_state(rng: random.Random) -> list[Any]:
    """A ``random.Random``'s state as plain lists (a checkpoint loads it with weights_only=True)."""
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


class DiscreteSearch(Algorithm):
    """The base of every discrete strategy (no supernet is trained by the search: the ``supernet``
    evaluator trains its own). The strategy is a hook of its task's engine: its state (population,
    policy, random stream) is saved in every checkpoint under ``hooks/algorithm``."""

    trains_supernet = False

    def __init__(self, cfg: DiscreteConfig):
        super().__init__(cfg)
        self.cfg: DiscreteConfig = cfg

    # -- what a strategy implements -------------------------------------------------------------
    def begin(self, space: Sampler, seed: int) -> None:
        """Set up a fresh strategy over the space's choices (its random stream seeded by ``seed``)."""
        raise NotImplementedError

    def propose(self) -> Any:
        raise NotImplementedError

    def observe(self, genotype: Any, value: float) -> dict[str, float]:
        """Learn from a score (higher is better; -inf for one that could not be computed); returns
        scalars to log."""
        raise NotImplementedError

    # -- the task -------------------------------------------------------------------------------
    def task(self, cfg: Any, world: World, device: str, counters: Counters, tb: TBLogger, run_dir: Path,
             resume_state: dict[str, Any] | None) -> DiscreteTask:
        return DiscreteTask(self, cfg, world, device, counters, tb, run_dir)


@dataclass
class Record:
    """One evaluation of a search: what was scored, the score, what it cost, and whether it was a repeat."""

    genotype: Any
    value: float
    seconds: float
    images: int
    cached: bool

    def to_dict(self, index: int, best: float) -> dict[str, Any]:
        return {"index": index, "genotype": self.genotype.to_dict(), "score": finite(self.value),
                "seconds": self.seconds, "images": self.images, "cached": self.cached, "best_so_far": finite(best)}

    def to_state(self) -> list[Any]:
        """For a checkpoint: a score that could not be computed (-inf) is saved as None, never as inf."""
        return [self.genotype.to_dict(), finite(self.value), self.seconds, self.images, self.cached]


class DiscreteTask:
    """One discrete search as a task of the engine (``nas.engine.Task``): a step proposes a genotype,
    scores it (or recalls its score) and lets the strategy learn from it."""

    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_every = 1  # after every evaluation, whatever checkpoint.every_steps says

    def __init__(self, strategy: DiscreteSearch, cfg: Any, world: World, device: str, counters: Counters,
                 tb: TBLogger, run_dir: Path):
        check(world.size == 1, "a discrete search runs in one process; start it without torchrun")
        self.strategy, self.cfg, self.world, self.tb, self.run_dir = strategy, cfg, world, tb, Path(run_dir)
        a = cfg.algorithm
        self.bench = build_workbench(cfg, prepare_process(cfg, world, device))
        self.space = self.bench.space
        self.evaluator: Evaluator = make_evaluator(a.evaluator, a, self.bench, cfg.derive.k, cfg.derive.max_skip)
        self.records: list[Record] = []
        self.cache: dict[str, Record] = {}
        self.best: int | None = None  # index of the best record
        self.published: int | None = None  # the record genotype.json holds
        self.observed: dict[str, float] = {}  # the strategy's scalars after the last evaluation
        self.evaluator_saved = False  # whether its state (once prepared) is in EVALUATOR_FILE
        self.config = summary_of(cfg)
        counters.epochs = 1  # the whole budget is one epoch; ``epochs`` is the supernet evaluator's business
        strategy.begin(Sampler(self.space, cfg.model, rules_of(cfg)), cfg.seed)
        self.hooks: list[Hook] = [strategy, EvaluatorSetup(self), Budget(a.budget), EvaluationLog(self),
                                  BestCell(self)]

    # -- what the engine asks -------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        b = self.cfg.algorithm.budget
        return b.evaluations if b.evaluations is not None else MAX_EVALUATIONS

    def batches(self, epoch: int, start: int) -> Iterator[int]:
        return itertools.count(start)

    def step(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        """Propose, score (or recall), record, learn; the step's metric is its score when it is finite."""
        genotype = self.strategy.propose()
        key = genotype_key(genotype, self.space)
        if key in self.cache:
            record = Record(genotype, self.cache[key].value, 0.0, 0, cached=True)
        else:
            score: Score = self.evaluator.score([genotype])[0]
            record = Record(genotype, score.rank_value, score.seconds, score.images, cached=False)
            self.cache[key] = record
        self.add(record)
        self.observed = self.strategy.observe(genotype, record.value)
        return ({"search/score": torch.tensor(record.value)} if math.isfinite(record.value) else {}), 1

    def end_train_epoch(self) -> None:
        """Nothing: a discrete search has no schedule to advance."""

    def evaluate(self, engine: Engine) -> dict[str, float]:
        best = self.best_record.value if self.records else -math.inf
        return {"search/best": best} if math.isfinite(best) else {}

    def end_epoch(self, engine: Engine, metrics: dict[str, float]) -> Sequence[str]:
        return ()

    def publish(self, engine: Engine) -> None:
        self.write_best()

    def summary(self, engine: Engine) -> dict[str, Any]:
        best, curve = self.best_record, self.best_so_far()
        cost, setup = self.cost(), self.evaluator.setup
        if self.cfg.log.images:
            self.tb.genotype(best.genotype, self.space.images(best.genotype), len(self.records))
        self.tb.text("genotype_final", f"```\n{best.genotype.to_text()}\n```", len(self.records))
        return {
            "genotype": best.genotype.to_dict(), "genotype_text": best.genotype.to_text(),
            "final_val_acc": finite(best.value) if self.evaluator.measures_accuracy else None,
            "final_val_loss": None, "seed": self.cfg.seed, "algorithm": self.cfg.algorithm.name,
            "diagnostics": [{"epoch": 0, **param_free_scalars(best.genotype, self.space)}],
            "space": self.cfg.space.name, **benchmark_of(self.space, best.genotype),
            "device": str(self.bench.device), "evaluator": self.evaluator.name,
            "best": {"evaluation": self.best, "score": finite(best.value), "genotype_text": best.genotype.to_text()},
            "cost": {"seconds": cost.seconds, "images": cost.images, "setup_seconds": setup.seconds,
                     "setup_images": setup.images},
            "evaluations_done": len(self.records),
            "distinct_genotypes": len(self.cache),
            "best_so_far": [finite(v) for v in curve],
            "evaluations": [r.to_dict(i, b) for i, (r, b) in enumerate(zip(self.records, curve))],
            **self.strategy.summary(),
        }

    # -- results --------------------------------------------------------------------------------
    def add(self, record: Record) -> None:
        self.records.append(record)
        if self.best is None or record.value > self.records[self.best].value:
            self.best = len(self.records) - 1

    @property
    def best_record(self) -> Record:
        assert self.best is not None
        return self.records[self.best]

    def best_so_far(self) -> list[float]:
        return list(itertools.accumulate((r.value for r in self.records), max))

    def cost(self) -> Cost:
        """Seconds and images of the whole search so far: the evaluator's setup and every evaluation."""
        setup = self.evaluator.setup
        return Cost(setup.seconds + sum(r.seconds for r in self.records),
                    setup.images + sum(r.images for r in self.records))

    def write_best(self) -> None:
        """``genotype.json`` of the best cell, rewritten when it changed (called after a checkpoint, so
        that the results never run ahead of it)."""
        if self.best is None or self.best == self.published:
            return
        best = self.best_record
        save_json(self.run_dir / "genotype.json", best.genotype, {
            "algorithm": self.cfg.algorithm.name, "space": list(self.space.op_names),
            "space_name": self.cfg.space.name, "seed": self.cfg.seed, "k": self.cfg.derive.k,
            "evaluator": self.evaluator.name, "score": finite(best.value), "evaluation": self.best,
            "config": self.config})
        self.published = self.best

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The records, and whether the evaluator's state (a trained supernet, which never changes
        once it is ready) is in ``EVALUATOR_FILE`` beside the checkpoint, saved once."""
        return {"records": [r.to_state() for r in self.records], "evaluator_saved": self.evaluator_saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for genotype, value, seconds, images, cached in state["records"]:
            value = -math.inf if value is None else float(value)
            record = Record(self.space.from_dict(genotype), value, float(seconds), int(images), bool(cached))
            self.add(record)
            self.cache.setdefault(genotype_key(record.genotype, self.space), record)
        self.published = self.best
        if state["evaluator_saved"]:
            path = checkpoint.resolve(self.cfg.resume).parent / EVALUATOR_FILE
            self.evaluator.load_state_dict(checkpoint.load(path))
            self.evaluator_saved = True
        log.info("resumed %s after %d evaluations", self.cfg.algorithm.name, len(self.records))

    def save_evaluator(self) -> None:
        state = self.evaluator.state_dict()
        for name, tensor in state_tensors(state):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLoss(f"the {self.evaluator.name} evaluator's {name} became non-finite while it was "
                                    "prepared; nothing was saved (try a lower learning rate for it)")
        checkpoint.save(self.run_dir / "checkpoints" / EVALUATOR_FILE, {"format": f"{CHECKPOINT_FORMAT}/evaluator",
                                                                        **state})
        self.evaluator_saved = True

    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        """A checkpoint holds no tensors of its own (the evaluator's are checked when they are saved)."""
        return ()


def state_tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested state (dicts and lists), by its path."""
    if isinstance(state, torch.Tensor):
        yield prefix or "tensor", state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from state_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from state_tensors(value, f"{prefix}[{i}]")


class EvaluatorSetup(Hook):
    """Before the first evaluation: the evaluator's one-time work (training the supernet), with a
    checkpoint before it (a run killed meanwhile resumes and trains it again) and after it."""

    def __init__(self, task: DiscreteTask):
        self.task = task

    def before_fit(self, engine: Engine) -> None:
        evaluator = self.task.evaluator
        if evaluator.ready:
            return
        engine.save_checkpoint()
        evaluator.prepare(lambda: engine.signals.received is not None)
        engine.stop_if_signalled()
        setup = evaluator.setup
        log.info("%s evaluator ready: %.1f s, %d images", evaluator.name, setup.seconds, setup.images)
        self.task.save_evaluator()
        engine.save_checkpoint()


class Budget(Hook):
    """Ends the search once its evaluations or its wall time (every session's, the setup's included)
    are spent, whichever comes first."""

    def __init__(self, budget: BudgetConfig):
        self.budget = budget

    def stop_reason(self, engine: Engine) -> str | None:
        b, done = self.budget, engine.counters.global_step
        if b.evaluations is not None and done >= b.evaluations:
            return f"budget of {b.evaluations} evaluations spent"
        if b.seconds is not None and done and engine.wall_time >= b.seconds:
            return f"wall-time budget of {b.seconds:g} s spent"
        return None


class EvaluationLog(Hook):
    """After each evaluation: its score, the best so far, the cost and the strategy's scalars, in
    TensorBoard against the evaluation count, and one log line."""

    def __init__(self, task: DiscreteTask):
        self.task = task

    def after_step(self, engine: Engine, metrics: dict[str, torch.Tensor]) -> None:
        task = self.task
        record, best, index = task.records[-1], task.best_record.value, len(task.records)
        scalars = {"search/score": record.value, "search/best": best, "search/cost_s": task.cost().seconds,
                   **task.observed}
        task.tb.scalars({k: v for k, v in scalars.items() if math.isfinite(v)}, index)
        log.info("evaluation %d: %s %.4g (%.2f s%s), best %.4g", index, task.evaluator.name, record.value,
                 record.seconds, ", seen before" if record.cached else "", best)


class BestCell(Hook):
    """``genotype.json`` after each checkpoint that holds a better cell."""

    def __init__(self, task: DiscreteTask):
        self.task = task

    def after_checkpoint(self, engine: Engine) -> None:
        self.task.write_best()
