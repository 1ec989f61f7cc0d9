"""The DARTS primitive operations, registered by name.

Shapes and layer order follow the DARTS paper's code exactly (its parameter counts are our
reference sizes): every conv is bias-free and followed by BatchNorm; convolutions are
"ReLU first" so that the sum of several ops in a node is not rectified again.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.ops.registry import register_op, register_space


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv(k, stride, pad) → BN: the cells' 1×1 preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilatedDepthwiseConv2d(nn.Conv2d):
    """A depthwise conv with dilation 2 and "same" padding, computed as plain convs on pixel phases.

    Why: on CPU the weight gradient of a dilated depthwise conv is several times slower than a
    dense one. Dilation 2 only ever combines pixels of the same (row, column) parity, so the conv
    equals a non-dilated conv of the same weights on each of the four parity sub-images (at
    stride 2 only the even-even one is needed), interleaved back. Measured on CPU, forward +
    backward, a whole dil_conv op: 1.4× faster for 5×5 at stride 1 (3×3 at stride 1 would be slower:
it keeps ``nn.Conv2d``), 2.3–3× at stride 2. Same parameters as
    ``nn.Conv2d``, so checkpoints and sizes do not change; other shapes fall back to ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        n, c, h, w = x.shape
        plain = (k - 1) // 2  # the padding of the equivalent non-dilated conv
        if self.dilation != (2, 2) or self.padding != (k - 1, k - 1) or self.groups != c or x.device.type != "cpu":
            return super().forward(x)
        if self.stride == (2, 2):
            return nn.functional.conv2d(x[:, :, ::2, ::2], self.weight, padding=plain, groups=c)
        if self.stride != (1, 1) or h % 2 or w % 2 or k < 5:  # 3×3 at stride 1: the interleave costs more
            return super().forward(x)
        phases = torch.cat([x[:, :, a::2, b::2] for a in (0, 1) for b in (0, 1)])  # (4n, c, h/2, w/2)
        y = nn.functional.conv2d(phases, self.weight, padding=plain, groups=c)
        # (a, b, n, c, i, j) → pixel (2i + a, 2j + b), laid out channels-last like the input usually is
        y = y.reshape(2, 2, n, c, h // 2, w // 2).permute(2, 4, 0, 5, 1, 3).reshape(n, h, w, c)
        return y.permute(0, 3, 1, 2)


class DilConv(nn.Sequential):
    """ReLU → depthwise Conv(k, dilation) → 1×1 Conv → BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            DilatedDepthwiseConv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                                   groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked separable blocks; only the first depthwise conv strides, and it keeps c_in channels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel, 1, padding, dilation=1, affine=affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The 'none' op: zeros of the (strided) output shape. Mixed edges never call it."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


class Noise(nn.Module):
    """R-DARTS' ``noise`` op: in training, N(0, 1) noise of the (strided) output shape; in eval, zeros.

    It carries no information about its input, so a search that prefers it over a real op is
    collapsing (the S4 stress space pairs it with sep_conv_3x3 to expose that). In eval mode it
    gives zeros, the noise's expectation, so evaluation is deterministic. The output never
    depends on the input, so no gradient flows back through it. At stride 2 the shape is that of
    ``x[:, :, ::2, ::2]`` (ceil(H/2) × ceil(W/2)), which is what every other op gives too.
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        like = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        if not self.training:
            return torch.zeros_like(like)
        return torch.randn_like(like)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: two 1×1 stride-2 convs, the second
    on the input shifted by one pixel, concatenated (C/2 channels each) and normalised."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        # torch 2.14's CPU kernel for a 1×1 stride-2 conv on channels_last input with fewer than 8
        # input channels corrupts the heap (tiny test networks and partial channels hit it):
        # such inputs go through in the default layout.
        self._avoid_channels_last = c_in < 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        if self._avoid_channels_last and x.device.type == "cpu":  # input and weights in the plain layout
            halves = [nn.functional.conv2d(t.contiguous(), conv.weight.clone(memory_format=torch.contiguous_format),
                                           stride=2)
                      for t, conv in ((x, self.conv_1), (shifted, self.conv_2))]
        else:
            halves = [self.conv_1(x), self.conv_2(shifted)]
        return self.bn(torch.cat(halves, dim=1))


@register_op("none", zero=True, parameter_free=True)
def _none(c: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3", parameter_free=True, normalize_in_search=True)
def _max_pool_3x3(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3", parameter_free=True, normalize_in_search=True)
def _avg_pool_3x3(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


# skip_connect has weights at stride 2 (FactorizedReduce) but is the identity at stride 1; the
# collapse literature counts it as parameter-free, as do we.
@register_op("skip_connect", parameter_free=True, identity=True)
def _skip_connect(c: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(c: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(c, c, 3, stride, 1, affine=affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(c: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(c, c, 5, stride, 2, affine=affine)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(c: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(c, c, 3, stride, 2, dilation=2, affine=affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(c: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(c, c, 5, stride, 4, dilation=2, affine=affine)


class NorConv(nn.Sequential):
    """NAS-Bench-201's ReLU → Conv(k) → BN. The conv carries a bias exactly when the BatchNorm has no
    affine scale (the weight-sharing supernet), as the benchmark's code builds it: its reference
    sizes (supernet 1,692,826 weights) count those biases."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride=stride, padding=kernel // 2, bias=not affine),
            nn.BatchNorm2d(c, affine=affine),
        )


@register_op("nor_conv_1x1")
def _nor_conv_1x1(c: int, stride: int, affine: bool) -> nn.Module:
    return NorConv(c, 1, stride, affine)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(c: int, stride: int, affine: bool) -> nn.Module:
    return NorConv(c, 3, stride, affine)


# Not zero: the mixed edge computes it, and derivation may pick it (that is what the stress test probes).
@register_op("noise", parameter_free=True)
def _noise(c: int, stride: int, affine: bool) -> nn.Module:
    return Noise(stride)


DARTS_PRIMITIVES = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
register_space("darts", DARTS_PRIMITIVES)

# The stress spaces of R-DARTS (Zela et al., ICLR 2020), where plain DARTS collapses to
# parameter-free ops: S2 and S3 tempt it with skip connections, S4 with pure noise.
register_space("s2", ("skip_connect", "sep_conv_3x3"))
register_space("s3", ("none", "skip_connect", "sep_conv_3x3"))
register_space("s4", ("noise", "sep_conv_3x3"))
# NAS-Bench-201 (Dong & Yang, ICLR 2020): the op set of its cell, in the benchmark's order.
NB201_PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
register_space("nb201", NB201_PRIMITIVES)
