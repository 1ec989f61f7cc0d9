"""What the discrete searches share (``algorithm=evolution|reinforce|random_search``): the keys, the cell
space they move in, and the run — evaluate, record, checkpoint, stop — around a strategy.

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
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas import checkpoint
from nas.config import check, option, summary_of
from nas.distributed import World
from nas.evaluate.base import Cost, Evaluator, Score, Stopwatch, finite, genotype_key
from nas.evaluate.config import (
    EVALUATORS,
    SupernetEvaluatorConfig,
    TrainEvaluatorConfig,
    ZeroCostEvaluatorConfig,
)
from nas.genotype import save_json
from nas.search.algorithms.base import Algorithm, AlgorithmConfig
from nas.spaces import Sampler, benchmark_of, rules_of

log = logging.getLogger("nas.search")
EVALUATOR_FILE = "evaluator.pt"  # the evaluator's state (a trained supernet), beside last.pt


@dataclass
class BudgetConfig:
    """When a discrete search ends: after this many evaluations or this much wall time, whichever first."""

    evaluations: int | None = option(100, ge=1, le=10_000_000)
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
    """The base of every discrete strategy; ``run`` is the whole search (no supernet is trained by the
    search loop: the ``supernet`` evaluator trains its own)."""

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

    # -- the run --------------------------------------------------------------------------------
    def run(self, cfg: Any, run_dir: Path, world: World) -> dict[str, Any]:
        return DiscreteRun(self, cfg, run_dir, world).execute()


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


class DiscreteRun:
    """One discrete search from start (or its checkpoint) to ``summary.json``."""

    def __init__(self, strategy: DiscreteSearch, cfg: Any, run_dir: Path, world: World):
        from nas.engine import prepare_process
        from nas.evaluate.base import build_workbench
        from nas.evaluate.factory import make_evaluator
        from nas.search.task import CHECKPOINT_FORMAT

        check(world.size == 1, "a discrete search runs in one process; start it without torchrun")
        self.strategy, self.cfg, self.run_dir, self.world = strategy, cfg, Path(run_dir), world
        self.format = CHECKPOINT_FORMAT
        a = cfg.algorithm
        device = prepare_process(cfg, world, cfg.device)
        self.bench = build_workbench(cfg, device)
        self.space = self.bench.space
        self.op_names = self.space.op_names
        self.sampler = Sampler(self.space, cfg.model, rules_of(cfg))
        self.evaluator: Evaluator = make_evaluator(a.evaluator, a, self.bench, cfg.derive.k, cfg.derive.max_skip)
        self.records: list[Record] = []
        self.cache: dict[str, Record] = {}
        self.best: int | None = None  # index of the best record
        self.clock, self.previous_seconds = Stopwatch(), 0.0
        self.stop_reason: str | None = None
        self.config = summary_of(cfg)  # saved with every checkpoint: computed once
        self.evaluator_saved = False  # whether its state (once prepared) is in EVALUATOR_FILE
        strategy.begin(self.sampler, cfg.seed)
        if cfg.resume:
            self.load(checkpoint.load(cfg.resume))

    # -- the loop -------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        from nas.engine import Interrupted, StopSignals
        from nas.logging import TBLogger

        with StopSignals() as signals, TBLogger(self.run_dir / "tb") as tb:
            def stopped() -> bool:
                return signals.received is not None

            if not self.evaluator.ready:
                self.save()  # a run killed while its supernet trains can be resumed (it trains again)
                self.evaluator.prepare(stopped)
                if not self.evaluator.ready:
                    self.save()
                    raise Interrupted(signals.received, len(self.records), self.run_dir)  # type: ignore[arg-type]
                setup = self.evaluator.setup
                log.info("%s evaluator ready: %.1f s, %d images", self.evaluator.name, setup.seconds, setup.images)
                self.save_evaluator()
                self.save()
            while not self.records or (reason := self.budget_spent()) is None:
                improved = self.step(tb)
                self.save()
                if improved:  # after the checkpoint, so that the results never run ahead of it
                    save_json(self.run_dir / "genotype.json", self.best_record.genotype, self.meta())
                if stopped():
                    raise Interrupted(signals.received, len(self.records), self.run_dir)  # type: ignore[arg-type]
            self.stop_reason = reason
            self.save()
            summary = self.summary()
            if self.cfg.log.images:
                best = self.best_record.genotype
                tb.genotype(best, self.space.images(best), len(self.records))
            tb.text("genotype_final", f"```\n{self.best_record.genotype.to_text()}\n```", len(self.records))
        checkpoint.write_json(self.run_dir / "summary.json", summary)
        return summary

    def step(self, tb: Any) -> bool:
        """Propose, score (or recall), record, learn, log; returns whether the best cell changed."""
        genotype = self.strategy.propose()
        key = genotype_key(genotype, self.space)
        if key in self.cache:
            seen = self.cache[key]
            record = Record(genotype, seen.value, 0.0, 0, cached=True)
        else:
            score: Score = self.evaluator.score([genotype])[0]
            record = Record(genotype, score.rank_value, score.seconds, score.images, cached=False)
            self.cache[key] = record
        self.records.append(record)
        index = len(self.records) - 1
        improved = self.best is None or record.value > self.records[self.best].value
        if improved:
            self.best = index
        scalars = self.strategy.observe(genotype, record.value)
        best = self.best_record.value
        tb.scalars({**({"search/score": record.value} if math.isfinite(record.value) else {}),
                    **({"search/best": best} if math.isfinite(best) else {}),
                    "search/cost_s": self.cost().seconds,
                    **{k: v for k, v in scalars.items() if math.isfinite(v)}}, index + 1)
        log.info("evaluation %d: %s %.4g (%.2f s%s), best %.4g", index + 1, self.evaluator.name, record.value,
                 record.seconds, ", seen before" if record.cached else "", best)
        return improved

    def budget_spent(self) -> str | None:
        b = self.cfg.algorithm.budget
        if b.evaluations is not None and len(self.records) >= b.evaluations:
            return f"budget of {b.evaluations} evaluations spent"
        if b.seconds is not None and self.wall_time >= b.seconds:
            return f"wall-time budget of {b.seconds:g} s spent"
        return None

    # -- results --------------------------------------------------------------------------------
    @property
    def best_record(self) -> Record:
        assert self.best is not None
        return self.records[self.best]

    @property
    def wall_time(self) -> float:
        return self.previous_seconds + self.clock.elapsed

    def cost(self) -> Cost:
        """Seconds and images of the whole search so far: the evaluator's setup and every evaluation."""
        setup = self.evaluator.setup
        return Cost(setup.seconds + sum(r.seconds for r in self.records),
                    setup.images + sum(r.images for r in self.records))

    def meta(self) -> dict[str, Any]:
        best = self.best_record
        return {"algorithm": self.cfg.algorithm.name, "space": list(self.op_names), "space_name": self.cfg.space.name,
                "seed": self.cfg.seed,
                "k": self.cfg.derive.k, "evaluator": self.evaluator.name, "score": finite(best.value),
                "evaluation": self.best, "config": self.config}

    def summary(self) -> dict[str, Any]:
        from nas.search.diagnostics import param_free_scalars

        best, curve, running = self.best_record, [], -math.inf
        for r in self.records:
            running = max(running, r.value)
            curve.append(running)
        cost, setup = self.cost(), self.evaluator.setup
        return {
            "genotype": best.genotype.to_dict(), "genotype_text": best.genotype.to_text(),
            "epochs": 0, "steps": len(self.records),
            "final_val_acc": finite(best.value) if self.evaluator.measures_accuracy else None,
            "final_val_loss": None, "stop_reason": self.stop_reason, "seed": self.cfg.seed,
            "algorithm": self.cfg.algorithm.name, "run_dir": str(self.run_dir),
            "diagnostics": [{"epoch": 0, **param_free_scalars(best.genotype, self.space)}], "history": [],
            "space": self.cfg.space.name, **benchmark_of(self.space, best.genotype),
            "wall_time_s": self.wall_time, "world_size": self.world.size, "device": str(self.bench.device),
            "evaluator": self.evaluator.name,
            "best": {"evaluation": self.best, "score": finite(best.value), "genotype_text": best.genotype.to_text()},
            "cost": {"seconds": cost.seconds, "images": cost.images, "setup_seconds": setup.seconds,
                     "setup_images": setup.images},
            "evaluations_done": len(self.records),
            "distinct_genotypes": len(self.cache),
            "best_so_far": [finite(v) for v in curve],
            "evaluations": [r.to_dict(i, b) for i, (r, b) in enumerate(zip(self.records, curve))],
            **self.strategy.summary(),
        }

    # -- state ----------------------------------------------------------------------------------
    def save(self) -> None:
        """``checkpoints/last.pt``: the records and the strategy, after every evaluation. The evaluator's
        state (a trained supernet) never changes once it is ready, so it is saved once, beside it."""
        state = {
            "format": self.format, "config": self.config, "epoch": 0, "stop_reason": self.stop_reason,
            "wall_time_s": self.wall_time,
            "records": [[r.genotype.to_dict(), r.value, r.seconds, r.images, r.cached] for r in self.records],
            "strategy": self.strategy.state_dict(), "evaluator_saved": self.evaluator_saved,
        }
        checkpoint.save_rotating(self.run_dir / "checkpoints", state)

    def save_evaluator(self) -> None:
        checkpoint.save(self.run_dir / "checkpoints" / EVALUATOR_FILE,
                        {"format": f"{self.format}/evaluator", **self.evaluator.state_dict()})
        self.evaluator_saved = True

    def load(self, state: dict[str, Any]) -> None:
        from nas.errors import CheckpointError

        try:
            for genotype, value, seconds, images, cached in state["records"]:
                record = Record(self.space.from_dict(genotype), float(value), float(seconds), int(images), bool(cached))
                self.records.append(record)
                self.cache.setdefault(genotype_key(record.genotype, self.space), record)
                if self.best is None or record.value > self.records[self.best].value:
                    self.best = len(self.records) - 1
            self.previous_seconds = float(state["wall_time_s"])
            self.strategy.load_state_dict(state["strategy"])
            if state["evaluator_saved"]:
                folder = checkpoint.resolve(self.cfg.resume).parent
                self.evaluator.load_state_dict(checkpoint.load(folder / EVALUATOR_FILE))
                self.evaluator_saved = True
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {self.cfg.resume} is not a complete {self.cfg.algorithm.name} "
                                  f"checkpoint ({type(exc).__name__}: {exc})") from None
        log.info("resumed %s after %d evaluations", self.cfg.algorithm.name, len(self.records))
