"""Structured configs: the schema behind ``configs/`` and the start-up validation of every value.

Hydra composes the YAML groups in ``configs/`` on top of these dataclasses, so a misspelt key or a
value of the wrong type fails during composition; ``validate_*`` then checks the ranges that types
cannot express. Everything here fails with a one-line ``ConfigError`` (exit code 2) before any data
is loaded or any output is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from nas.data.datasets import DATASETS
from nas.errors import ConfigError


@dataclass
class DataConfig:
    name: str = "cifar10"  # sample | cifar10 | cifar100 | imagefolder | synthetic (random, for benchmarks)
    root: str | None = None  # required for cifar10/cifar100/imagefolder (their group files set it)
    download: bool = False
    train_portion: float = 0.5  # share of the train set for the weights; the rest trains the alphas
    image_size: int = 32
    limit: int | None = None  # use only this many training images (quick runs)


@dataclass
class SpaceConfig:
    name: str = "darts"  # a registered search space
    ops: list[str] | None = None  # a custom list of registered ops instead of the named space


@dataclass
class SupernetConfig:
    channels: int = 16
    layers: int = 8
    nodes: int = 4
    stem_multiplier: int = 3


@dataclass
class EarlyStopConfig:
    """DARTS+ (Liang et al., 2019): end the search before the derived cell collapses."""

    max_skip: int | None = None  # stop once the derived normal cell holds this many skip_connect
    stable_epochs: int | None = None  # stop once the argmax ops have not changed for this many epochs


@dataclass
class AlgorithmConfig:
    name: str = "darts"  # darts | asap | random (a uniformly sampled genotype: the baseline)
    order: int = 1  # 1: first order, 2: unrolled second order
    fd_epsilon: float = 0.01  # finite-difference step of the 2nd-order hypergradient (DARTS: 0.01)
    # ASAP (used when name == asap)
    t0: float = 1.6
    beta: float = 0.95  # temperature decay per epoch, whatever the schedule unit
    threshold: float | None = None  # prune below this weight; None: 0.4 / |ops|
    threshold_gamma: float = 1.0  # optional threshold schedule θ(t) = θ0·γᵗ per epoch (1: constant)
    grace_temperature: float = 1.0  # arch steps and pruning only while T < this
    schedule_unit: str = "step"  # step | epoch: how often T is updated
    # Collapse remedies, all off by default (docs: README "Collapse-resistant search")
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    partial_channels: int = 1  # PC-DARTS: 1/K of the channels enter each mixed edge (1: all)
    edge_norm: bool | None = None  # PC-DARTS edge normalisation; None: on when partial_channels > 1
    perturb: str = "none"  # none | uniform: SDARTS-RS noise on the alphas in the weight step
    perturb_epsilon: float = 0.03  # half-width of the uniform noise
    aux_skip: bool = False  # DARTS-: an identity path on every edge, its weight decaying 1 → 0

@dataclass
class OptimConfig:
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    alpha_lr: float = 3e-4
    alpha_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    alpha_weight_decay: float = 1e-3


@dataclass
class DeriveConfig:
    k: int = 2  # parents kept per intermediate node
    max_skip: int | None = None  # P-DARTS: at most this many skip_connect in the derived normal cell
    method: str = "argmax"  # argmax | perturbation (DARTS-PT, for the final genotype)
    tune_epochs: int = 1  # perturbation: epochs of supernet fine-tuning between two decisions


@dataclass
class DiagnosticsConfig:
    hessian_every: int = 1  # dominant Hessian eigenvalue of L_val wrt the alphas every N epochs (0: off)
    hessian_iters: int = 20  # power iterations (each about one backward pass)


@dataclass
class LogConfig:
    every_steps: int = 50  # step scalars (losses, lr, alphas) every this many steps
    images: bool = True  # alpha heatmaps and cell drawings each epoch
    progress: bool = True  # progress bar


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # also checkpoint every this many steps (0: only at the end of each epoch)


@dataclass
class SearchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: SupernetConfig = field(default_factory=SupernetConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    epochs: int = 50
    batch_size: int = 64
    max_steps_per_epoch: int | None = None  # cap the steps of an epoch (smoke tests)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch CPU threads; None: torch's default
    channels_last: bool = True
    amp: str = "none"  # none | bf16 (autocast; pays on CUDA, not on CPU)
    recompute: bool = False  # recompute cell activations in backward: less memory, one more forward per step
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch, not each rank's slice
    overwrite: bool = False
    resume: str | None = None


def register_configs() -> None:
    """Make the schemas known to Hydra (the primary configs list them first in their defaults)."""
    cs = ConfigStore.instance()
    cs.store(name="search_schema", node=SearchConfig)


def check(ok: bool, message: str) -> None:
    """Raise a one-line ``ConfigError`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def validate_data(d: DataConfig, reads_data: bool = True) -> None:
    """Checks shared by the search and the train config (``reads_data=False``: no root needed)."""
    check(d.name in DATASETS, f"unknown data.name '{d.name}'; choose one of {', '.join(DATASETS)}")
    check(d.root or d.name in ("sample", "synthetic") or not reads_data,
          f"data={d.name} needs data.root=<folder> (where the dataset is or should be downloaded)")


def validate_search(cfg: SearchConfig) -> None:
    from nas.ops import resolve_space
    from nas.search.derive import check_k

    check(cfg.epochs >= 1, f"epochs must be a positive integer, got {cfg.epochs}")
    check(cfg.batch_size >= 1, f"batch_size must be positive, got {cfg.batch_size}")
    check(cfg.max_steps_per_epoch is None or cfg.max_steps_per_epoch >= 1,
           f"max_steps_per_epoch must be positive, got {cfg.max_steps_per_epoch}")
    check(0.0 < cfg.data.train_portion < 1.0,
           f"data.train_portion must lie in (0, 1), got {cfg.data.train_portion}")
    validate_data(cfg.data)
    check(cfg.data.image_size >= 8, f"data.image_size must be at least 8, got {cfg.data.image_size}")
    check(cfg.data.limit is None or cfg.data.limit >= 2, f"data.limit must be at least 2, got {cfg.data.limit}")
    resolve_space(cfg.space.name, cfg.space.ops)
    m = cfg.model
    check(m.channels >= 2 and m.channels % 2 == 0, f"model.channels must be a positive even number, got {m.channels}")
    check(m.layers >= 1, f"model.layers must be positive, got {m.layers}")
    check(m.nodes >= 1, f"model.nodes must be positive, got {m.nodes}")
    a = cfg.algorithm
    check(a.name in ("darts", "asap", "random"), f"unknown algorithm.name '{a.name}'; choose darts, asap or random")
    check(a.order in (1, 2), f"algorithm.order must be 1 or 2, got {a.order}")
    check(a.fd_epsilon > 0, f"algorithm.fd_epsilon must be positive, got {a.fd_epsilon}")
    check(a.t0 > 0, f"algorithm.t0 must be positive, got {a.t0}")
    check(0 < a.beta <= 1, f"algorithm.beta must lie in (0, 1], got {a.beta}")
    check(a.threshold is None or 0 <= a.threshold < 1, f"algorithm.threshold must lie in [0, 1), got {a.threshold}")
    check(a.threshold_gamma > 0, f"algorithm.threshold_gamma must be positive, got {a.threshold_gamma}")
    check(a.grace_temperature > 0, f"algorithm.grace_temperature must be positive, got {a.grace_temperature}")
    check(a.schedule_unit in ("step", "epoch"),
           f"algorithm.schedule_unit must be step or epoch, got '{a.schedule_unit}'")
    e = a.early_stop
    check(e.max_skip is None or e.max_skip >= 0, f"algorithm.early_stop.max_skip must be >= 0, got {e.max_skip}")
    check(e.stable_epochs is None or e.stable_epochs >= 1,
          f"algorithm.early_stop.stable_epochs must be positive, got {e.stable_epochs}")
    check(a.partial_channels >= 1 and m.channels % a.partial_channels == 0,
          f"algorithm.partial_channels={a.partial_channels} must be a positive divisor of model.channels={m.channels}")
    check(a.perturb in ("none", "uniform"), f"algorithm.perturb must be none or uniform, got '{a.perturb}'")
    check(a.perturb_epsilon >= 0, f"algorithm.perturb_epsilon must be >= 0, got {a.perturb_epsilon}")
    d = cfg.derive
    check(d.max_skip is None or d.max_skip >= 0, f"derive.max_skip must be >= 0, got {d.max_skip}")
    check(d.method in ("argmax", "perturbation"), f"derive.method must be argmax or perturbation, got '{d.method}'")
    check(d.tune_epochs >= 0, f"derive.tune_epochs must be >= 0, got {d.tune_epochs}")
    g = cfg.diagnostics
    check(g.hessian_every >= 0, f"diagnostics.hessian_every must be >= 0, got {g.hessian_every}")
    check(g.hessian_iters >= 1, f"diagnostics.hessian_iters must be positive, got {g.hessian_iters}")
    o = cfg.optim
    check(o.w_lr > 0 and o.alpha_lr > 0, "optim.w_lr and optim.alpha_lr must be positive")
    check(0 <= o.w_lr_min <= o.w_lr, f"optim.w_lr_min must lie in [0, w_lr], got {o.w_lr_min}")
    check(o.grad_clip > 0, f"optim.grad_clip must be positive, got {o.grad_clip}")
    check(len(o.alpha_betas) == 2 and all(0 <= b < 1 for b in o.alpha_betas),
           f"optim.alpha_betas must be two numbers in [0, 1), got {list(o.alpha_betas)}")
    check(cfg.amp in ("none", "bf16"), f"amp must be none or bf16, got '{cfg.amp}'")
    check_k(cfg.derive.k)
    check(cfg.checkpoint.every_steps >= 0, f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")
    check(cfg.log.every_steps >= 1, f"log.every_steps must be positive, got {cfg.log.every_steps}")


def to_validated(cfg: Any, validate: Callable[[Any], None]) -> Any:
    """The validated dataclass behind a composed config (or the dataclass itself)."""
    if isinstance(cfg, DictConfig):
        try:
            obj: Any = OmegaConf.to_object(cfg)
        except Exception as exc:  # OmegaConf raises several types for a bad value
            raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]}") from None
    else:
        obj = cfg
    validate(obj)
    return obj


def from_saved_dict(schema: type, data: dict[str, Any], validate: Callable[[Any], None]) -> Any:
    """A validated config from the plain dict a checkpoint or ``genotype.json`` stores."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
    except Exception as exc:  # OmegaConf raises several types for a key or value that does not fit
        raise ConfigError(f"saved config does not fit this version of nas: {str(exc).splitlines()[0]}") from None
    return to_validated(merged, validate)


def to_search_config(cfg: DictConfig | SearchConfig) -> SearchConfig:
    return to_validated(cfg, validate_search)


def search_config_from_dict(data: dict[str, Any]) -> SearchConfig:
    return from_saved_dict(SearchConfig, data, validate_search)


def summary_of(cfg: Any) -> dict[str, Any]:
    """A plain-dict copy of a config for meta blocks and checkpoints."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
