"""Whole datasets as in-memory uint8 tensors.

Why in memory: CIFAR-sized search data (50k × 3 × 32 × 32 bytes = 150 MB) fits easily on any GPU,
and keeping it there as uint8 lets ``TensorBatches`` crop, flip and normalise whole batches with a
few tensor ops instead of a DataLoader running per-image PIL transforms in worker processes, which
on small images is the bottleneck of a search epoch. Every loader here therefore returns the same
``ImageTensors``: pixels N×C×H×W uint8, labels N int64, and the normalisation constants to use.
"""

from __future__ import annotations

import logging
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas.data.images import (  # noqa: F401  (re-exported: the loaders' vocabulary)
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTensors,
)
from nas.data.sample import load_sample
from nas.errors import DataError

log = logging.getLogger("nas.data")

DATASETS = ("sample", "cifar10", "cifar100", "imagefolder", "npz", "synthetic")
SYNTHETIC_SIZES = {"train": 5120, "val": 1024, "test": 1024}
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_images(name: str, root: str, split: str, download: bool = False, image_size: int = 32) -> ImageTensors:
    """Load one split of a dataset into memory as uint8 tensors.

    ``name`` is ``"sample"`` (the CIFAR-10 subset embedded in the package, ``root`` ignored),
    ``"cifar10"``/``"cifar100"`` (torchvision's binary release under ``root``) or ``"imagefolder"``
    (one sub-folder per class under ``root``, optionally split into ``train/`` and ``val/``/``test/``).
    ``split`` is ``"train"``, ``"val"`` or ``"test"``; CIFAR and the sample only have a train and a
    test set, so ``"val"`` means their test set. Images come out ``image_size``×``image_size``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    if name == "sample":

        data = load_sample("train" if split == "train" else "test")
    elif name in ("cifar10", "cifar100"):
        data = _load_cifar(name, root, split, download)
    elif name == "synthetic":
        data = synthetic_images(SYNTHETIC_SIZES[split], image_size, seed=SPLITS.index(split))
    elif name == "npz":
        data = load_npz(root, "train" if split == "train" else "test")
    else:
        return _load_imagefolder(root, split, image_size)
    if image_size != data.images.shape[-1]:
        data = ImageTensors(
            resize_images(data.images, image_size), data.labels, list(data.classes), data.mean, data.std
        )
    return data


def save_npz(path: str | Path, data: ImageTensors) -> None:
    """One split as ``<split>.npz`` (``data=npz`` reads a folder of them): any dataset a script makes,
    such as the planted-cell benchmark's, is then read like every other."""
    np.savez_compressed(path, images=data.images.numpy(), labels=data.labels.numpy(), classes=np.array(data.classes),
                        mean=np.array(data.mean), std=np.array(data.std))


def load_npz(root: str, split: str) -> ImageTensors:
    """``root/<split>.npz`` as written by ``save_npz``."""
    path = Path(root).expanduser() / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"{str(path)!r} not found: data=npz reads train.npz and test.npz from data.root")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = torch.from_numpy(npz["images"]), torch.from_numpy(npz["labels"]).to(torch.int64)
            return ImageTensors(images, labels, [str(c) for c in npz["classes"]],
                                tuple(float(v) for v in npz["mean"]), tuple(float(v) for v in npz["std"]))
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"cannot read {str(path)!r}: {err}") from None


def synthetic_images(n: int, image_size: int, seed: int, classes: int = 10) -> ImageTensors:
    """Seeded random images and labels: for benchmarks and smoke runs that must not depend on data."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    return ImageTensors(images, labels, [f"class{i}" for i in range(classes)], (0.5, 0.5, 0.5), (0.29, 0.29, 0.29))


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 N×C×H×W batch to size×size, antialiased, in chunks to bound peak memory.

    Mainly for tiny smoke tests (CIFAR at 16×16) or upscaling CIFAR for a larger network.
    """
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + 4096] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _load_cifar(name: str, root: str, split: str, download: bool) -> ImageTensors:
    """Read torchvision's CIFAR arrays directly (``.data``/``.targets``): no per-item transform."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, pretty, mean, std = (
        (CIFAR10, "CIFAR-10", CIFAR10_MEAN, CIFAR10_STD)
        if name == "cifar10"
        else (CIFAR100, "CIFAR-100", CIFAR100_MEAN, CIFAR100_STD)
    )
    hint = "set data.download=true to fetch it, or use +experiment=quickstart to run offline on the embedded sample"
    try:
        dataset = cls(root=root, train=split == "train", download=download)
    except (OSError, RuntimeError, EOFError, tarfile.TarError) as err:
        if download:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataError(
                f"{pretty} not found under {root!r} and downloading it failed ({reason}); "
                "check the network or the path, or use +experiment=quickstart to run offline on the embedded sample"
            ) from None
        raise DataError(f"{pretty} not found under {root!r}; {hint}") from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return ImageTensors(images, labels, list(dataset.classes), mean, std)


def split_dir(root: Path, split: str) -> Path:
    """Pick the folder of a split: ``root/train`` (or ``root`` itself) for train, ``root/val|test`` otherwise."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {str(root)!r}")
    if split == "train":
        if (root / "train").is_dir():
            return root / "train"
        held_out = [d for d in ("val", "test") if (root / d).is_dir()]
        if held_out:
            raise DataError(f"found {str(root / held_out[0])!r} but no train folder next to it under {str(root)!r}")
        return root
    for candidate in (split, "val" if split == "test" else "test"):
        if (root / candidate).is_dir():
            return root / candidate
    raise DataError(f"no {split} images: neither {str(root / 'val')!r} nor {str(root / 'test')!r} exists")


def list_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """List images ImageFolder-style: sorted class sub-folders, files found recursively, sorted."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(
            p
            for p in (folder / cls).rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise DataError(f"class folder {str(folder / cls)!r} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataError(
            f"no images found under {str(folder)!r}; expected one sub-folder per class containing "
            f"{', '.join(IMAGE_EXTENSIONS)} files"
        )
    if len(classes) < 2:
        raise DataError(f"{str(folder)!r} holds one class ({classes[0]!r}); a classifier needs two or more "
                        "class sub-folders")
    return paths, labels, classes


def rgb_image(img: Any) -> Any:
    """Any PIL image as 8-bit RGB, correctly: 16-bit and 32-bit greyscale are scaled down to 0..255
    (PIL's own ``convert("RGB")`` clips them, so 16-bit photos come out nearly white), palette
    images with transparency go through RGBA, CMYK and the rest through ``convert``. The result is
    always decoded, so it outlives the open file."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8))  # mode L
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGB":
        img.load()  # decoded now: the caller may close the file right after
        return img
    return img.convert("RGB")


def unusual_modes(paths: list[Path], every: int = 50) -> set[str]:
    """The PIL modes other than RGB among every ``every``-th image: what ``rgb_image`` will convert."""
    from PIL import Image

    modes = set()
    for path in paths[::every]:
        try:
            with Image.open(path) as img:
                modes.add(img.mode)
        except (OSError, ValueError):
            continue  # reported where the image is decoded
    return modes - {"RGB"}


def _decode_into(path: Path, size: int, out: np.ndarray) -> None:
    """Decode one image into ``out`` (size×size×3): shorter side resized to ``size``, then centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            # draft() lets the JPEG decoder downscale by 1/2..1/8 while decoding: large photos
            # then cost a fraction of a full decode. It never goes below the requested size.
            img.draft("RGB", (size, size))
            img = rgb_image(img)
            w, h = img.size
            scale = size / min(w, h)
            new_w, new_h = max(size, int(w * scale)), max(size, int(h * scale))
            if (new_w, new_h) != (w, h):
                img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = int(round((new_w - size) / 2)), int(round((new_h - size) / 2))
            img = img.crop((left, top, left + size, top + size))
            out[...] = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"cannot read image {str(path)!r}: {reason}") from None


def report_conversions(folder: Path, paths: list[Path]) -> None:
    modes = unusual_modes(paths)
    if modes:
        log.info("%s holds %s images: converting them to 8-bit RGB", folder, ", ".join(sorted(modes)))


def _load_imagefolder(root: str, split: str, image_size: int) -> ImageTensors:
    """Decode a whole ImageFolder split into memory with a small thread pool (PIL releases the GIL)."""
    folder = split_dir(Path(root).expanduser(), split)
    paths, labels, classes = list_images(folder)
    report_conversions(folder, paths)
    pixels = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list() re-raises the first DataError of any worker here, in the caller's thread.
        list(pool.map(lambda i: _decode_into(paths[i], image_size, pixels[i]), range(len(paths))))
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.as_tensor(labels, dtype=torch.int64), classes, IMAGENET_MEAN, IMAGENET_STD)
