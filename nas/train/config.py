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

from nas.config import (
    DataConfig,
    RunConfig,
    SpaceConfig,
    check,
    check_limits,
    check_memory,
    from_saved_dict,
    option,
    to_validated,
)


@dataclass
class TrainDataConfig(DataConfig):
    workers: int | None = option(None, ge=0, le=256)  # DataLoader workers of ImageFolder data; None: min(8, CPUs)


@dataclass
class NetworkConfig:
    name: str = option("cifar", choices=("cifar", "imagenet", "nb201"))  # DESIGN §6; nb201: space=nb201's network
    channels: int = option(36, ge=2, le=1024)
    layers: int = option(20, ge=3, le=100)  # 3 or more: a normal cell and the two reduction cells
    auxiliary: bool = option(True, free="a switch")  # build the auxiliary head (its loss weight: aux_weight)
    num_classes: int = option(10, ge=1, le=100_000)  # classifier size when no data is read (profile_only)

    def validate(self) -> None:
        check(self.channels % 2 == 0, f"model.channels must be even (FactorizedReduce halves it), got {self.channels}")


@dataclass
class TrainOptimConfig:
    lr: float = option(0.025, gt=0.0, le=10.0)
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    weight_decay: float = option(3e-4, ge=0.0, le=1.0)
    schedule: str = option("cosine", choices=("cosine", "exponential"))  # cosine to lr_min | × gamma per epoch
    lr_min: float = option(0.0, ge=0.0)
    gamma: float = option(0.97, gt=0.0, le=1.0)
    grad_clip: float = option(5.0, gt=0.0)
    nesterov: bool = option(False, free="a switch")  # Nesterov momentum (the NAS-Bench-201 protocol)

    def validate(self) -> None:
        check(self.lr_min <= self.lr, f"optim.lr_min must lie in [0, optim.lr], got {self.lr_min}")


@dataclass
class AugmentConfig:
    cutout: int = option(16, ge=0, le=1024)  # side of the square cut from each training image; 0: off
    # ImageFolder data only: brightness, contrast, saturation, hue ([] : off)
    color_jitter: list[float] = option(ge=0.0, le=1.0, each=True, factory=lambda: [0.4, 0.4, 0.4, 0.2])
    min_scale: float = option(0.08, gt=0.0, le=1.0)  # smallest area share of RandomResizedCrop

    def validate(self) -> None:
        jitter = list(self.color_jitter)
        check(jitter == [] or (len(jitter) == 4 and jitter[3] <= 0.5),
              f"augment.color_jitter must be [] or 4 numbers >= 0 (brightness, contrast, saturation, hue <= 0.5), "
              f"got {jitter}")


@dataclass
class TrainConfig(RunConfig):
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    optim: TrainOptimConfig = field(default_factory=TrainOptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    genotype: str = option("DARTS_V2", free="a published name, a genotype.json (or run dir) or DARTS text; "
                                            "checked when it is read")
    aux_weight: float = option(0.4, ge=0.0, le=100.0)
    drop_path_prob: float = option(0.2, ge=0.0, lt=1.0)  # reached at the last epoch, ramped linearly from 0
    label_smoothing: float = option(0.0, ge=0.0, lt=1.0)
    epochs: int = option(600, ge=1, le=100_000)
    batch_size: int = option(96, ge=2, le=65_536)  # BatchNorm after the 1×1 aux head needs 2 images or more
    profile_only: bool = option(False, free="a switch")  # print and record params / MACs, train nothing
    compile: bool = option(False, free="a switch")  # torch.compile the network (pays on long GPU runs)

    def validate(self) -> None:
        from nas.spaces import make_space
        from nas.spaces.darts_networks import check_image_size

        make_space(self.space).validate_model(self.model)
        if self.model.name != "nb201":
            check_image_size(self.model.name, self.model.layers, self.model.auxiliary, self.data.image_size)
        if self.profile_only:  # nothing is read or trained
            return
        self.data.check_root()
        check_memory(train_memory(self), f"a training step at data.image_size={self.data.image_size}, "
                                         f"batch_size={self.batch_size}")


def train_memory(cfg: TrainConfig) -> float:
    """A rough upper estimate (bytes) of one training step: about 48 stored tensors per cell (8 ops
    of a DARTS cell, several tensors each) at each cell's resolution and width."""
    m, s = cfg.model, cfg.data.image_size
    channels, pixels, floats = m.channels, float(s * s), 0.0
    if m.name == "imagenet":
        pixels /= 64
    for layer in range(m.layers):
        if layer in (m.layers // 3, 2 * m.layers // 3):
            channels, pixels = channels * 2, pixels / 4
        floats += 48 * channels * pixels
    return floats * cfg.batch_size * 4 / 2


def register_train_configs() -> None:
    """Make the schema known to Hydra (``train.yaml`` lists it first in its defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def validate_train(cfg: TrainConfig) -> None:
    check_limits(cfg)


def to_train_config(cfg: DictConfig | TrainConfig) -> TrainConfig:
    return to_validated(cfg, validate_train)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return from_saved_dict(TrainConfig, data, validate_train)
