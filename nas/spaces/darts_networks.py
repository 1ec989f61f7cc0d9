"""The scale-up networks a genotype is retrained in: CIFAR and ImageNet-style stacks of discrete cells.

Both are one ``EvalNetwork`` — a stem that yields the first two cell inputs, ``layers`` discrete
cells (reductions at layers//3 and 2·layers//3, where channels double), global pooling and a
linear classifier — and differ only in the stem and in the auxiliary head's pooling, as in the
DARTS paper's code. Layer shapes follow that code exactly, because its parameter counts are the
sizes we must reproduce (DESIGN §6). All BatchNorms are affine: unlike the search network, the
evaluation network has no architecture weights to scale the ops.

The auxiliary head (Szegedy et al.) classifies from the features after the second reduction and
adds ``aux_weight ×`` its loss in training: a shorter gradient path into the lower cells. It is
computed only in training mode; evaluation and the MAC count never run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.cells import DiscreteCell
from nas.cells.layout import reduction_layers
from nas.errors import ConfigError
from nas.genotype import Genotype

AUX_POOL = 5  # the auxiliary head's average-pool window
AUX_CONV = 2  # ... followed by a 2×2 conv: the pool must leave at least 2×2


class AuxiliaryHead(nn.Module):
    """ReLU → AvgPool 5 → 1×1 conv 128 → BN → ReLU → 2×2 conv 768 → [BN] → ReLU → Linear.

    ``final_bn``: the published ImageNet model has no BN after the 768-channel conv (a typo in the
    DARTS code that its results were trained with), the CIFAR one has it; both are kept so that
    the sizes match the paper's. The features are averaged over whatever spatial extent is left
    (1×1 at the paper's image sizes), so larger inputs work too.
    """

    def __init__(self, channels: int, num_classes: int, pool_stride: int, final_bn: bool):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),  # not in place: the cell output it reads feeds the next cells
            nn.AvgPool2d(AUX_POOL, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, AUX_CONV, bias=False),
        ]
        if final_bn:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class CifarStem(nn.Sequential):
    """3×3 conv to stem_multiplier·C + BN at full resolution; both cell inputs of cell 0 are its output."""

    def __init__(self, in_channels: int, c_out: int):
        super().__init__(nn.Conv2d(in_channels, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        s = super().forward(x)
        return s, s


class ImageNetStem(nn.Module):
    """Two stride-2 convs (stem0, to 1/4 resolution), then one more (stem1, 1/8): cell 0 sees both,
    so its previous-previous input is twice the resolution of its previous one (reduction_prev)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),  # stem0's output is also cell 0's s0
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


@dataclass(frozen=True)
class StemSpec:
    """What a network family's stem is and does, enough to build it and to check an image size."""

    build: Callable[[int, int], nn.Module]  # (in_channels, C) -> module returning (s0, s1)
    channels: Callable[[int], tuple[int, int]]  # C -> channels of (s0, s1)
    halvings: int  # stride-2 convs on the way to s1
    reduction_prev: bool  # s0 has twice the resolution of s1
    aux_pool_stride: int
    aux_final_bn: bool
    default_classes: int  # classes when no data says otherwise (profiling)


STEM_MULTIPLIER = 3

NETWORKS: dict[str, StemSpec] = {
    "cifar": StemSpec(
        build=lambda c_in, c: CifarStem(c_in, STEM_MULTIPLIER * c),
        channels=lambda c: (STEM_MULTIPLIER * c, STEM_MULTIPLIER * c),
        halvings=0, reduction_prev=False, aux_pool_stride=3, aux_final_bn=True, default_classes=10,
    ),
    "imagenet": StemSpec(
        build=ImageNetStem, channels=lambda c: (c, c),
        halvings=3, reduction_prev=True, aux_pool_stride=2, aux_final_bn=False, default_classes=1000,
    ),
}


def network_spec(name: str) -> StemSpec:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ConfigError(f"unknown model.name '{name}'; choose {' or '.join(NETWORKS)}") from None


class EvalNetwork(nn.Module):
    """Stem → discrete cells → global average pool → linear; the auxiliary head after cell 2·layers//3."""

    def __init__(self, spec: StemSpec, genotype: Genotype, channels: int, layers: int, num_classes: int,
                 auxiliary: bool, in_channels: int = 3):
        super().__init__()
        self.stem = spec.build(in_channels, channels)
        c_prev_prev, c_prev = spec.channels(channels)
        c_curr, reduction_prev = channels, spec.reduction_prev
        self.aux_index = 2 * layers // 3
        cells = []
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            if reduction:
                c_curr *= 2
            cell = DiscreteCell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if layer == self.aux_index:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        self.aux_head = (AuxiliaryHead(c_aux, num_classes, spec.aux_pool_stride, spec.aux_final_bn)
                         if auxiliary else None)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, drop_path_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, auxiliary logits); the latter only in training mode with an auxiliary head, else None."""
        s0, s1 = self.stem(x)
        aux = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop_path_prob)
            if index == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


def build_network(name: str, genotype: Genotype, channels: int, layers: int, num_classes: int, auxiliary: bool,
                  in_channels: int = 3) -> EvalNetwork:
    """``name``: ``cifar`` or ``imagenet`` (DESIGN §6)."""
    return EvalNetwork(network_spec(name), genotype, channels, layers, num_classes, auxiliary, in_channels)


def _halve(size: int) -> int:
    """Output size of every stride-2 layer here (3×3 pad 1 convs and pools, 1×1 FactorizedReduce)."""
    return (size + 1) // 2


def _size_problem(spec: StemSpec, layers: int, auxiliary: bool, image_size: int) -> str | None:
    """Why ``image_size`` does not fit the network, or None when it does.

    Every stride-2 stage must see at least 2×2 pixels (below that FactorizedReduce's shifted half
    sees only padding), and the auxiliary head, which reads the output of the last reduction,
    needs room for its 5×5 pool and then its 2×2 conv.
    """
    size = image_size
    for stage in range(spec.halvings + len(reduction_layers(layers))):
        if size < 2:
            return f"its stride-2 stage {stage + 1} would get {size}×{size} pixels"
        size = _halve(size)
    need = AUX_POOL + (AUX_CONV - 1) * spec.aux_pool_stride
    if auxiliary and size < need:
        return (f"the auxiliary head needs {need}×{need} features after cell {2 * layers // 3}, "
                f"but {image_size} px leaves {size}×{size}")
    return None


def check_image_size(name: str, layers: int, auxiliary: bool, image_size: int) -> None:
    """Fail at start-up, naming the smallest size that fits, instead of deep inside a forward pass."""
    spec = network_spec(name)
    problem = _size_problem(spec, layers, auxiliary, image_size)
    if problem is None:
        return
    smallest = next(s for s in range(1, 1 << 16) if _size_problem(spec, layers, auxiliary, s) is None)
    hint = ""
    if auxiliary:
        without = next(s for s in range(1, 1 << 16) if _size_problem(spec, layers, False, s) is None)
        hint = f" (or {without} px with model.auxiliary=false)"
    raise ConfigError(f"data.image_size={image_size} is too small for model={name}: {problem}; "
                      f"use data.image_size>={smallest}{hint}")
