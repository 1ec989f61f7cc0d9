"""The planted-cell benchmark's data: images labelled by a teacher network built from a known cell.

The teacher is the discrete network of ``PLANTED`` with random weights; its BatchNorm statistics
are those of the images themselves, so every class is used. Each image's label is the teacher's
argmax over ``classes`` standardised logits, and only the images the teacher labels with the widest
margin are kept (``keep``): the rest sit on decision boundaries that a student cannot recover from
a few thousand images. Search then runs on ``data=npz`` like on any dataset, and a derived cell is
scored by how many of the teacher's (op, input) choices it holds (``recovery``).

Whether the task really favours the planted cell is an empirical question, not a given: a random
teacher's labels may be learnable by any cell. ``scripts/validation.py planted --check`` measures
it (the planted cell retrained against random cells at equal budget) and the tables in
docs/validation.md report it beside the recovery figures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nas.data.datasets import ImageTensors, load_images, save_npz
from nas.genotype import Genotype

# A cell that uses every kind of op of the DARTS space (pools, skip, separable and dilated convs).
PLANTED = Genotype(
    normal=[("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 1), ("dil_conv_5x5", 2),
            ("skip_connect", 0), ("max_pool_3x3", 3), ("sep_conv_5x5", 2), ("avg_pool_3x3", 4)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("avg_pool_3x3", 0), ("max_pool_3x3", 2),
            ("sep_conv_3x3", 1), ("skip_connect", 3), ("max_pool_3x3", 2), ("dil_conv_5x5", 4)],
    reduce_concat=[2, 3, 4, 5],
)


@torch.no_grad()
def teacher_labels(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], genotype: Genotype,
                   channels: int, layers: int, classes: int, seed: int,
                   gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, margins) of uint8 ``images`` under a random teacher built from ``genotype``; ``gain``
    scales the teacher's conv weights (scripts/planted_sweep.py tries sharper teachers)."""
    from nas.spaces.darts_networks import build_network

    torch.manual_seed(seed)
    teacher = build_network("cifar", genotype, channels, layers, classes, auxiliary=False)
    x = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    teacher.train()
    for module in teacher.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.mul_(gain)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over all the images
    for i in range(0, len(x), 500):
        teacher(x[i:i + 500])
    teacher.eval()
    logits = torch.cat([teacher(x[i:i + 500])[0] for i in range(0, len(x), 500)])
    z = (logits - logits.mean(0)) / logits.std(0).clamp_min(1e-12)  # every class gets its share
    top2 = z.topk(2, dim=1).values
    return z.argmax(1), top2[:, 0] - top2[:, 1]


def make_planted_data(out_dir: str | Path, genotype: Genotype = PLANTED, image_size: int = 16, channels: int = 8,
                      layers: int = 5, classes: int = 4, keep: float = 0.5, seed: int = 1234,
                      limit: int | None = None) -> dict[str, int]:
    """Write ``train.npz`` and ``test.npz`` of the teacher-labelled shipped CIFAR-10 sample to
    ``out_dir``; returns the image counts. The same arguments always give the same files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_images("sample", "", "train", image_size=image_size)
    test = load_images("sample", "", "test", image_size=image_size)
    if limit is not None:  # quick runs: the first ``limit`` images of each split
        train, test = (ImageTensors(d.images[:limit], d.labels[:limit], d.classes, d.mean, d.std) for d in (train, test))
    images = torch.cat([train.images, test.images])
    labels, margin = teacher_labels(images, train.mean, train.std, genotype, channels, layers, classes, seed)
    kept = margin >= margin.quantile(1 - keep)
    names = [f"class{c}" for c in range(classes)]
    counts = {}
    for split, part in (("train", slice(0, len(train.images))), ("test", slice(len(train.images), len(images)))):
        chosen = kept[part].nonzero().flatten() + (part.start or 0)
        save_npz(out / f"{split}.npz", ImageTensors(images[chosen], labels[chosen], names, train.mean, train.std))
        counts[split] = len(chosen)
    return counts
