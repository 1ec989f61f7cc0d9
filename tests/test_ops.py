"""Every registered op, the mixed edge's skipping rules and the supernet's reference sizes."""

import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.cells import MixedEdge
from nas.errors import ConfigError
from nas.ops import OPS, SPACES, get_op, resolve_space
from nas.spaces.darts_supernet import Supernet


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_registered_op_keeps_channels_and_strides(name, stride):
    torch.manual_seed(0)
    op = get_op(name).build(8, stride, affine=True)
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 10 // stride, 10 // stride)
    if get_op(name).zero:
        assert not y.any()
    elif name == "noise":  # independent of its input by design: nothing flows back
        assert not y.requires_grad and y.std() > 0.5
    else:
        y.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    has_params = any(p.numel() for p in op.parameters())
    assert has_params == (not get_op(name).parameter_free or (name == "skip_connect" and stride == 2))


def test_darts_space_order_and_facts():
    assert SPACES["darts"] == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                               "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert [n for n in SPACES["darts"] if get_op(n).zero] == ["none"]
    assert [n for n in SPACES["darts"] if get_op(n).identity] == ["skip_connect"]


def test_unknown_op_and_space_are_config_errors():
    with pytest.raises(ConfigError, match="unknown op 'sep_conv_9x9'"):
        resolve_space("darts", ["sep_conv_9x9"])
    with pytest.raises(ConfigError, match="unknown search space"):
        resolve_space("nope")
    with pytest.raises(ConfigError, match="not 'none'"):
        resolve_space("x", ["none"])


class CountingOp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 2


def test_mixed_edge_never_computes_zero_or_pruned_ops():
    edge = MixedEdge(("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"), channels=4, stride=1)
    counters = [CountingOp() for _ in range(4)]
    edge.ops = torch.nn.ModuleList(counters)
    x = torch.randn(1, 4, 6, 6)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])
    out = edge(x, w, alive=[0, 2])
    assert [c.calls for c in counters] == [0, 0, 1, 0]
    torch.testing.assert_close(out, 0.3 * 2 * x)
    edge(x, w)
    assert [c.calls for c in counters] == [0, 1, 2, 1]


def test_edge_left_with_only_none_outputs_zeros_of_the_strided_shape():
    edge = MixedEdge(("none", "sep_conv_3x3"), channels=4, stride=2)
    out = edge(torch.randn(2, 4, 8, 8), torch.tensor([1.0, 0.0]), alive=[0])
    assert out.shape == (2, 4, 4, 4) and not out.any()


def test_search_network_reference_sizes():
    model = Supernet(SPACES["darts"], channels=16, layers=8, num_classes=10)
    assert sum(p.numel() for p in model.weights()) == 1_930_618
    assert [tuple(a.shape) for a in model.alphas()] == [(14, 8), (14, 8)]
    assert {id(a) for a in model.alphas()}.isdisjoint(id(p) for p in model.weights())
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert round(counter.get_total_flops() / 2 / 1e6, 2) == 300.26


def test_factorized_reduce_survives_few_channels_in_channels_last():
    # torch 2.14's CPU 1×1 stride-2 conv corrupts the heap on channels_last input with < 8 channels;
    # FactorizedReduce must route around it (run in a child: a regression crashes the process).
    code = """
import torch
from nas.ops import FactorizedReduce
for c in (2, 4):
    op = FactorizedReduce(c, c, affine=False).to(memory_format=torch.channels_last)
    for _ in range(30):
        x = torch.randn(8, c, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        op(x).square().sum().backward()
print("survived")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_CHECK_": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-500:]


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 9])
def test_phase_dilated_conv_equals_the_dilated_conv(kernel, stride, size):
    from torch import nn

    from nas.ops.primitives import DilatedDepthwiseConv2d

    torch.manual_seed(0)
    conv = DilatedDepthwiseConv2d(6, 6, kernel, stride=stride, padding=kernel - 1, dilation=2, groups=6,
                                  bias=False).double()
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 6, size, size, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
        out, ref = conv(x), nn.Conv2d.forward(conv, x)
        torch.testing.assert_close(out, ref)
        grads = torch.autograd.grad(out.square().sum(), (x, conv.weight))
        expected = torch.autograd.grad(ref.square().sum(), (x, conv.weight))
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e)
