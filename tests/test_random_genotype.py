"""The random-cell baseline: seeded, always valid, never 'none', and blind to the global RNG."""

import random

import pytest
import torch

from nas.errors import ConfigError
from nas.genotype import validate
from nas.ops import SPACES, get_op
from nas.spaces.darts_networks import build_network
from nas.spaces.darts_random import sample_genotype


def test_same_seed_same_genotype_and_seeds_differ():
    ops = SPACES["darts"]
    assert sample_genotype(ops, nodes=4, k=2, seed=7) == sample_genotype(ops, nodes=4, k=2, seed=7)
    genotypes = [sample_genotype(ops, nodes=4, k=2, seed=s) for s in range(5)]
    assert len({g.to_text() for g in genotypes}) == 5


@pytest.mark.parametrize("space", ["darts", "s2", "s3", "s4"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("nodes", [1, 4])
def test_always_valid(space, k, nodes):
    ops = SPACES[space]
    allowed = {name for name in ops if not get_op(name).zero}
    for seed in range(50):
        g = sample_genotype(ops, nodes=nodes, k=k, seed=seed)
        validate(g, ops)
        assert g.normal_concat == g.reduce_concat == list(range(2, nodes + 2))
        assert g.k == k and g.nodes == nodes
        for pairs in (g.normal, g.reduce):
            assert len(pairs) == k * nodes
            assert {op for op, _ in pairs} <= allowed
            for node in range(nodes):
                inputs = [i for _, i in pairs[node * k:(node + 1) * k]]
                assert inputs == sorted(set(inputs)) and all(0 <= i < 2 + node for i in inputs)


def test_uses_every_op_and_input_over_many_seeds():
    ops = SPACES["s3"]
    seen_ops, seen_inputs = set(), set()
    for seed in range(40):
        g = sample_genotype(ops, nodes=4, k=1, seed=seed)
        seen_ops |= {op for op, _ in g.normal + g.reduce}
        seen_inputs |= {i for _, i in g.normal}
    assert seen_ops == {"skip_connect", "sep_conv_3x3"}
    assert seen_inputs == set(range(5))


def test_leaves_the_global_rng_alone():
    torch_state, py_state = torch.random.get_rng_state(), random.getstate()
    sample_genotype(SPACES["darts"], nodes=4, k=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="k=3"):
        sample_genotype(SPACES["darts"], nodes=4, k=3, seed=0)
    with pytest.raises(ConfigError, match="only the zero op"):
        sample_genotype(["none"], nodes=4, k=2, seed=0)
    with pytest.raises(ConfigError, match="nodes=0"):
        sample_genotype(SPACES["darts"], nodes=0, k=1, seed=0)


@pytest.mark.parametrize("space", ["darts", "s2", "s3", "s4"])
def test_random_cells_build_and_train_in_the_evaluation_network(space):
    torch.manual_seed(0)
    genotype = sample_genotype(SPACES[space], nodes=4, k=2, seed=1)
    net = build_network("cifar", genotype, channels=4, layers=3, num_classes=10, auxiliary=False)
    logits, _ = net(torch.randn(2, 3, 16, 16), drop_path_prob=0.2)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([3, 4]))
    loss.backward()
    assert torch.isfinite(loss) and net.classifier.weight.grad is not None
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(torch.ones(1, 3, 16, 16))[0], net(torch.ones(1, 3, 16, 16))[0])
