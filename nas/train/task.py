"""The retrain as a task of the engine: a genotype's evaluation network trained from scratch.

``run_train(cfg, run_dir)`` is a plain function (the Hydra entry point only calls it), so tests,
notebooks and the tuner retrain without a command line. The engine (``nas.engine``) runs the epochs,
checkpoints and resumes; this module says what a training step is, how the network is evaluated
(top-1 and top-5 on the test split), and what the run leaves behind: ``checkpoints/best.pt`` when
the test top-1 improves, TensorBoard scalars and ``summary.json`` with the accuracy, the network's
size figures and the throughput. ``profile_only`` stops after the size figures, before any data is
read.

Two schedules act per epoch and are pure functions of it: the learning rate (cosine to
``lr_min``, or × ``gamma``) and the drop-path probability, ramped linearly from 0 so that the
young network is not regularised before it has learnt anything. The data order, the augmentations
and the drop-path masks all replay from seeded streams, so a resumed run is the same run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.checkpoint import write_json
from nas.data.loader import derive_seed
from nas.data.transforms import cutout
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
from nas.logging import TBLogger
from nas.spaces import benchmark_of, make_space
from nas.spaces.darts_networks import EvalNetwork
from nas.train.config import TrainConfig, train_config_from_dict
from nas.train.data import build_train_data
from nas.train.profile import describe, profile

log = logging.getLogger("nas.train")
CHECKPOINT_FORMAT = "nas-train/2"
_CUTOUT_STREAM = 0xC07  # the key of the cutout random stream, apart from the data order's
Batch = tuple[torch.Tensor, torch.Tensor]


def drop_path_prob(base: float, epoch: int, epochs: int) -> float:
    """Probability during epoch ``epoch`` (0-based): 0 at the start, ``base`` after the last epoch."""
    return base * epoch / epochs


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.optim.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.optim.gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.optim.lr_min)


def stretch_cosine(scheduler: Any, optimizer: torch.optim.Optimizer, epochs: int) -> None:
    """A run resumed for more epochs: its cosine schedule now spans them all, from where it is."""
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != epochs:
        scheduler.T_max = epochs
        for group, lr in zip(optimizer.param_groups, scheduler._get_closed_form_lr()):
            group["lr"] = lr


def sgd_step(net: nn.Module, model: EvalNetwork, optimizer: torch.optim.Optimizer, criterion: nn.Module,
             batch: Batch, drop_prob: float, cfg: TrainConfig,
             world: World | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step of an evaluation network: forward (``net``: the model or its compiled
    form), main + ``aux_weight`` × auxiliary loss, backward, gradients averaged over ranks, clip,
    SGD. Returns (loss, accuracy). ``scripts/bench_train.py`` times exactly this."""
    x, y = batch
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
        logits, aux_logits = net(x, drop_prob)
        loss = criterion(logits, y)
        if aux_logits is not None and cfg.aux_weight > 0:
            loss = loss + cfg.aux_weight * criterion(aux_logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if world is not None:
        world.average_grads_(model.parameters())
    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    return loss.detach().float(), (logits.detach().argmax(1) == y).float().mean()


def _network(cfg: TrainConfig, genotype: Any, num_classes: int, in_channels: int = 3) -> nn.Module:
    return make_space(cfg.space).build_network(genotype, cfg.model, num_classes, in_channels)


def _network_facts(cfg: TrainConfig, genotype: Any, num_classes: int, figures: dict[str, int]) -> dict[str, Any]:
    """What ``summary.json`` says about the network, in a training run and in a profile alike."""
    return {
        **figures,
        "model": cfg.model.name,
        "channels": cfg.model.channels,
        "layers": cfg.model.layers,
        "num_classes": num_classes,
        "image_size": cfg.data.image_size,
        "space": cfg.space.name,
        "genotype": genotype.to_dict(),
        "genotype_text": genotype.to_text(),
        **benchmark_of(make_space(cfg.space), genotype),
    }


def profile_network(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Build the network with ``model.num_classes`` classes, record and print its size; read no data."""
    genotype = make_space(cfg.space).load(cfg.genotype)
    model = _network(cfg, genotype, cfg.model.num_classes)
    figures = profile(model, cfg.data.image_size)
    summary = {"profile_only": True, "run_dir": str(run_dir),
               **_network_facts(cfg, genotype, cfg.model.num_classes, figures)}
    write_json(run_dir / "summary.json", summary)
    print(describe(figures, cfg.data.image_size))
    return summary


class TrainTask:
    """Everything one retrain holds; the engine drives it (``nas.engine.Task``)."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, cfg: TrainConfig, world: World, device: str, counters: Counters, tb: TBLogger,
                 run_dir: Path, resume_state: dict[str, Any] | None = None):
        # A resumed run trains the cell it started with, even if its genotype file changed since.
        space = make_space(cfg.space)
        genotype = space.from_dict(resume_state["genotype"]) if resume_state else space.load(cfg.genotype)
        self.cfg, self.world, self.counters, self.tb, self.genotype = cfg, world, counters, tb, genotype
        self.device = prepare_process(cfg, world, device)
        self.data = build_train_data(cfg, self.device, shard=(world.rank, world.size))
        model = _network(cfg, genotype, self.data.num_classes, self.data.in_channels)
        self.model: nn.Module = place_model(model, cfg, world, self.device)  # type: ignore[assignment]
        self.figures = profile(self.model, cfg.data.image_size, self.data.in_channels)
        self.net = torch.compile(self.model) if cfg.compile else self.model  # same parameters either way
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.best_top1, self.best_epoch = -1.0, 0
        self.drop_prob, self.epoch_lr = 0.0, o.lr
        self.hooks: list[Hook] = [StepScalars(self)]
        if cfg.log.images and resume_state is None:
            tb.genotype(genotype, space.images(genotype), 0)
        log.info("%s, %d classes, %d training images", describe(self.figures, cfg.data.image_size),
                 self.data.num_classes, self.data.train.num_images)

    # -- what the engine asks -------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        steps, cap = len(self.data.train), self.cfg.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        self.model.train()
        self.drop_prob = drop_path_prob(self.cfg.drop_path_prob, epoch, self.cfg.epochs)
        return self.data.train.batches(epoch, start=start)

    def cutout_rng(self) -> torch.Generator:
        """The generator of the cutout squares of the next step: seeded by (seed, epoch, step) alone."""
        return torch.Generator().manual_seed(derive_seed(self.cfg.seed, _CUTOUT_STREAM, self.counters.epoch,
                                                         self.counters.step_in_epoch))

    def step(self, batch: Batch) -> tuple[dict[str, torch.Tensor], int]:
        x, y = batch
        if self.cfg.augment.cutout:
            x = cutout(x, self.cfg.augment.cutout, self.cutout_rng())
        loss, acc = sgd_step(self.net, self.model, self.optimizer, self.criterion, (x, y), self.drop_prob,
                             self.cfg, self.world)
        return {"loss/train": loss, "acc/train": acc}, len(y)

    def end_train_epoch(self) -> None:
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        self.scheduler.step()

    def evaluate(self, engine: Engine | None = None) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy on the whole test split, unaugmented, in eval mode."""
        k = min(5, self.data.num_classes)

        def score(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
            logits, _ = self.model(x)
            hits = logits.topk(k, dim=1).indices == y[:, None]
            return {"loss/test": float(nn.functional.cross_entropy(logits, y, reduction="sum")),
                    "acc/top1": float(hits[:, 0].sum()), "acc/top5": float(hits.any(dim=1).sum())}

        return evaluate(self.model, self.data.test.batches(0), score, self.world,
                        engine.signals if engine is not None else None)

    def end_epoch(self, engine: Engine, metrics: dict[str, float]) -> Sequence[str]:
        metrics["drop_path"] = self.drop_prob
        metrics["lr"] = self.epoch_lr
        if metrics["acc/top1"] > self.best_top1:
            self.best_top1, self.best_epoch = metrics["acc/top1"], self.counters.epoch
            return ("best",)
        return ()

    def publish(self, engine: Engine) -> None:
        metrics = engine.history[-1]
        self.tb.scalars({k: v for k, v in metrics.items() if k != "epoch"}, self.counters.global_step)
        self.tb.flush()
        log.info("epoch %d/%d  train loss %.3f acc %.3f  test top1 %.4f top5 %.4f  lr %.4g  %.1fs",
                 self.counters.epoch, self.cfg.epochs, metrics["loss/train"], metrics["acc/train"],
                 metrics["acc/top1"], metrics["acc/top5"], metrics["lr"], metrics["time/epoch_s"])

    def summary(self, engine: Engine) -> dict[str, Any]:
        last = engine.history[-1] if engine.history else {}
        return {
            **_network_facts(self.cfg, self.genotype, self.data.num_classes, self.figures),
            "top1": last.get("acc/top1"),
            "top5": last.get("acc/top5"),
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "images_per_s": engine.examples / engine.step_seconds if engine.step_seconds else None,
            "seed": self.cfg.seed,
            "device": str(self.device),
        }

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "genotype": self.genotype.to_dict(),
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_top1, self.best_epoch = float(state["best_top1"]), int(state["best_epoch"])
        stretch_cosine(self.scheduler, self.optimizer, self.cfg.epochs)

    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        yield from self.model.state_dict().items()
        yield from optimizer_tensors("optimizer", self.optimizer)


class StepScalars(Hook):
    """Every ``log.every_steps`` steps: the step's loss and accuracy in TensorBoard."""

    def __init__(self, task: TrainTask):
        self.task = task

    def after_step(self, engine: Engine, metrics: dict[str, torch.Tensor]) -> None:
        step = engine.counters.global_step
        if step % self.task.cfg.log.every_steps == 0:
            self.task.tb.scalars(metrics, step)


def run_train(cfg: TrainConfig, run_dir: str | Path, hooks: Sequence[Hook] = (),
              changed: dict[str, Any] | None = None,
              on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Retrain into ``run_dir`` (or only profile the network); returns what ``summary.json`` holds
    (``nas.engine.run_task`` says what the arguments mean)."""
    if cfg.profile_only:  # nothing to resume: only the network's figures
        cfg.resume = None

    def profile_only(cfg: TrainConfig, run_dir: Path, world: World) -> dict[str, Any] | None:
        return profile_network(cfg, run_dir) if cfg.profile_only else None

    return run_task(cfg, run_dir, kind="retrain", checkpoint_format=CHECKPOINT_FORMAT,
                    from_dict=train_config_from_dict, build=TrainTask, hooks=hooks, changed=changed,
                    on_start=on_start, without_engine=profile_only,
                    nan_hint="try a lower optim.lr or optim.weight_decay")
