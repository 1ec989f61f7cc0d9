"""Every registered search space trains on a tiny supernet; the R-DARTS ``noise`` op's contract."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nas.cli import config_dir
from nas.ops import SPACES, get_op
from nas.spaces.darts_supernet import Supernet


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_space_builds_a_supernet_that_trains(space):
    torch.manual_seed(0)
    model = Supernet(SPACES[space], channels=4, layers=3, num_classes=10)
    x = torch.randn(2, 3, 16, 16)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 7]))
    assert torch.isfinite(loss)
    loss.backward()
    for alpha in model.alphas():
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all()


def test_stress_spaces():
    assert SPACES["s2"] == ("skip_connect", "sep_conv_3x3")
    assert SPACES["s3"] == ("none", "skip_connect", "sep_conv_3x3")
    assert SPACES["s4"] == ("noise", "sep_conv_3x3")


@pytest.mark.parametrize("space", ["darts", "s2", "s3", "s4"])
def test_space_config_files_name_registered_spaces(space):
    cfg = OmegaConf.load(Path(config_dir("search")) / "space" / f"{space}.yaml")
    assert cfg.name == space and cfg.get("ops") is None


def test_noise_facts():
    spec = get_op("noise")
    assert spec.parameter_free and not spec.zero and not spec.identity and not spec.normalize_in_search


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_noise_shape_matches_the_other_ops(stride, size):
    x = torch.randn(2, 4, size, size)
    noise = get_op("noise").build(4, stride, affine=False)
    expected = get_op("sep_conv_3x3").build(4, stride, affine=False)(x).shape
    assert expected == get_op("none").build(4, stride, affine=False)(x).shape
    assert noise(x).shape == expected
    assert noise.eval()(x).shape == expected
    assert sum(p.numel() for p in noise.parameters()) == 0


def test_noise_is_random_in_training_and_zero_in_eval():
    noise = get_op("noise").build(4, 1, affine=False)
    x = torch.zeros(4, 4, 8, 8, dtype=torch.float64)
    a, b = noise(x), noise(x)
    assert a.dtype == torch.float64
    assert not torch.equal(a, b)
    both = torch.cat([a, b])
    assert abs(both.mean().item()) < 0.15 and abs(both.std().item() - 1.0) < 0.15
    noise.eval()
    assert not noise(torch.randn(2, 4, 8, 8)).any()
