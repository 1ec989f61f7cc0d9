"""The search loop: bilevel training of a supernet, evaluation, derivation and the run directory.

``run_search(cfg, run_dir)`` is a plain function (the Hydra entry point only calls it), so tests and
notebooks run a search without a command line. Each epoch writes ``genotype.json``,
``checkpoints/last.pt`` and TensorBoard events; the end of the run writes ``summary.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas import checkpoint
from nas.config import SearchConfig, search_config_from_dict, summary_of
from nas.data import BatchCycle, build_search_data
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
from nas.genotype import Genotype, save_json
from nas.logging import TBLogger
from nas.ops import resolve_space
from nas.search.algorithms import Batch, DartsAlgorithm
from nas.search.architect import Architect
from nas.search.derive import derive_genotype
from nas.search.diagnostics import alpha_entropy, hessian_eig_max, param_free_scalars
from nas.search.optimizers import make_optimizers
from nas.search.perturbation import select_by_perturbation
from nas.search.random_genotype import sample_genotype
from nas.search.remedies import EarlyStop, aux_skip_coefficient, perturbed_alphas
from nas.search.supernet import Supernet
from nas.search.weights import weight_step

log = logging.getLogger("nas.search")
CHECKPOINT_FORMAT = "nas-search/1"


def build_algorithm(cfg: SearchConfig) -> DartsAlgorithm:
    if cfg.algorithm.name == "asap":
        from nas.search.asap import AsapAlgorithm

        return AsapAlgorithm(cfg.algorithm)
    return DartsAlgorithm()


class SearchRun:
    """Everything one search holds: data, supernet, optimizers, algorithm, logger and progress."""

    def __init__(self, cfg: SearchConfig, run_dir: str | Path, resume_state: dict[str, Any] | None = None,
                 world: World | None = None, device: str | None = None):
        self.cfg = cfg
        self.world = world or World()
        self.run_dir = Path(run_dir)
        prepare_run_dir(self.run_dir, cfg.overwrite, cfg.resume)
        check_batch_divides(cfg.batch_size, self.world)
        seed_everything(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = select_device(device or cfg.device)
        self.op_names = resolve_space(cfg.space.name, cfg.space.ops)
        self.algorithm = build_algorithm(cfg)
        a = cfg.algorithm
        self.edge_norm = a.partial_channels > 1 if a.edge_norm is None else a.edge_norm
        self.early_stop = EarlyStop(a.early_stop)
        self._hessian_batch: Batch | None = None

        d = cfg.data
        self.data = build_search_data(
            name=d.name, root=d.root, download=d.download, train_portion=d.train_portion,
            image_size=d.image_size, batch_size=cfg.batch_size, seed=cfg.seed, device=self.device,
            limit=d.limit, channels_last=cfg.channels_last, shard=(self.world.rank, self.world.size),
        )
        m = cfg.model
        self.model = Supernet(
            self.op_names, channels=m.channels, layers=m.layers, num_classes=self.data.num_classes, nodes=m.nodes,
            stem_multiplier=m.stem_multiplier, in_channels=self.data.in_channels,
            alpha_init_std=0.0 if cfg.algorithm.name == "asap" else 1e-3,
            partial_channels=cfg.algorithm.partial_channels, edge_norm=self.edge_norm, recompute=cfg.recompute,
        )
        if cfg.sync_bn and self.world.active:
            sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

        self.w_optimizer, self.scheduler, self.a_optimizer = make_optimizers(self.model, cfg.optim, cfg.epochs)
        self.architect = Architect(self.model, self.a_optimizer, self.w_optimizer, order=cfg.algorithm.order,
                                   fd_epsilon=cfg.algorithm.fd_epsilon, average=self.world.average_)
        self.val_stream = BatchCycle(self.data.val)
        self.tb = TBLogger(self.run_dir / "tb", enabled=self.world.is_main)
        self.timer = EpochTimer()
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # steps of the current epoch done (non-zero only mid-epoch)
        self.epoch_loss, self.epoch_acc = RunningMean(), RunningMean()
        self.global_step = 0
        self.signals = StopSignals()
        self.history: list[dict[str, float]] = []
        self.stop_reason: str | None = None
        self.algorithm.setup(self)
        if cfg.resume:
            self.load_checkpoint(cfg.resume, resume_state)

    # -- the two updates of a step -------------------------------------------------------------
    @property
    def weight_lr(self) -> float:
        return self.w_optimizer.param_groups[0]["lr"]

    def arch_step(self, train_batch: Batch, val_batch: Batch) -> torch.Tensor:
        self.model.train()
        return self.architect.step(train_batch, val_batch, self.weight_lr)

    def weight_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        weights = None
        a = self.cfg.algorithm
        if a.perturb == "uniform":  # SDARTS-RS: the weights train for a neighbourhood of the alphas
            with torch.no_grad():
                weights = self.model.arch.edge_weights(perturbed_alphas(self.model.arch.alphas(), a.perturb_epsilon))
        return weight_step(self.model, self.w_optimizer, batch, self.cfg.optim.grad_clip, self.world.average_, weights)

    def autocast(self) -> torch.autocast:
        """bf16 autocast when ``amp=bf16`` (a win on recent GPUs, a loss on CPUs)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    # -- evaluation and derivation --------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, edge_weights: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Loss and accuracy of the supernet on the whole alpha split, unaugmented, in eval mode
        (``edge_weights``: with these op weights instead of the architecture's)."""
        self.world.broadcast_buffers_(self.model)  # one set of BatchNorm statistics for all ranks
        self.model.eval()
        loss, correct, count = 0.0, 0.0, 0
        for x, y in self.data.val_eval.batches(0):
            with self.autocast():
                logits = self.model(x, edge_weights).float()
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            count += len(y)
        self.model.train()
        loss, correct, count = self.world.sum_([loss, correct, count])  # each rank saw a shard
        return {"loss/val": loss / count, "acc/val": correct / count}

    def genotype(self) -> Genotype:
        with torch.no_grad():
            weights, scales = self.model.arch.edge_weights(), self.model.arch.edge_scales()
        d = self.cfg.derive
        return derive_genotype(weights, self.op_names, self.cfg.model.nodes, d.k, d.max_skip, scales)

    def diagnose(self, genotype: Genotype, weights: dict[str, torch.Tensor],
                 alive: dict[str, torch.Tensor]) -> dict[str, float]:
        """Collapse diagnostics of this epoch: parameter-free ops in the derived cells, op-weight
        entropy and, every ``diagnostics.hessian_every`` epochs, the dominant Hessian eigenvalue."""
        out: dict[str, float] = dict(param_free_scalars(genotype))
        out.update({f"alpha/entropy/{k}": alpha_entropy(weights[k], alive[k]) for k in weights})
        every = self.cfg.diagnostics.hessian_every
        if every and self.epoch % every == 0:
            if self._hessian_batch is None:  # one fixed validation batch, so epochs compare
                self._hessian_batch = next(iter(self.data.val_eval.batches(0)))
            out["hessian/eig_max"] = hessian_eig_max(self.model, self._hessian_batch,
                                                     self.cfg.diagnostics.hessian_iters, tol=1e-3)
        return out

    # -- epochs ---------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        steps = len(self.data.train)
        cap = self.cfg.max_steps_per_epoch
        return min(steps, cap) if cap else steps

    def train_epoch(self) -> dict[str, float]:
        """Train until the end of the current epoch, starting where a resumed run left off."""
        steps = self.steps_per_epoch()
        if self.step_in_epoch == 0:
            self.epoch_loss, self.epoch_acc = RunningMean(), RunningMean()
        batches = self.data.train.batches(self.epoch, start=self.step_in_epoch)
        bar = progress(range(self.step_in_epoch, steps), steps - self.step_in_epoch,
                       f"epoch {self.epoch + 1}/{self.cfg.epochs}", self.cfg.log.progress and self.world.is_main)
        every = self.cfg.checkpoint.every_steps
        total_steps = self.cfg.epochs * steps
        for _, train_batch in zip(bar, batches):
            if self.cfg.algorithm.aux_skip:
                self.model.arch.aux_skip = aux_skip_coefficient(self.global_step, total_steps)
            with self.autocast():
                metrics = self.algorithm.step(self, train_batch, next(self.val_stream))
            self.global_step += 1
            self.step_in_epoch += 1
            received = self.world.agree_(metrics, self.signals.received)
            check_finite(metrics, self.global_step, self.run_dir, "try a lower optim.w_lr or optim.alpha_lr")
            n = len(train_batch[1])
            self.epoch_loss.update(metrics["loss/train"], n)
            self.epoch_acc.update(metrics["acc/train"], n)
            if self.global_step % self.cfg.log.every_steps == 0:
                self.log_step(metrics)
            if self.stop_reason is None:
                self.stop_reason = self.algorithm.stop_reason(self)
            if received:
                self.save_checkpoint()
                raise Interrupted(received, self.global_step, self.run_dir)
            if self.stop_reason is not None:
                break
            if every and self.global_step % every == 0 and self.step_in_epoch < steps:
                self.save_checkpoint()
        return {"loss/train": self.epoch_loss.mean, "acc/train": self.epoch_acc.mean}

    def log_step(self, metrics: dict[str, torch.Tensor]) -> None:
        scalars = {k: float(v) for k, v in metrics.items()}
        scalars["lr/weights"] = self.weight_lr
        self.tb.scalars(scalars, self.global_step)
        with torch.no_grad():
            self.tb.alphas(self.model.arch.edge_weights(), self.op_names, self.global_step,
                           alive=self.model.arch.alive())

    def end_epoch(self, train_metrics: dict[str, float], epoch_time: float) -> Genotype:
        metrics = {**train_metrics, **self.evaluate(), "lr/weights": self.weight_lr, "time/epoch_s": epoch_time}
        self.algorithm.on_epoch_end(self)
        genotype = self.genotype()
        with torch.no_grad():
            weights, alive = self.model.arch.edge_weights(), self.model.arch.alive()
        metrics.update(self.diagnose(genotype, weights, alive))
        self.history.append({"epoch": self.epoch, **metrics})
        reason = self.early_stop.check(genotype, weights)
        if reason and self.stop_reason is None:
            self.stop_reason = reason
            log.info(reason)
        step = self.global_step
        self.tb.scalars(metrics, step)
        self.tb.alphas(weights, self.op_names, step, alive=alive)
        if self.cfg.log.images:
            self.tb.alpha_images(weights, self.op_names, step, alive=alive)
            self.tb.genotype(genotype, step)
        self.tb.flush()
        if self.world.is_main:
            save_json(self.run_dir / "genotype.json", genotype, self.genotype_meta())
        self.save_checkpoint()
        log.info("epoch %d/%d  train loss %.3f acc %.3f  val loss %.3f acc %.3f  %.1fs", self.epoch, self.cfg.epochs,
                 metrics["loss/train"], metrics["acc/train"], metrics["loss/val"], metrics["acc/val"], epoch_time)
        return genotype

    def genotype_meta(self) -> dict[str, Any]:
        alphas = {k: v.detach().cpu().tolist() for k, v in self.model.arch.alphas().items()}
        return {
            "algorithm": self.cfg.algorithm.name,
            "order": self.cfg.algorithm.order,
            "space": list(self.op_names),
            "epoch": self.epoch,
            "seed": self.cfg.seed,
            "data": self.cfg.data.name,
            "k": self.cfg.derive.k,
            "val_acc": self.history[-1]["acc/val"] if self.history else None,
            "config": summary_of(self.cfg),
            "alphas": alphas,
            "alive": {k: v.cpu().tolist() for k, v in self.model.arch.alive().items()},
        }

    def run(self) -> dict[str, Any]:
        genotype = self.genotype()
        with self.signals:
            while self.epoch < self.cfg.epochs and self.stop_reason is None:
                self.timer.start_epoch()
                train_metrics = self.train_epoch()
                self.scheduler.step()
                self.epoch += 1
                self.step_in_epoch = 0
                genotype = self.end_epoch(train_metrics, self.timer.end_epoch())
            if self.cfg.derive.method == "perturbation":
                genotype = self.select_by_perturbation()
        summary = {
            "genotype": genotype.to_dict(),
            "genotype_text": genotype.to_text(),
            "epochs": self.epoch,
            "final_val_acc": self.history[-1]["acc/val"] if self.history else None,
            "final_val_loss": self.history[-1]["loss/val"] if self.history else None,
            "wall_time_s": self.timer.wall_time,
            "epoch_times_s": self.timer.epoch_times,
            "steps": self.global_step,
            "run_dir": str(self.run_dir),
            "seed": self.cfg.seed,
            "stop_reason": self.stop_reason or "epoch limit",
            "history": self.history,
            "diagnostics": [{k: v for k, v in h.items() if k.split("/")[0] in ("collapse", "hessian")
                             or k.startswith("alpha/entropy")} | {"epoch": h["epoch"]} for h in self.history],
            "derive_method": self.cfg.derive.method,
            "device": str(self.device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "world_size": self.world.size,
            "rank_alpha_divergence": self.world.max_divergence(self.model.alphas()),
        }
        summary.update(self.algorithm.summary(self))
        if self.world.is_main:
            write_json(self.run_dir / "summary.json", summary)
        self.tb.text("genotype_final", f"```\n{genotype.to_text()}\n```", self.global_step)
        self.tb.close()
        return summary

    def select_by_perturbation(self) -> Genotype:
        """DARTS-PT: the final genotype from measured op contributions, fine-tuning between decisions."""
        tune_steps = self.cfg.derive.tune_epochs * self.steps_per_epoch()
        stream = BatchCycle(self.data.train, epoch=self.epoch)

        def accuracy(weights: dict[str, torch.Tensor]) -> float:
            return self.evaluate(weights)["acc/val"]

        def tune() -> None:
            for _ in range(tune_steps):
                with self.autocast():
                    self.weight_step(next(stream))

        log.info("DARTS-PT selection: %d fine-tuning steps between decisions", tune_steps)
        genotype = select_by_perturbation(self.model.arch, accuracy, tune, self.cfg.model.nodes, self.cfg.derive.k,
                                          self.cfg.seed)
        if self.world.is_main:
            save_json(self.run_dir / "genotype.json", genotype, {**self.genotype_meta(), "derive_method": "perturbation"})
        return genotype

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "early_stop": self.early_stop.state_dict(),
            "val_stream": self.val_stream.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_means": [self.epoch_loss.state(), self.epoch_acc.state()],
            "global_step": self.global_step,
            "history": self.history,
            "epoch_times": self.timer.epoch_times,
            "rng": rng_state(),
            "config": summary_of(self.cfg),
        }

    def save_checkpoint(self) -> None:
        if self.world.is_main:
            checkpoint.save_rotating(self.run_dir / "checkpoints", self.state_dict())

    def load_checkpoint(self, path: str | Path, state: dict[str, Any] | None = None) -> None:
        if state is None:
            state = checkpoint.load(path, map_location=self.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a search checkpoint (format {state.get('format')!r})")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this supernet: {str(exc).splitlines()[0]}") from None
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.early_stop.load_state_dict(state["early_stop"])
        self.val_stream.load_state_dict(state["val_stream"])
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.epoch_loss.load_state(state["epoch_means"][0])
        self.epoch_acc.load_state(state["epoch_means"][1])
        self.global_step = state["global_step"]
        self.history = list(state["history"])
        self.timer.epoch_times = list(state["epoch_times"])
        set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d", path, self.epoch)


def run_random_baseline(cfg: SearchConfig, run_dir: Path, world: World) -> dict[str, Any]:
    """``algorithm=random``: a genotype drawn uniformly under derivation's rules (k parents per node,
    no zero op), seeded by ``seed``, written like a search's results so that "searched vs random at
    equal retrain budget" is the same ``nas-train genotype=<run dir>`` command for both."""
    prepare_run_dir(run_dir, cfg.overwrite, None)
    timer = EpochTimer()
    op_names = resolve_space(cfg.space.name, cfg.space.ops)
    genotype = sample_genotype(op_names, cfg.model.nodes, cfg.derive.k, cfg.seed)
    diagnostics = param_free_scalars(genotype)
    meta = {"algorithm": "random", "space": list(op_names), "seed": cfg.seed, "k": cfg.derive.k,
            "config": summary_of(cfg)}
    summary = {
        "genotype": genotype.to_dict(), "genotype_text": genotype.to_text(), "epochs": 0, "steps": 0,
        "final_val_acc": None, "final_val_loss": None, "stop_reason": "random sample", "seed": cfg.seed,
        "run_dir": str(run_dir), "diagnostics": [{"epoch": 0, **diagnostics}], "history": [],
        "wall_time_s": timer.wall_time, "world_size": world.size,
    }
    if world.is_main:
        save_json(run_dir / "genotype.json", genotype, meta)
        write_json(run_dir / "summary.json", summary)
        tb = TBLogger(run_dir / "tb")
        tb.scalars(diagnostics, 0)
        if cfg.log.images:
            tb.genotype(genotype, 0)
        tb.text("genotype_final", f"```\n{genotype.to_text()}\n```", 0)
        tb.close()
    return summary


def run_search(cfg: SearchConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run a whole search into ``run_dir``; returns what ``summary.json`` holds.

    With ``cfg.resume`` the saved run continues in its own directory, with its saved config: only
    where it runs (``device``, ``threads``) and the progress bar come from ``cfg``. Launched by
    ``torchrun``, every process runs this; they share rank 0's run directory.
    """
    world, device = init_world(cfg.device)
    run_dir = world.broadcast_object(str(run_dir))
    if cfg.algorithm.name == "random":
        return run_random_baseline(cfg, Path(run_dir), world)
    if not cfg.resume:
        return SearchRun(cfg, run_dir, world=world, device=device).run()
    saved, state, saved_dir = resumed_config(cfg, CHECKPOINT_FORMAT, "search", search_config_from_dict)
    return SearchRun(saved, saved_dir, resume_state=state, world=world, device=device).run()
