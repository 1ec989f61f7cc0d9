"""The two batch streams of a retrain: augmented training batches and the unaugmented test split.

CIFAR-10/100 and the embedded sample are small enough to live on the device as uint8 tensors
(``TensorBatches``: crop + flip per batch, no workers); ImageFolder trees are streamed through
DataLoader workers (``FolderBatches``), because ImageNet-sized sets do not fit in memory and their
protocol transforms each full-size photo. Both give ``batches(epoch)`` and ``len()``, so the loop
does not tell them apart. Cutout is applied by the loop on whole batches of either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nas.data import TensorBatches, load_images
from nas.data.folder import FolderBatches, build_folder_data
from nas.data.loader import balanced_subset, derive_seed
from nas.train.config import TrainConfig

Batches = TensorBatches | FolderBatches


@dataclass
class TrainData:
    train: Batches
    test: Batches
    classes: list[str]
    in_channels: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_train_data(cfg: TrainConfig, device: torch.device, shard: tuple[int, int] = (0, 1)) -> TrainData:
    """The retrain's data; ``shard=(rank, world)`` gives this process its slice of every global batch."""
    d = cfg.data
    if d.name == "imagefolder":
        train, test, classes = build_folder_data(
            d.root, d.image_size, cfg.batch_size, seed=derive_seed(cfg.seed, 1), workers=d.workers, device=device,
            channels_last=cfg.channels_last, jitter=tuple(cfg.augment.color_jitter),
            min_scale=cfg.augment.min_scale, limit=d.limit, shard=shard)
        return TrainData(train, test, classes, in_channels=3)
    train_split = load_images(d.name, d.root, "train", download=d.download, image_size=d.image_size)
    test_split = load_images(d.name, d.root, "test", download=d.download, image_size=d.image_size)
    images, labels = train_split.images, train_split.labels
    if d.limit is not None and d.limit < len(labels):
        keep = balanced_subset(labels, d.limit, cfg.seed)
        images, labels = images[keep], labels[keep]
    common = dict(batch_size=cfg.batch_size, mean=train_split.mean, std=train_split.std, device=device,
                  channels_last=cfg.channels_last, shard=shard)
    train = TensorBatches(images, labels, augment=True, seed=derive_seed(cfg.seed, 1), drop_last=True,
                          name="the training split", **common)
    test = TensorBatches(test_split.images, test_split.labels, augment=False, seed=0, drop_last=False,
                         name="the test split", **common)
    return TrainData(train, test, list(train_split.classes), in_channels=int(images.shape[1]))
