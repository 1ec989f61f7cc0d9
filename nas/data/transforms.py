"""Training augmentations of the retrain: batched cutout, and the per-image pipelines of ImageFolder data.

Cutout (DeVries & Taylor, 2017) zeroes one square per image. It works on whole normalised batches,
on the device, with its random numbers drawn from a seeded CPU generator: one call per batch
instead of a Python transform per image, and the same squares on every device for a given seed.
Zero after normalisation is the dataset mean, as in the DARTS code (which cuts after Normalize).

The ImageFolder pipelines are the ImageNet protocol of DARTS (and of most mobile-network papers):
random-resized crop, flip and colour jitter for training; resize to size·256/224 and a centre crop
for evaluation, so that at 224 px the classic "resize 256, crop 224" comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

EVAL_RESIZE_RATIO = 256 / 224


def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``length``×``length`` square (clipped at the border) centred anywhere in each image.

    ``x``: one C×H×W image or an N×C×H×W batch; a new tensor is returned. Centres are uniform over
    the image, so a square near the border is partly outside it, as in the original Cutout.
    """
    if length <= 0:
        return x
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    n, _, h, w = batch.shape
    cy = torch.randint(0, h, (n, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n, 1), generator=generator).to(x.device)
    half = length // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    inside_y = (rows >= cy - half) & (rows < cy + half)  # N×H
    inside_x = (cols >= cx - half) & (cols < cx + half)  # N×W
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # N×H×W
    out = batch * keep[:, None].to(batch.dtype)
    return out if x.dim() == 4 else out[0]


def folder_train_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                           jitter: Sequence[float], min_scale: float) -> Callable[[Any], torch.Tensor]:
    """PIL image → normalised tensor: RandomResizedCrop, horizontal flip, optional ColorJitter."""
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(image_size, scale=(min_scale, 1.0)), T.RandomHorizontalFlip()]
    if jitter and any(jitter):
        brightness, contrast, saturation, hue = jitter
        steps.append(T.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def eval_resize(image_size: int) -> int:
    """Shorter side before the centre crop: 256 for 224, 36 for 32."""
    return int(round(image_size * EVAL_RESIZE_RATIO))


def folder_eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    """PIL image → normalised tensor: resize the shorter side to size·256/224, centre crop."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(eval_resize(image_size)), T.CenterCrop(image_size), T.ToTensor(),
                      T.Normalize(mean, std)])
