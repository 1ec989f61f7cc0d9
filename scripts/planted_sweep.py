"""Teacher constructions for the planted-cell benchmark: does the teacher's cell, retrained, beat
random cells at equal budget? (docs/validation.md, "Is the planted task valid?")

    python scripts/planted_sweep.py IDX [THREADS]     # one candidate per process, IDX in 0..7

Each candidate labels the shipped CIFAR-10 sample (16 px) with a random teacher built from a cell
(``mixed``: nas.validation.planted.PLANTED; ``conv``: separable and dilated convs only; ``pool``:
max pooling only), a depth, a number of classes, the kept fraction of widest-margin images and a
gain on the teacher's conv weights; then trains the teacher's cell (2 seeds) and 6 random cells on
the labels, with a plain SGD loop, at two budgets (2,000 images × 5 epochs, all images × 15 epochs)
and prints one JSON line per budget. On CUDA when there is one (8 candidates in parallel: about
4 minutes on one H200); on a CPU it runs one tiny budget as a smoke test.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

from nas.data.datasets import load_images
from nas.genotype import Genotype
from nas.ops import resolve_space
from nas.spaces.darts_networks import build_network
from nas.spaces.darts_random import sample_genotype
from nas.validation.planted import PLANTED, teacher_labels

dev = "cuda" if torch.cuda.is_available() else "cpu"

CONV = Genotype(
    normal=[("sep_conv_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_5x5", 1), ("dil_conv_3x3", 2),
            ("sep_conv_3x3", 2), ("dil_conv_5x5", 3), ("sep_conv_5x5", 0), ("dil_conv_3x3", 4)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("dil_conv_5x5", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("dil_conv_3x3", 2),
            ("dil_conv_5x5", 1), ("sep_conv_3x3", 3), ("sep_conv_5x5", 2), ("dil_conv_3x3", 4)],
    reduce_concat=[2, 3, 4, 5])
POOL = Genotype(
    normal=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 1), ("max_pool_3x3", 2),
            ("max_pool_3x3", 2), ("max_pool_3x3", 3), ("max_pool_3x3", 3), ("max_pool_3x3", 4)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 2),
            ("max_pool_3x3", 1), ("max_pool_3x3", 3), ("max_pool_3x3", 2), ("max_pool_3x3", 4)],
    reduce_concat=[2, 3, 4, 5])
CELLS = {"mixed": PLANTED, "conv": CONV, "pool": POOL}

# (cell, teacher layers, classes, kept fraction, teacher conv gain); students are 8 channels wide
CANDIDATES = [
    ("mixed", 3, 2, 0.5, 1.0), ("conv", 3, 2, 0.5, 1.0), ("pool", 3, 2, 0.5, 1.0), ("mixed", 5, 2, 0.3, 1.0),
    ("conv", 5, 4, 0.5, 2.0), ("mixed", 3, 4, 0.5, 1.0), ("mixed", 2, 2, 0.5, 1.0), ("conv", 2, 4, 0.5, 1.0),
]
BUDGETS = [(2000, 5), (6000, 15)]  # (training images at most, epochs)
CHANNELS = 8


def sample_images() -> tuple[torch.Tensor, tuple, tuple, int]:
    """The shipped sample at 16 px as uint8 (train images first), its mean and std, and the train count."""
    train, test = (load_images("sample", "", split, image_size=16) for split in ("train", "test"))
    return torch.cat([train.images, test.images]), train.mean, train.std, len(train.images)


def train_and_test(x: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor,
                   g: Genotype, layers: int, classes: int, seed: int, epochs: int) -> float:
    """SGD (lr 0.05, cosine, batch 32, flips) from scratch; test top-1."""
    torch.manual_seed(seed)
    net = build_network("cifar", g, CHANNELS, layers, classes, auxiliary=False).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(train_idx) / 32))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(order), 32):
            batch = order[i:i + 32]
            flip = (torch.rand(len(batch), generator=gen) < 0.5).to(dev).view(-1, 1, 1, 1)
            xb = torch.where(flip, x[batch].flip(3), x[batch])
            loss = F.cross_entropy(net(xb)[0], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(x[test_idx[i:i + 500]])[0].argmax(1) for i in range(0, len(test_idx), 500)])
    return (pred == y[test_idx]).float().mean().item()


def main() -> None:
    idx = int(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    cell, layers, classes, kept, gain = CANDIDATES[idx]
    budgets, n_random = (BUDGETS, 6) if dev == "cuda" else ([(200, 1)], 1)
    images, mean, std, n_train = sample_images()
    x = ((images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).to(dev)
    g = CELLS[cell]
    y, margin = teacher_labels(images, mean, std, g, CHANNELS, layers, classes, seed=1234, gain=gain)
    y = y.to(dev)
    keep = (margin >= margin.quantile(1 - kept)).nonzero().flatten()
    test_idx = keep[keep >= n_train]
    space = resolve_space("darts", None)
    for images, epochs in budgets:
        start = time.time()
        train_idx = keep[keep < n_train][:images]
        planted = [train_and_test(x, y, train_idx, test_idx, g, layers, classes, s, epochs) for s in (0, 1)]
        random = [train_and_test(x, y, train_idx, test_idx, sample_genotype(space, 4, 2, seed=1000 + i),
                                 layers, classes, 0, epochs) for i in range(n_random)]
        gap = sum(planted) / len(planted) - sum(random) / len(random)
        print(json.dumps({"idx": idx, "candidate": CANDIDATES[idx], "budget": [images, epochs],
                          "classes": torch.bincount(y[keep.to(dev)], minlength=classes).tolist(),
                          "planted": [round(a, 3) for a in planted], "random": [round(a, 3) for a in random],
                          "gap": round(gap, 3), "random_max": round(max(random), 3),
                          "seconds": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
    main()
