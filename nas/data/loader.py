"""Batches straight from tensors held on the training device: a DataLoader replacement.

Why not ``torch.utils.data.DataLoader``: for CIFAR-sized images the per-image Python transforms
and worker processes cost more than the forward pass of a small search network, and a DARTS step
needs batches from two loaders at once. Here the whole split sits on the device as uint8, and each
batch is one gather (random crop + flip together) plus one fused normalisation.

Why explicit epochs: the order and the augmentation of epoch ``e`` come from a generator seeded by
``(seed, e)`` alone, so any epoch can be replayed, and a run resumed from a checkpoint at batch
``k`` of epoch ``e`` sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nas.data.datasets import load_images
from nas.data.split import split_indices
from nas.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 64-bit seed for the stream ``keys`` of ``seed``.

    Plain ``seed + epoch`` would make epoch 1 of seed 0 equal epoch 0 of seed 1; SeedSequence
    hashes the whole tuple, so distinct tuples give unrelated streams.
    """
    entropy = [int(seed) % 2**64, *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


class TensorBatches:
    """Seeded, replayable, optionally augmented batches of an in-memory uint8 image split.

    ``batches(epoch)`` yields float32 ``x`` normalised as ``(x / 255 - mean) / std`` and int64
    ``y``, both on ``device``. Under data parallelism (``shard=(rank, world)``) ``batch_size`` is
    the global batch and this process yields its slice ``rank::world`` of each one: every rank
    draws the same epoch permutation, so the slices are disjoint and together make the global
    batch (what ``DistributedSampler`` does, but replayable from any step). With ``augment`` every image gets a random crop from its zero-padded
    version (``pad`` pixels each side, like ``RandomCrop(size, padding=pad)``) and a random
    horizontal flip. Random numbers are drawn on the CPU, so the order and the augmentation of an
    epoch are identical on every device.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: tuple[float, ...] | list[float],
        std: tuple[float, ...] | list[float],
        augment: bool,
        seed: int,
        device: str | torch.device = "cpu",
        drop_last: bool = True,
        channels_last: bool = False,
        pad: int = 4,
        name: str = "this split",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"images must be a uint8 N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
        n, channels = int(images.shape[0]), int(images.shape[1])
        if labels.shape != (n,):
            raise DataError(f"expected {n} labels for {n} images, got labels of shape {tuple(labels.shape)}")
        if n == 0:
            raise DataError(f"{name} has no images")
        if len(mean) != channels or len(std) != channels:
            raise DataError(f"mean/std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > n:
            raise DataError(f"batch_size {batch_size} is larger than the {n} images of {name}")
        if pad < 0:
            raise DataError(f"pad must be >= 0, got {pad}")
        rank, world = shard
        if not 0 <= rank < world:
            raise DataError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        if drop_last and batch_size % world:
            raise DataError(f"batch_size {batch_size} does not split evenly over {world} processes")
        self.device = torch.device(device)
        self.image_shape = (channels, int(images.shape[2]), int(images.shape[3]))
        if augment and pad:
            # Kept padded once, instead of padding every batch: 1.56x the memory at 32x32/pad 4,
            # in exchange for a crop that is a plain index into a view of all possible crops.
            self._source = F.pad(images.to(self.device), (pad, pad, pad, pad)).contiguous()
        else:
            self._source = images.to(self.device).contiguous()
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.batch_size = batch_size
        self.augment = bool(augment)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.pad = int(pad)
        self.name = name
        self.shard = (int(rank), int(world))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        std_t = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift: one multiply and one subtract per batch.
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = mean_t / std_t

    @property
    def images(self) -> torch.Tensor:
        """The uint8 N×C×H×W images on the device (a view, without the augmentation padding)."""
        if self._source.shape[1:] == self.image_shape:
            return self._source
        _, h, w = self.image_shape
        return self._source[:, :, self.pad : self.pad + h, self.pad : self.pad + w]

    @property
    def num_images(self) -> int:
        return int(self._source.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.num_images, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch``, skipping the first ``start`` of them (for exact resume).

        Skipped batches cost nothing: the whole epoch's permutation and augmentation parameters
        are drawn up front, so batch ``k`` is the same whether or not batches before it were made.
        """
        # Checked here, not in the generator below, so that a bad call fails where it is made.
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start <= len(self):
            raise DataError(f"start must be between 0 and {len(self)} batches, got {start}")
        return self._generate(epoch, start)

    def _generate(self, epoch: int, start: int) -> Iterator[Batch]:
        n = self.num_images
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(n, generator=generator).to(self.device)
        if self.augment:
            shifts = torch.randint(0, 2 * self.pad + 1, (2, n), generator=generator).to(self.device)
            flips = (torch.randint(0, 2, (n,), generator=generator) == 1).to(self.device)
            crops = self._all_crops()
        rank, world = self.shard
        for i in range(start, len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            mine = slice(lo + rank, hi, world)  # this process's share of the global batch
            idx = order[mine]
            if len(idx) == 0:  # a short last batch may leave a rank without images
                continue
            if self.augment:
                x = crops[idx, shifts[0, mine], shifts[1, mine]]
                x = torch.where(flips[mine, None, None, None], x.flip(3), x)
            else:
                x = self._source[idx]
            yield self._normalize(x), self.labels[idx]

    def _all_crops(self) -> torch.Tensor:
        """A (N, 2p+1, 2p+1, C, H, W) view of every crop of every padded image, without copying.

        ``crops[i, dy, dx]`` is image i cropped at offset (dy, dx) of its zero-padded version, as
        ``RandomCrop(size, padding=pad)`` would; indexing it with three index tensors then gathers a
        whole augmented batch in one kernel (about 2.5x faster on CPU than an explicit index grid).
        """
        n, c, hp, wp = self._source.shape
        _, h, w = self.image_shape
        s_n, s_c, s_h, s_w = self._source.stride()
        return self._source.as_strided((n, hp - h + 1, wp - w + 1, c, h, w), (s_n, s_h, s_w, s_c, s_h, s_w))

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(dtype=torch.float32, memory_format=fmt)
        return x.mul_(self._scale).sub_(self._shift)


class BatchCycle:
    """An endless stream over a ``TensorBatches``, rolling into the next epoch when one ends.

    Why: the DARTS alpha step needs one validation batch per weight step. Creating a fresh
    iterator (or DataLoader) per step restarts the epoch and is slow; this keeps one iterator and
    a tiny resumable state ``{"epoch", "position"}`` (batches already taken from that epoch).
    """

    def __init__(self, batches: TensorBatches, epoch: int = 0) -> None:
        self.batches = batches
        self.epoch = int(epoch)
        self.position = 0
        self._iterator: Iterator[Batch] | None = None

    def __iter__(self) -> BatchCycle:
        return self

    def __next__(self) -> Batch:
        if self.position >= len(self.batches):
            self.epoch += 1
            self.position = 0
            self._iterator = None
        if self._iterator is None:
            self._iterator = self.batches.batches(self.epoch, self.position)
        batch = next(self._iterator)
        self.position += 1
        return batch

    def next(self) -> Batch:
        """Same as ``next(cycle)``, for call sites that read better as a method."""
        return self.__next__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue exactly after the last batch taken when ``state`` was saved."""
        try:
            epoch, position = int(state["epoch"]), int(state["position"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"batch cycle state must be {{'epoch': int, 'position': int}}, got {state!r}") from None
        if epoch < 0 or not 0 <= position <= len(self.batches):
            raise DataError(
                f"batch cycle state {state!r} does not fit this data ({len(self.batches)} batches per epoch)"
            )
        self.epoch, self.position, self._iterator = epoch, position, None


@dataclass
class SearchData:
    """Everything a search needs from the data layer: both halves and the shape of the input."""

    train: TensorBatches  # weight part: the network's weights learn from these
    val: TensorBatches  # alpha part: the architecture parameters learn from these
    val_eval: TensorBatches  # the alpha part again, unaugmented and complete, to measure accuracy
    num_classes: int
    in_channels: int
    image_size: int
    classes: list[str]


def balanced_subset(labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Indices of ``limit`` images drawn round-robin over classes, in random order within each.

    Why: tiny smoke runs (``limit`` of a few hundred) should still see every class about equally,
    which the first ``limit`` images of a dataset sorted by class would not.
    """
    n = labels.shape[0]
    generator = torch.Generator().manual_seed(derive_seed(seed, 0x5B5E7))
    perm = torch.randperm(n, generator=generator)
    shuffled = labels.cpu()[perm]
    by_class = torch.argsort(shuffled, stable=True)  # grouped by class, random within a class
    grouped = shuffled[by_class]
    counts = torch.bincount(grouped)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[grouped]  # 0 for each class's first image, 1 for its second...
    key = rank * n + by_class  # by rank first; ties between classes broken by the random position
    chosen = perm[by_class[torch.argsort(key)[:limit]]]
    return torch.sort(chosen).values


def build_search_data(
    name: str,
    root: str,
    download: bool,
    train_portion: float,
    image_size: int,
    batch_size: int,
    seed: int,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    channels_last: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> SearchData:
    """Load a dataset's train split and cut it into the DARTS weight and alpha parts.

    Both parts use the training augmentation, as in DARTS: the alpha part is a held-out piece of
    the train set, not the test set, which stays untouched for the final evaluation. ``limit``
    keeps a seeded, class-balanced subset of that many images first (``None``: all of them).
    """
    data = load_images(name, root, "train", download=download, image_size=image_size)
    images, labels = data.images, data.labels
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise DataError(f"limit must be a positive integer or null, got {limit!r}")
        if limit < len(labels):
            keep = balanced_subset(labels, limit, seed)
            images, labels = images[keep], labels[keep]
    weight_idx, alpha_idx = split_indices(len(labels), train_portion, seed)
    common = dict(
        batch_size=batch_size,
        mean=data.mean,
        std=data.std,
        augment=True,
        device=device,
        drop_last=True,
        channels_last=channels_last,
        shard=shard,
    )
    train = TensorBatches(
        images[weight_idx],
        labels[weight_idx],
        seed=derive_seed(seed, 1),
        name="the weight part of the search split",
        **common,
    )
    val = TensorBatches(
        images[alpha_idx],
        labels[alpha_idx],
        seed=derive_seed(seed, 2),
        name="the alpha part of the search split",
        **common,
    )
    val_eval = TensorBatches(
        images[alpha_idx],
        labels[alpha_idx],
        batch_size=batch_size,
        mean=data.mean,
        std=data.std,
        augment=False,
        seed=derive_seed(seed, 3),
        device=device,
        drop_last=False,
        channels_last=channels_last,
        name="the alpha part of the search split",
        shard=shard,
    )
    return SearchData(
        train=train,
        val=val,
        val_eval=val_eval,
        num_classes=data.num_classes,
        in_channels=int(images.shape[1]),
        image_size=int(images.shape[-1]),
        classes=list(data.classes),
    )
