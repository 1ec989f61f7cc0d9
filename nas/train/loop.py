"""The retrain loop: a genotype's evaluation network trained from scratch, evaluated every epoch.

``run_train(cfg, run_dir)`` is a plain function (the Hydra entry point only calls it), so tests and
notebooks retrain without a command line. Each epoch writes ``checkpoints/last.pt`` (and
``best.pt`` when the test top-1 improves) and TensorBoard scalars; the end of the run writes
``summary.json`` with the accuracy, the network's size figures and the throughput.
``profile_only`` stops after the size figures, before any data is read.

Long runs behave like the search's: SIGTERM/SIGINT checkpoint and stop after the current step, a
NaN loss stops the run before a checkpoint could save it, and ``resume=<run dir>`` continues the
run in its own directory with its saved config, from the exact step where it stopped (the data
order, the augmentations and the drop-path masks all replay from seeded streams).

Two schedules act per epoch and are pure functions of it: the learning rate (cosine to
``lr_min``, or × ``gamma``) and the drop-path probability, ramped linearly from 0 so that the
young network is not regularised before it has learnt anything.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas import checkpoint
from nas.config import summary_of
from nas.data.loader import derive_seed
from nas.data.transforms import cutout
from nas.distributed import World, check_batch_divides, init_world, sync_batchnorm
from nas.engine import (
    EpochTimer,
    Interrupted,
    RunningMean,
    StopSignals,
    check_finite,
    prepare_run_dir,
    progress,
    resumed_config,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
    write_json,
)
from nas.errors import CheckpointError
from nas.genotype import Genotype, from_mapping
from nas.genotype import load as load_genotype
from nas.logging import TBLogger
from nas.ops import OPS
from nas.train.config import TrainConfig, train_config_from_dict
from nas.train.data import build_train_data
from nas.train.networks import EvalNetwork, build_network
from nas.train.profile import describe, profile

log = logging.getLogger("nas.train")
CHECKPOINT_FORMAT = "nas-train/1"
_CUTOUT_STREAM = 0xC07  # the key of the cutout random stream, apart from the data order's


def drop_path_prob(base: float, epoch: int, epochs: int) -> float:
    """Probability during epoch ``epoch`` (0-based): 0 at the start, ``base`` after the last epoch."""
    return base * epoch / epochs


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.optim.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.optim.gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.optim.lr_min)


def sgd_step(net: nn.Module, model: EvalNetwork, optimizer: torch.optim.Optimizer, criterion: nn.Module,
             batch: tuple[torch.Tensor, torch.Tensor], drop_prob: float, cfg: TrainConfig,
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


def _network(cfg: TrainConfig, genotype: Genotype, num_classes: int, in_channels: int = 3) -> EvalNetwork:
    m = cfg.model
    return build_network(m.name, genotype, m.channels, m.layers, num_classes, m.auxiliary, in_channels)


def _network_facts(cfg: TrainConfig, genotype: Genotype, num_classes: int, figures: dict[str, int]) -> dict[str, Any]:
    """What ``summary.json`` says about the network, in a training run and in a profile alike."""
    return {
        **figures,
        "model": cfg.model.name,
        "channels": cfg.model.channels,
        "layers": cfg.model.layers,
        "num_classes": num_classes,
        "image_size": cfg.data.image_size,
        "genotype": genotype.to_dict(),
        "genotype_text": genotype.to_text(),
    }


def profile_network(cfg: TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Build the network with ``model.num_classes`` classes, record and print its size; read no data."""
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, cfg.overwrite, None)
    genotype = load_genotype(cfg.genotype, OPS)
    model = _network(cfg, genotype, cfg.model.num_classes)
    figures = profile(model, cfg.data.image_size)
    summary = {"profile_only": True, **_network_facts(cfg, genotype, cfg.model.num_classes, figures)}
    write_json(run_dir / "summary.json", summary)
    print(describe(figures, cfg.data.image_size))
    return summary


class TrainRun:
    """Everything one retrain holds: genotype, data, network, optimizer, schedule, logger and progress."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume_state: dict[str, Any] | None = None,
                 world: World | None = None, device: str | None = None):
        self.cfg = cfg
        self.world = world or World()
        self.run_dir = Path(run_dir)
        prepare_run_dir(self.run_dir, cfg.overwrite, cfg.resume)
        check_batch_divides(cfg.batch_size, self.world)
        # A resumed run trains the cell it started with, even if its genotype file changed since.
        self.genotype = (from_mapping(resume_state["genotype"], OPS) if resume_state
                         else load_genotype(cfg.genotype, OPS))
        seed_everything(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = select_device(device or cfg.device)
        self.timer = EpochTimer()
        self.data = build_train_data(cfg, self.device, shard=(self.world.rank, self.world.size))
        self.model = _network(cfg, self.genotype, self.data.num_classes, self.data.in_channels)
        if cfg.sync_bn and self.world.active:
            sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.figures = profile(self.model, cfg.data.image_size, self.data.in_channels)
        self.net = torch.compile(self.model) if cfg.compile else self.model  # same parameters either way
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.tb = TBLogger(self.run_dir / "tb", enabled=self.world.is_main)
        self.signals = StopSignals()
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # steps of the current epoch done (non-zero only mid-epoch)
        self.epoch_loss, self.epoch_acc = RunningMean(), RunningMean()
        self.global_step = 0
        self.history: list[dict[str, float]] = []
        self.best_top1, self.best_epoch = -1.0, 0
        self.train_images, self.train_seconds, self.previous_wall_time = 0, 0.0, 0.0
        if resume_state is not None:
            self.load_state_dict(resume_state, cfg.resume)
        log.info("%s, %d classes, %d training images", describe(self.figures, cfg.data.image_size),
                 self.data.num_classes, self.data.train.num_images)

    # -- one epoch ------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        steps = len(self.data.train)
        cap = self.cfg.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    def train_step(self, x: torch.Tensor, y: torch.Tensor, drop_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on the main loss plus ``aux_weight`` × the auxiliary loss; returns (loss, accuracy)."""
        return sgd_step(self.net, self.model, self.optimizer, self.criterion, (x, y), drop_prob, self.cfg,
                        self.world)

    def cutout_rng(self) -> torch.Generator:
        """The generator of the cutout squares of the next step: seeded by (seed, epoch, step) alone."""
        return torch.Generator().manual_seed(derive_seed(self.cfg.seed, _CUTOUT_STREAM, self.epoch,
                                                         self.step_in_epoch))

    def train_epoch(self) -> dict[str, float]:
        """Train until the end of the current epoch, starting where a resumed run left off."""
        cfg = self.cfg
        steps = self.steps_per_epoch()
        if self.step_in_epoch == 0:
            self.epoch_loss, self.epoch_acc = RunningMean(), RunningMean()
        self.model.train()
        drop_prob = drop_path_prob(cfg.drop_path_prob, self.epoch, cfg.epochs)
        batches = self.data.train.batches(self.epoch, start=self.step_in_epoch)
        bar = progress(range(self.step_in_epoch, steps), steps - self.step_in_epoch,
                       f"epoch {self.epoch + 1}/{cfg.epochs}", cfg.log.progress and self.world.is_main)
        every = cfg.checkpoint.every_steps
        last = time.perf_counter()
        for _, (x, y) in zip(bar, batches):
            if cfg.augment.cutout:
                x = cutout(x, cfg.augment.cutout, self.cutout_rng())
            loss, acc = self.train_step(x, y, drop_prob)
            self.global_step += 1
            self.step_in_epoch += 1
            received = self.world.agree_({"loss": loss, "acc": acc}, self.signals.received)
            check_finite({"loss/train": loss}, self.global_step, self.run_dir, "try a lower optim.lr")  # waits for the device
            self.epoch_loss.update(loss, len(y))
            self.epoch_acc.update(acc, len(y))
            now = time.perf_counter()
            self.train_seconds += now - last
            self.train_images += len(y) * self.world.size
            last = now
            if self.global_step % cfg.log.every_steps == 0:
                self.tb.scalars({"loss/train": loss, "acc/train": acc}, self.global_step)
            if received:
                self.save_checkpoint()
                raise Interrupted(received, self.global_step, self.run_dir)
            if every and self.global_step % every == 0 and self.step_in_epoch < steps:
                self.save_checkpoint()
                last = time.perf_counter()  # writing checkpoints is not training time
        return {"loss/train": self.epoch_loss.mean, "acc/train": self.epoch_acc.mean, "drop_path": drop_prob}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy on the whole test split, unaugmented, in eval mode."""
        self.world.broadcast_buffers_(self.model)  # one set of BatchNorm statistics for all ranks
        self.model.eval()
        loss, top1, top5, count = 0.0, 0.0, 0.0, 0
        k = min(5, self.data.num_classes)
        for x, y in self.data.test.batches(0):
            logits, _ = self.model(x)
            hits = logits.topk(k, dim=1).indices == y[:, None]
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            top1 += float(hits[:, 0].sum())
            top5 += float(hits.any(dim=1).sum())
            count += len(y)
        self.model.train()
        loss, top1, top5, count = self.world.sum_([loss, top1, top5, count])  # each rank saw a shard
        return {"loss/test": loss / count, "acc/top1": top1 / count, "acc/top5": top5 / count}

    def end_epoch(self, train_metrics: dict[str, float], epoch_time: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        metrics = {**train_metrics, **self.evaluate(), "lr": lr, "time/epoch_s": epoch_time}
        self.history.append({"epoch": self.epoch, **metrics})
        self.tb.scalars(metrics, self.global_step)
        self.tb.flush()
        improved = metrics["acc/top1"] > self.best_top1
        if improved:
            self.best_top1, self.best_epoch = metrics["acc/top1"], self.epoch
        self.save_checkpoint(best=improved)
        log.info("epoch %d/%d  train loss %.3f acc %.3f  test top1 %.4f top5 %.4f  lr %.4g  %.1fs", self.epoch,
                 self.cfg.epochs, metrics["loss/train"], metrics["acc/train"], metrics["acc/top1"],
                 metrics["acc/top5"], lr, epoch_time)

    def run(self) -> dict[str, Any]:
        if self.cfg.log.images and self.global_step == 0:
            self.tb.genotype(self.genotype, 0)
        with self.signals:
            while self.epoch < self.cfg.epochs:
                self.timer.start_epoch()
                train_metrics = self.train_epoch()
                self.end_epoch(train_metrics, self.timer.end_epoch())
        last = self.history[-1] if self.history else {}
        summary = {
            **_network_facts(self.cfg, self.genotype, self.data.num_classes, self.figures),
            "top1": last.get("acc/top1"),
            "top5": last.get("acc/top5"),
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "epochs": self.epoch,
            "steps": self.global_step,
            "wall_time_s": self.previous_wall_time + self.timer.wall_time,
            "images_per_s": self.train_images / self.train_seconds if self.train_seconds else None,
            "epoch_times_s": self.timer.epoch_times,
            "run_dir": str(self.run_dir),
            "seed": self.cfg.seed,
            "history": self.history,
            "device": str(self.device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "world_size": self.world.size,
        }
        if self.world.is_main:
            write_json(self.run_dir / "summary.json", summary)
        self.tb.close()
        return summary

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "genotype": self.genotype.to_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_means": [self.epoch_loss.state(), self.epoch_acc.state()],
            "global_step": self.global_step,
            "history": self.history,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "train_images": self.train_images,
            "train_seconds": self.train_seconds,
            "wall_time_s": self.previous_wall_time + self.timer.wall_time,
            "epoch_times": self.timer.epoch_times,
            "rng": rng_state(),
            "config": summary_of(self.cfg),
        }

    def save_checkpoint(self, best: bool = False) -> None:
        """``last.pt`` (the one before kept as ``previous.pt``); ``best.pt`` too when the test top-1 improved."""
        if not self.world.is_main:
            return
        state = self.state_dict()
        checkpoint.save_rotating(self.run_dir / "checkpoints", state)
        if best:
            checkpoint.save(self.run_dir / "checkpoints" / "best.pt", state)

    def load_state_dict(self, state: dict[str, Any], path: str | Path | None) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this network: {str(exc).splitlines()[0]}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.epoch_loss.load_state(state["epoch_means"][0])
        self.epoch_acc.load_state(state["epoch_means"][1])
        self.history = list(state["history"])
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self.train_images, self.train_seconds = state["train_images"], state["train_seconds"]
        self.previous_wall_time = state["wall_time_s"]
        self.timer.epoch_times = list(state["epoch_times"])
        set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.global_step)


def run_train(cfg: TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Retrain into ``run_dir`` (or only profile the network); returns what ``summary.json`` holds.

    With ``cfg.resume`` the saved run continues in its own directory, with its saved config: only
    where it runs (``device``, ``threads``) and the progress bar come from ``cfg``.
    """
    if cfg.profile_only:
        return profile_network(cfg, run_dir)
    world, device = init_world(cfg.device)
    run_dir = world.broadcast_object(str(run_dir))
    if not cfg.resume:
        return TrainRun(cfg, run_dir, world=world, device=device).run()
    saved, state, saved_dir = resumed_config(cfg, CHECKPOINT_FORMAT, "retrain", train_config_from_dict)
    return TrainRun(saved, saved_dir, resume_state=state, world=world, device=device).run()
