"""Streaming ImageFolder batches: images decoded and augmented per epoch in DataLoader workers.

Why a second data path next to ``TensorBatches``: ImageNet-style sets (a million photos) do not
fit in memory as tensors, and their protocol's RandomResizedCrop and ColorJitter act on each
full-resolution photo. Here worker processes decode and transform images while the main process
trains. ``FolderBatches`` offers the same face as ``TensorBatches`` (``batches(epoch)`` yielding
normalised ``(x, y)`` on the device, ``len()`` = batches per epoch), so the train loop does not
care which path feeds it.

Why the order and the random numbers are made here and not by the DataLoader: a run resumed in the
middle of an epoch must see exactly the batches it would have seen without the interruption. The
order of epoch ``e`` is a permutation seeded by ``(seed, e)``, and each image's augmentation draws
from a torch seed made of that epoch seed and the image's index, so neither depends on which worker
decodes the image, how many workers there are, or where in the epoch the run started.
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from nas.data.datasets import IMAGENET_MEAN, IMAGENET_STD, list_images, report_conversions, rgb_image, split_dir
from nas.data.loader import Batch, balanced_subset, derive_seed
from nas.data.transforms import eval_resize, folder_eval_transform, folder_train_transform
from nas.errors import DataError


def _ignore_stop_signals(worker: int) -> None:
    """A loader worker ignores SIGTERM and SIGINT: the main process checkpoints, then stops them."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


_LIVE_LOADERS: weakref.WeakSet = weakref.WeakSet()  # worker iterators not yet shut down


@atexit.register
def _kill_leftover_workers() -> None:
    """At exit, end the workers of loaders nobody shut down (an epoch cut short by an error or a
    stop). Registered after multiprocessing's own exit handler, so it runs first: that handler
    stops daemonic children with SIGTERM, which these workers ignore, and would then wait forever."""
    for iterator in list(_LIVE_LOADERS):
        for worker in getattr(iterator, "_workers", []):
            if worker.is_alive():
                worker.kill()


class FolderDataset(Dataset):
    """(transformed image, label) for each file; ``draft`` lets JPEG decoding shrink large photos early."""

    def __init__(self, paths: list[Path], labels: list[int], transform: Callable[[Any], torch.Tensor],
                 draft: int | None = None):
        self.paths, self.labels, self.transform, self.draft = paths, labels, transform, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as img:
                if self.draft:
                    img.draft("RGB", (self.draft, self.draft))  # never below the requested size
                img = rgb_image(img)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataError(f"cannot read image {str(path)!r}: {reason}") from None
        return self.transform(img), self.labels[index]


def _last_line(err: Exception) -> str:
    """The original message of an error re-raised from a worker (which prepends a whole traceback)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


class _SeededEpoch(Dataset):
    """One epoch's view of a dataset: image ``i`` is transformed under its own torch seed.

    ``fork_rng`` keeps the caller's random state untouched when there are no worker processes.
    """

    def __init__(self, dataset: FolderDataset, epoch_seed: int):
        self.dataset, self.epoch_seed = dataset, epoch_seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.epoch_seed ^ (index * 0x9E3779B97F4A7C15)) % 2**63)
            return self.dataset[index]


class FolderBatches:
    def __init__(self, dataset: FolderDataset, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                 workers: int, device: str | torch.device = "cpu", channels_last: bool = False,
                 name: str = "this split", shard: tuple[int, int] = (0, 1)):
        if len(dataset) == 0:
            raise DataError(f"{name} has no images")
        if drop_last and batch_size > len(dataset):
            raise DataError(f"batch_size {batch_size} is larger than the {len(dataset)} images of {name}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.seed, self.workers, self.device, self.channels_last = seed, workers, torch.device(device), channels_last
        self.shard = shard  # (rank, world): this process reads slice rank::world of every global batch

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.num_images, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch``, skipping the first ``start`` of them (for exact resume)."""
        if not 0 <= start <= len(self):
            raise DataError(f"start must be between 0 and {len(self)} batches, got {start}")
        epoch_seed = derive_seed(self.seed, epoch)
        n = self.num_images
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))
        else:
            order = torch.arange(n)
        rank, world = self.shard
        bs = self.batch_size
        batches = [order[i * bs : (i + 1) * bs][rank::world].tolist() for i in range(start, len(self))]
        loader = DataLoader(
            _SeededEpoch(self.dataset, epoch_seed), batch_sampler=[b for b in batches if b],
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            # A SIGTERM to the whole process group (SLURM, docker) must reach only the main process,
            # which checkpoints first; the workers end when it does.
            worker_init_fn=_ignore_stop_signals if self.workers else None,
        )
        return self._generate(loader)

    def _generate(self, loader: DataLoader) -> Iterator[Batch]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        iterator = iter(loader)
        if self.workers:
            _LIVE_LOADERS.add(iterator)
        try:
            for x, y in iterator:
                yield (x.to(self.device, non_blocking=True, memory_format=fmt),
                       y.to(self.device, non_blocking=True))
        except DataError as err:
            raise DataError(_last_line(err)) from None
        finally:  # an epoch cut short (max_steps_per_epoch, a stop) ends its workers now
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            _LIVE_LOADERS.discard(iterator)


def build_folder_data(root: str, image_size: int, batch_size: int, seed: int, workers: int | None = None,
                      device: str | torch.device = "cpu", channels_last: bool = False,
                      jitter: tuple[float, ...] = (0.4, 0.4, 0.4, 0.2), min_scale: float = 0.08,
                      limit: int | None = None,
                      shard: tuple[int, int] = (0, 1)) -> tuple[FolderBatches, FolderBatches, list[str]]:
    """(augmented train batches, evaluation batches, class names) of ``root/train`` and ``root/val|test``.

    ``limit`` keeps a seeded, class-balanced subset of that many training images (quick runs).
    """
    root_path = Path(root).expanduser()
    train_paths, train_labels, classes = list_images(split_dir(root_path, "train"))
    report_conversions(root_path, train_paths)
    test_dir = split_dir(root_path, "test")
    test_paths, test_labels, test_classes = list_images(test_dir)
    if test_classes != classes:
        raise DataError(f"the classes of {str(test_dir)!r} differ from the training classes: "
                        f"{len(test_classes)} folders vs {len(classes)}")
    if limit is not None and limit < len(train_paths):
        keep = balanced_subset(torch.as_tensor(train_labels), limit, seed).tolist()
        train_paths, train_labels = [train_paths[i] for i in keep], [train_labels[i] for i in keep]
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    common = dict(seed=seed, workers=workers, device=device, channels_last=channels_last, shard=shard)
    train = FolderBatches(
        FolderDataset(train_paths, train_labels,
                      folder_train_transform(image_size, IMAGENET_MEAN, IMAGENET_STD, jitter, min_scale)),
        batch_size, shuffle=True, drop_last=True, name="the training images", **common)
    test = FolderBatches(
        FolderDataset(test_paths, test_labels, folder_eval_transform(image_size, IMAGENET_MEAN, IMAGENET_STD),
                      draft=eval_resize(image_size)),
        batch_size, shuffle=False, drop_last=False, name="the evaluation images", **common)
    return train, test, classes
