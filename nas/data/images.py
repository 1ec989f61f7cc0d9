"""The in-memory form of a dataset split that every loader returns, and the normalisation constants.

A module of its own so that the loaders (``datasets``, the shipped ``sample``) all import it and
none imports another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageTensors:
    """One split of a dataset, decoded: what every loader returns and ``TensorBatches`` consumes.

    ``mean``/``std`` travel with the pixels so that the batcher always normalises with the
    statistics of the dataset the images came from, not with whatever a config happens to say.
    """

    images: torch.Tensor  # uint8, N×C×H×W
    labels: torch.Tensor  # int64, N
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)
