"""The search as a task of the engine: data, supernet, optimizers and the chosen algorithm.

``run_search(cfg, run_dir)`` is a plain function (the Hydra entry point only calls it), so tests,
notebooks and the tuner run a search without a command line. The engine (``nas.engine``) runs
the epochs, checkpoints and resumes; this module says what a search step is (the algorithm's), how
the supernet is evaluated, and what an epoch leaves behind: ``genotype.json``, TensorBoard events
and, at the end, ``summary.json``. The collapse remedies and diagnostics plug in as hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.config import summary_of
from nas.data import BatchCycle, build_search_data
from nas.distributed import World
from nas.engine import (
    Counters,
    Engine,
    Hook,
    evaluate,
    optimizer_tensors,
    place_model,
    prepare_process,
    run_task,
)
from nas.genotype import save_json
from nas.logging import TBLogger
from nas.search.algorithms import algorithm_spec
from nas.search.algorithms.base import CHECKPOINT_FORMAT, BilevelConfig, SearchContext
from nas.search.bilevel import Batch, Bilevel
from nas.search.config import SearchConfig, search_config_from_dict
from nas.search.diagnostics import CollapseDiagnostics
from nas.search.optimizers import make_optimizers
from nas.search.perturbation import PerturbationSelection
from nas.search.remedies import AuxSkipSchedule, EarlyStop
from nas.spaces import benchmark_of, make_space, rules_of
from nas.spaces.supernet import SupernetBase
from nas.spaces.weighting import uniform_noise

log = logging.getLogger("nas.search")
__all__ = ["CHECKPOINT_FORMAT", "SearchTask", "run_search"]


class SearchTask:
    """Everything one supernet search holds; the engine drives it (``nas.engine.Task``)."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, cfg: SearchConfig, world: World, device: str, counters: Counters, tb: TBLogger,
                 run_dir: Path, resume_state: dict[str, Any] | None = None):
        self.cfg, self.world, self.counters, self.tb, self.run_dir = cfg, world, counters, tb, run_dir
        self.device = prepare_process(cfg, world, device)
        self.space = make_space(cfg.space)
        self.rules = rules_of(cfg)
        self.op_names = self.space.op_names
        a = cfg.algorithm
        self.algorithm = algorithm_spec(a.name).create(a)
        d = cfg.data
        self.data = build_search_data(
            name=d.name, root=d.root, download=d.download, train_portion=d.train_portion,
            image_size=d.image_size, batch_size=cfg.batch_size, seed=cfg.seed, device=self.device,
            limit=d.limit, channels_last=cfg.channels_last, shard=(world.rank, world.size),
        )
        model = self.space.build_supernet(
            cfg.model, self.data.num_classes, self.data.in_channels,
            alpha_init_std=self.algorithm.alpha_init_std, partial_channels=a.partial_channels,
            edge_norm=a.partial_channels > 1 if a.edge_norm is None else a.edge_norm, recompute=cfg.recompute,
            rule=self.algorithm.make_rule(),
        )
        self.model: SupernetBase = place_model(model, cfg, world, self.device)  # type: ignore[assignment]
        self.w_optimizer, self.scheduler, self.a_optimizer = make_optimizers(self.model, cfg.optim, cfg.epochs)
        unrolled = dict(order=a.order, hessian=a.hessian, fd_epsilon=a.fd_epsilon) if isinstance(a, BilevelConfig) else {}
        perturb = (lambda alphas: uniform_noise(alphas, a.perturb_epsilon)) if a.perturb == "uniform" else None
        self.bilevel = Bilevel(self.model, self.w_optimizer, self.a_optimizer, cfg.optim.grad_clip,
                               average=world.average_, regularizer=self.algorithm.regularizer(), perturb=perturb,
                               **unrolled)
        self.val_stream = BatchCycle(self.data.val)
        counters.steps_per_epoch = self.steps_per_epoch()
        self.algorithm.setup(SearchContext(self.model, self.bilevel, tb, counters, cfg.log.every_steps,
                                           lambda: self.data.train.batches(self.counters.epoch)))
        self.genotype = self.derive()
        self.edge_labels = self.space.edge_labels(cfg.model)
        tb.edge_charts(self.edge_labels)
        self.hooks: list[Hook] = [self.algorithm, StepLog(self), EpochResults(self),
                                  CollapseDiagnostics(self.model, self, cfg.diagnostics, self.data.val_eval),
                                  EarlyStop(a.early_stop, self.model.arch, self.space, lambda: self.genotype)]
        if a.aux_skip:
            self.hooks.insert(0, AuxSkipSchedule(self.model.arch))
        if cfg.derive.method == "perturbation":
            self.hooks.append(PerturbationSelection(self))

    # -- what the engine asks -------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        steps, cap = len(self.data.train), self.cfg.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        return self.data.train.batches(epoch, start=start)

    def step(self, train: Batch) -> tuple[dict[str, torch.Tensor], int]:
        with self.autocast():
            metrics = self.algorithm.step(train, next(self.val_stream))
        return metrics, len(train[1])

    def end_train_epoch(self) -> None:
        self.scheduler.step()

    def evaluate(self, engine: Engine | None = None, edge_weights: dict[str, torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """Loss and accuracy of the supernet on the whole alpha split, unaugmented, in eval mode
        (``edge_weights``: with these op weights instead of the architecture's)."""
        if edge_weights is None:
            self.algorithm.before_evaluate()

        def score(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
            with self.autocast():
                logits = self.model(x, edge_weights).float()
            return {"loss/val": float(nn.functional.cross_entropy(logits, y, reduction="sum")),
                    "acc/val": float((logits.argmax(1) == y).sum())}

        return evaluate(self.model, self.data.val_eval.batches(0), score, self.world,
                        engine.signals if engine is not None else None)

    def end_epoch(self, engine: Engine, metrics: dict[str, float]) -> Sequence[str]:
        metrics["lr/weights"] = self.bilevel.lr
        return ()

    def publish(self, engine: Engine) -> None:
        """After the epoch's checkpoint: its scalars and the derived cell, for the user to read."""
        metrics = engine.history[-1]
        self.tb.scalars({k: v for k, v in metrics.items() if k != "epoch"}, self.counters.global_step)
        self.tb.flush()
        if self.world.is_main:
            save_json(self.run_dir / "genotype.json", self.genotype, self.genotype_meta(engine))
        log.info("epoch %d/%d  train loss %.3f acc %.3f  val loss %.3f acc %.3f  %.1fs", self.counters.epoch,
                 self.cfg.epochs, metrics["loss/train"], metrics["acc/train"], metrics["loss/val"],
                 metrics["acc/val"], metrics["time/epoch_s"])

    def summary(self, engine: Engine) -> dict[str, Any]:
        last = engine.history[-1] if engine.history else {}
        self.tb.text("genotype_final", f"```\n{self.genotype.to_text()}\n```", self.counters.global_step)
        return {
            "genotype": self.genotype.to_dict(),
            "genotype_text": self.genotype.to_text(),
            "final_val_acc": last.get("acc/val"),
            "final_val_loss": last.get("loss/val"),
            "seed": self.cfg.seed,
            "algorithm": self.cfg.algorithm.name,
            "diagnostics": [{k: v for k, v in h.items() if k.split("/")[0] in ("collapse", "hessian")
                             or k.startswith("alpha/entropy")} | {"epoch": h["epoch"]} for h in engine.history],
            "derive_method": self.cfg.derive.method,
            "device": str(self.device),
            "rank_alpha_divergence": self.world.max_divergence(self.model.alphas()),
            "space": self.cfg.space.name,
            **benchmark_of(self.space, self.genotype),
            **self.algorithm.summary(),
        }

    # -- the architecture found so far ----------------------------------------------------------
    def derive(self) -> Any:
        with torch.no_grad():
            weights, scales = self.model.arch.edge_weights(), self.model.arch.edge_scales()
        return self.space.derive(weights, self.cfg.model, self.rules, scales)

    def genotype_meta(self, engine: Engine) -> dict[str, Any]:
        return {
            "algorithm": self.cfg.algorithm.name,
            "space_name": self.cfg.space.name,
            "order": getattr(self.cfg.algorithm, "order", 1),
            "space": list(self.op_names),
            "epoch": self.counters.epoch,
            "seed": self.cfg.seed,
            "data": self.cfg.data.name,
            "k": self.cfg.derive.k,
            "derive_method": self.cfg.derive.method,
            "val_acc": engine.history[-1]["acc/val"] if engine.history else None,
            "config": summary_of(self.cfg),
            "alphas": {k: v.detach().cpu().tolist() for k, v in self.model.arch.alphas().items()},
            "alive": {k: v.cpu().tolist() for k, v in self.model.arch.alive().items()},
        }

    def autocast(self) -> torch.autocast:
        """bf16 autocast when ``amp=bf16`` (a win on recent GPUs, a loss on CPUs)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "val_stream": self.val_stream.state_dict(),
            "genotype": self.genotype.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.val_stream.load_state_dict(state["val_stream"])
        self.genotype = self.space.from_dict(state["genotype"])
        if self.scheduler.T_max != self.cfg.epochs:  # resumed for more epochs: the cosine now spans them all
            self.scheduler.T_max = self.cfg.epochs
            for group, lr in zip(self.w_optimizer.param_groups, self.scheduler._get_closed_form_lr()):
                group["lr"] = lr

    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Every tensor a checkpoint holds, by name (the NaN guard checks them before saving)."""
        yield from self.model.state_dict().items()
        yield from optimizer_tensors("w_optimizer", self.w_optimizer)
        yield from optimizer_tensors("a_optimizer", self.a_optimizer)


class StepLog(Hook):
    """Every ``log.every_steps`` steps: the step's scalars, the weight learning rate and the op weights."""

    def __init__(self, task: SearchTask):
        self.task = task

    def after_step(self, engine: Engine, metrics: dict[str, torch.Tensor]) -> None:
        step = self.task.counters.global_step
        if step % self.task.cfg.log.every_steps:
            return
        arch = self.task.model.arch
        self.task.tb.scalars({**{k: float(v) for k, v in metrics.items()}, "lr/weights": self.task.bilevel.lr}, step)
        with torch.no_grad():
            self.task.tb.alphas(arch.edge_weights(), self.task.op_names, step, alive=arch.alive())


class EpochResults(Hook):
    """After each epoch: the derived cell, and the op weights and cells drawn in TensorBoard."""

    def __init__(self, task: SearchTask):
        self.task = task

    def after_epoch(self, engine: Engine, metrics: dict[str, float]) -> None:
        task, step = self.task, self.task.counters.global_step
        task.genotype = task.derive()
        arch = task.model.arch
        with torch.no_grad():
            weights, alive = arch.edge_weights(), arch.alive()
        task.tb.alphas(weights, task.op_names, step, alive=alive)
        known = task.space.lookup(task.genotype)
        if known is not None and known.get("found"):  # reported, never read by the search
            task.tb.scalars({"benchmark/val_acc": known["val_acc"], "benchmark/test_acc": known["test_acc"],
                             "benchmark/rank": known["rank"]}, step)
        if task.cfg.log.images:
            task.tb.alpha_images(weights, task.op_names, step, alive=alive, labels=task.edge_labels)
            task.tb.genotype(task.genotype, task.space.images(task.genotype, f"step {step}"), step)


def run_search(cfg: SearchConfig, run_dir: str | Path, hooks: Sequence[Hook] = (),
               changed: dict[str, Any] | None = None,
               on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run a whole search into ``run_dir``; returns what ``summary.json`` holds (``nas.engine.run_task``
    says what the arguments mean). The algorithm says which task the engine runs: the supernet
    search here, or its own (a discrete search, a random draw)."""

    def build(cfg: SearchConfig, world: World, device: str, counters: Counters, tb: TBLogger, run_dir: Path,
              state: dict[str, Any] | None) -> Any:
        algorithm = algorithm_spec(cfg.algorithm.name).create(cfg.algorithm)
        return (algorithm.task(cfg, world, device, counters, tb, run_dir, state)
                or SearchTask(cfg, world, device, counters, tb, run_dir, state))

    return run_task(cfg, run_dir, kind="search", checkpoint_format=CHECKPOINT_FORMAT,
                    from_dict=search_config_from_dict, build=build, hooks=hooks, changed=changed,
                    on_start=on_start, nan_hint="try a lower optim.w_lr or optim.alpha_lr")
