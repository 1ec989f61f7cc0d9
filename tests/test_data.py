"""Tests of the data layer: embedded sample, search split, device-side batching, dataset loaders.

Everything runs offline on the embedded sample or on tiny image trees made in tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import (
    BatchCycle,
    ImageTensors,
    TensorBatches,
    build_search_data,
    load_images,
    load_sample,
    split_indices,
)
from nas.data.sample import decode_with_pil, sample_path
from nas.errors import DataError

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def tiny_batches(n: int = 40, batch_size: int = 8, augment: bool = False, seed: int = 0, **kwargs) -> TensorBatches:
    generator = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(n) % 4
    return TensorBatches(images, labels, batch_size, MEAN, STD, augment=augment, seed=seed, pad=2, **kwargs)


def as_list(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in batches]


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))


# --- embedded sample ---------------------------------------------------------------------------


def test_sample_file_is_small() -> None:
    assert os.path.getsize(sample_path()) <= 5 * 2**20


@pytest.mark.parametrize("split, per_class", [("train", 600), ("test", 100)])
def test_sample_shapes_and_balance(split: str, per_class: int) -> None:
    data = load_sample(split)
    assert isinstance(data, ImageTensors)
    assert data.images.shape == (10 * per_class, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64
    assert torch.bincount(data.labels, minlength=10).tolist() == [per_class] * 10
    assert data.classes[0] == "airplane" and data.classes[-1] == "truck" and len(data.classes) == 10
    # Real photos, not blank decodes: the pixel mean is close to CIFAR-10's.
    means = data.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(data.mean), atol=0.03)


def test_sample_is_cached_and_bad_split_rejected() -> None:
    assert load_sample("train").images is load_sample("train").images
    with pytest.raises(DataError, match="train"):
        load_sample("validation")


def test_pil_fallback_decodes_identically() -> None:
    with np.load(sample_path()) as npz:
        blob, offsets = npz["test_bytes"], npz["test_offsets"][:21].tolist()
    assert torch.equal(decode_with_pil(blob, offsets), load_sample("test").images[:20])


def test_load_images_sample_resizes() -> None:
    data = load_images("sample", root="ignored", split="val", image_size=16)
    assert data.images.shape == (1000, 3, 16, 16) and data.images.dtype == torch.uint8


# --- split -------------------------------------------------------------------------------------


def test_split_deterministic_disjoint_covering() -> None:
    a_w, a_a = split_indices(101, 0.5, seed=3)
    b_w, b_a = split_indices(101, 0.5, seed=3)
    assert torch.equal(a_w, b_w) and torch.equal(a_a, b_a)
    assert len(a_w) == 50 and len(a_a) == 51
    assert torch.equal(torch.sort(torch.cat([a_w, a_a])).values, torch.arange(101))
    c_w, _ = split_indices(101, 0.5, seed=4)
    assert not torch.equal(a_w, c_w)


def test_split_portion_respected() -> None:
    weight, alpha = split_indices(100, 0.29, seed=0)
    assert (len(weight), len(alpha)) == (29, 71)


@pytest.mark.parametrize("n, portion", [(10, 0.0), (10, 1.0), (10, -0.5), (10, 1.5), (10, 0.05), (1, 0.5)])
def test_split_bad_portion(n: int, portion: float) -> None:
    with pytest.raises(DataError):
        split_indices(n, portion, seed=0)


# --- TensorBatches -----------------------------------------------------------------------------


def test_batches_shapes_len_and_drop_last() -> None:
    tb = tiny_batches(n=42, batch_size=8)
    assert len(tb) == 5
    out = as_list(tb.batches(0))
    assert len(out) == 5 and all(x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 for x, _ in out)
    assert all(y.shape == (8,) and y.dtype == torch.int64 for _, y in out)
    keep = tiny_batches(n=42, batch_size=8, drop_last=False)
    assert len(keep) == 6 and [len(y) for _, y in keep.batches(0)] == [8, 8, 8, 8, 8, 2]
    # Without drop_last every image appears exactly once per epoch.
    assert sorted(torch.cat([y for _, y in keep.batches(1)]).tolist()) == sorted(keep.labels.tolist())


def test_batch_size_larger_than_split() -> None:
    with pytest.raises(DataError, match="batch_size 64 is larger than the 40 images"):
        tiny_batches(n=40, batch_size=64)


def test_normalization() -> None:
    images = torch.tensor([0, 255, 128], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 2, 2).contiguous()
    tb = TensorBatches(images, torch.zeros(3, dtype=torch.int64), 3, MEAN, STD, augment=False, seed=0)
    x, _ = next(tb.batches(0))
    expected = sorted([(0 - 0.5) / 0.25, (1 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25])
    assert sorted(x[:, 0, 0, 0].tolist()) == pytest.approx(expected, abs=1e-5)
    data = load_sample("test")
    real = TensorBatches(data.images, data.labels, 500, data.mean, data.std, augment=False, seed=0)
    x = torch.cat([x for x, _ in real.batches(0)])
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


@pytest.mark.parametrize("augment", [False, True])
def test_epoch_replay_and_differs(augment: bool) -> None:
    tb = tiny_batches(augment=augment)
    first = as_list(tb.batches(2))
    assert same(first, as_list(tb.batches(2)))
    assert same(first, as_list(tiny_batches(augment=augment).batches(2)))
    assert not same(first, as_list(tb.batches(3)))
    assert not same(first, as_list(tiny_batches(augment=augment, seed=1).batches(2)))


@pytest.mark.parametrize("augment", [False, True])
def test_start_skips_exactly(augment: bool) -> None:
    tb = tiny_batches(augment=augment)
    full = as_list(tb.batches(1))
    assert same(full[3:], as_list(tb.batches(1, start=3)))
    assert as_list(tb.batches(1, start=len(tb))) == []
    with pytest.raises(DataError):
        tb.batches(1, start=len(tb) + 1)


def test_augmentation_crops_and_flips() -> None:
    plain, aug = tiny_batches(augment=False), tiny_batches(augment=True)
    (xp, yp), (xa, ya) = next(plain.batches(0)), next(aug.batches(0))
    assert torch.equal(yp, ya) and xa.shape == xp.shape  # same order, same shapes
    assert not torch.equal(xa, xp)
    # Every augmented image is a crop of its zero-padded original, maybe mirrored.
    padded = torch.nn.functional.pad(aug.images.float(), (2, 2, 2, 2))
    raw = (xa * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255
    for img in raw.round():
        found = any(
            torch.equal(cand, img) or torch.equal(cand.flip(2), img)
            for src in padded
            for dy in range(5)
            for dx in range(5)
            for cand in [src[:, dy : dy + 8, dx : dx + 8]]
        )
        assert found


def test_channels_last_output() -> None:
    x, _ = next(tiny_batches(augment=True, channels_last=True).batches(0))
    assert x.is_contiguous(memory_format=torch.channels_last)
    x2, _ = next(tiny_batches(augment=True).batches(0))
    assert torch.equal(x, x2)


# --- BatchCycle --------------------------------------------------------------------------------


def test_cycle_rolls_over_epochs() -> None:
    tb = tiny_batches(n=24, batch_size=8)
    cycle = BatchCycle(tb)
    got = [cycle.next() for _ in range(7)]
    expected = as_list(tb.batches(0)) + as_list(tb.batches(1)) + as_list(tb.batches(2))[:1]
    assert same(got, expected)
    assert cycle.state_dict() == {"epoch": 2, "position": 1}


def test_cycle_resume() -> None:
    tb = tiny_batches(n=24, batch_size=8, augment=True)
    cycle = BatchCycle(tb)
    for _ in range(5):
        next(cycle)
    state = cycle.state_dict()
    reference = [next(cycle) for _ in range(6)]
    resumed = BatchCycle(tiny_batches(n=24, batch_size=8, augment=True))
    resumed.load_state_dict(state)
    assert same(reference, [next(resumed) for _ in range(6)])
    with pytest.raises(DataError):
        resumed.load_state_dict({"epoch": 0})


# --- search data -------------------------------------------------------------------------------


def test_build_search_data_on_sample() -> None:
    data = build_search_data("sample", "", False, 0.5, 32, 16, seed=0, limit=200)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert data.train.num_images == data.val.num_images == 100
    assert data.train.augment and data.val.augment
    counts = torch.bincount(data.train.labels, minlength=10) + torch.bincount(data.val.labels, minlength=10)
    assert counts.tolist() == [20] * 10  # limit keeps a class-balanced subset
    x, y = next(data.train.batches(0))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)
    again = build_search_data("sample", "", False, 0.5, 32, 16, seed=0, limit=200)
    assert torch.equal(again.val.labels, data.val.labels)


# --- dataset loaders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_offline(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_images(name, str(tmp_path), "train", download=False)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "data.download=true" in message and "+experiment=quickstart" in message


def make_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.{'PNG' if i % 2 else 'png'}")


def test_imagefolder_flat_and_split(tmp_path: Path) -> None:
    make_tree(tmp_path / "flat")
    data = load_images("imagefolder", str(tmp_path / "flat"), "train", image_size=32)
    assert data.images.shape == (6, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1] and data.classes == ["cat", "dog"]
    assert data.mean == (0.485, 0.456, 0.406)
    make_tree(tmp_path / "split" / "train")
    make_tree(tmp_path / "split" / "val", per_class=1)
    assert len(load_images("imagefolder", str(tmp_path / "split"), "train", image_size=16)) == 6
    val = load_images("imagefolder", str(tmp_path / "split"), "test", image_size=16)
    assert val.images.shape == (2, 3, 16, 16) and val.labels.tolist() == [0, 1]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_images("imagefolder", str(tmp_path / "missing"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found under"):
        load_images("imagefolder", str(tmp_path / "empty"), "train")
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_images("imagefolder", str(tmp_path / "empty"), "train")
    make_tree(tmp_path / "tree")
    with pytest.raises(DataError, match="no val images"):
        load_images("imagefolder", str(tmp_path / "tree"), "val")
    (tmp_path / "tree" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        load_images("imagefolder", str(tmp_path / "tree"), "train")


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_images("mnist", "", "train")
