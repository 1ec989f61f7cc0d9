"""The DARTS search split: network weights and architecture parameters learn from disjoint images.

Why: DARTS approximates a bilevel problem; alphas must be scored on data the weights were not
fitted on, otherwise the search just rewards whatever overfits fastest (usually skip connections).
"""

from __future__ import annotations

import math

import torch

from nas.errors import DataError


def split_indices(n: int, train_portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into (weight part, alpha part) from one seeded permutation.

    The weight part is the first ``floor(n * train_portion)`` indices of ``randperm(n)`` drawn
    from a ``torch.Generator`` seeded with ``seed``, the alpha part the rest; the same seed always
    gives the same split, on any machine. A tiny epsilon keeps e.g. ``0.29 * 100`` at 29.
    """
    if not 0.0 < train_portion < 1.0:
        raise DataError(f"train_portion must be strictly between 0 and 1, got {train_portion!r}")
    n_weight = math.floor(n * train_portion + 1e-9)
    if n_weight < 1 or n_weight >= n:
        raise DataError(
            f"train_portion {train_portion} of {n} images leaves an empty "
            f"{'weight' if n_weight < 1 else 'alpha'} part; use more images or a portion nearer 0.5"
        )
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return perm[:n_weight], perm[n_weight:]
