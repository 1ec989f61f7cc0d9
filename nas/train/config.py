"""The structured config of ``nas-train`` and its start-up validation.

It shares the ``data`` group (and its schema, ``nas.config.DataConfig``) with ``nas-search``, so
``data=sample``, ``data=cifar10`` and ``data=imagefolder data.root=...`` mean the same in both
commands; ``data.train_portion`` is a search setting and is ignored here. Every bad value fails with
one ``ConfigError`` line (exit code 2) before any data is read or anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from nas.config import CheckpointConfig, DataConfig, LogConfig, check, from_saved_dict, to_validated, validate_data


@dataclass
class TrainDataConfig(DataConfig):
    workers: int | None = None  # DataLoader workers of ImageFolder data; None: min(8, CPU count)


@dataclass
class NetworkConfig:
    name: str = "cifar"  # cifar | imagenet (DESIGN §6)
    channels: int = 36
    layers: int = 20
    auxiliary: bool = True  # build the auxiliary head (its loss weight: aux_weight)
    num_classes: int = 10  # classifier size when no data is read (profile_only); training uses the data's


@dataclass
class TrainOptimConfig:
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    schedule: str = "cosine"  # cosine (to lr_min over the epochs) | exponential (× gamma per epoch)
    lr_min: float = 0.0
    gamma: float = 0.97
    grad_clip: float = 5.0


@dataclass
class AugmentConfig:
    cutout: int = 16  # side of the square cut from each training image; 0: off
    # ImageFolder data only:
    color_jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.2])  # brightness contrast saturation hue
    min_scale: float = 0.08  # smallest area share of RandomResizedCrop


@dataclass
class TrainConfig:
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    optim: TrainOptimConfig = field(default_factory=TrainOptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    genotype: str = "DARTS_V2"  # a published name, a genotype.json (or a search run dir), or DARTS text
    aux_weight: float = 0.4
    drop_path_prob: float = 0.2  # reached at the last epoch, ramped linearly from 0
    label_smoothing: float = 0.0
    seed: int = 0
    epochs: int = 600
    batch_size: int = 96
    max_steps_per_epoch: int | None = None  # cap the steps of an epoch (smoke tests)
    profile_only: bool = False  # print and record params / MACs, read no data, train nothing
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch CPU threads; None: torch's default
    channels_last: bool = True
    amp: str = "none"  # none | bf16: autocast of forward and loss (pays on recent GPUs, not on CPUs)
    compile: bool = False  # torch.compile the network (minutes of compiling first; pays on long GPU runs)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch, not each rank's slice
    overwrite: bool = False
    resume: str | None = None  # a run directory or a checkpoint: that run continues, with its saved config


def register_train_configs() -> None:
    """Make the schema known to Hydra (``train.yaml`` lists it first in its defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def validate_train(cfg: TrainConfig) -> None:
    from nas.train.networks import check_image_size, network_spec

    check(cfg.epochs >= 1, f"epochs must be a positive integer, got {cfg.epochs}")
    check(cfg.batch_size >= 1, f"batch_size must be positive, got {cfg.batch_size}")
    check(cfg.max_steps_per_epoch is None or cfg.max_steps_per_epoch >= 1,
           f"max_steps_per_epoch must be positive, got {cfg.max_steps_per_epoch}")
    check(cfg.threads is None or cfg.threads >= 1, f"threads must be positive, got {cfg.threads}")
    check(cfg.amp in ("none", "bf16"), f"amp must be none or bf16, got '{cfg.amp}'")
    d = cfg.data
    validate_data(d, reads_data=not cfg.profile_only)
    check(d.limit is None or d.limit >= 1, f"data.limit must be positive, got {d.limit}")
    check(d.workers is None or d.workers >= 0, f"data.workers must be >= 0, got {d.workers}")
    m = cfg.model
    network_spec(m.name)
    check(m.channels >= 2 and m.channels % 2 == 0, f"model.channels must be a positive even number, got {m.channels}")
    check(m.layers >= 1, f"model.layers must be positive, got {m.layers}")
    check(m.num_classes >= 1, f"model.num_classes must be positive, got {m.num_classes}")
    check(d.image_size >= 1, f"data.image_size must be positive, got {d.image_size}")
    check_image_size(m.name, m.layers, m.auxiliary, d.image_size)
    o = cfg.optim
    check(o.lr > 0, f"optim.lr must be positive, got {o.lr}")
    check(0 <= o.momentum < 1, f"optim.momentum must lie in [0, 1), got {o.momentum}")
    check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    check(o.schedule in ("cosine", "exponential"), f"optim.schedule must be cosine or exponential, got '{o.schedule}'")
    check(0 <= o.lr_min <= o.lr, f"optim.lr_min must lie in [0, optim.lr], got {o.lr_min}")
    check(0 < o.gamma <= 1, f"optim.gamma must lie in (0, 1], got {o.gamma}")
    check(o.grad_clip > 0, f"optim.grad_clip must be positive, got {o.grad_clip}")
    a = cfg.augment
    check(a.cutout >= 0, f"augment.cutout must be >= 0, got {a.cutout}")
    jitter = list(a.color_jitter)
    check(jitter == [] or (len(jitter) == 4 and min(jitter) >= 0 and jitter[3] <= 0.5),
           f"augment.color_jitter must be [] or 4 numbers >= 0 (brightness, contrast, saturation, hue <= 0.5), "
           f"got {jitter}")
    check(0 < a.min_scale <= 1, f"augment.min_scale must lie in (0, 1], got {a.min_scale}")
    check(cfg.aux_weight >= 0, f"aux_weight must be >= 0, got {cfg.aux_weight}")
    check(0 <= cfg.drop_path_prob < 1, f"drop_path_prob must lie in [0, 1), got {cfg.drop_path_prob}")
    check(0 <= cfg.label_smoothing < 1, f"label_smoothing must lie in [0, 1), got {cfg.label_smoothing}")
    check(cfg.log.every_steps >= 1, f"log.every_steps must be positive, got {cfg.log.every_steps}")
    check(cfg.checkpoint.every_steps >= 0, f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")


def to_train_config(cfg: DictConfig | TrainConfig) -> TrainConfig:
    return to_validated(cfg, validate_train)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return from_saved_dict(TrainConfig, data, validate_train)
