"""Collapse diagnostics: parameter-free count, op-weight entropy, Hessian eigenvalue by power iteration."""

import copy
import math
import random

import pytest
import torch
from torch.nn.functional import cross_entropy

from nas.genotype import PUBLISHED
from nas.ops import SPACES
from nas.search.diagnostics import alpha_entropy, hessian_eig_max, param_free_count, param_free_counts
from nas.spaces.darts_supernet import Supernet

# 3 ops × 5 edges (nodes=2) × 2 cell types = 30 alphas: the exact Hessian takes about a second.
OPS = ("none", "skip_connect", "sep_conv_3x3")


@pytest.fixture(autouse=True)
def one_thread():
    """Double backward through tiny convs is many small ops: one thread is fastest on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(ops=OPS, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(ops, channels=4, layers=3, num_classes=3, nodes=2, alpha_init_std=0.5).double()


def tiny_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1])


def exact_hessian(model: Supernet, batch) -> torch.Tensor:
    """∇²_α L over the concatenated (normal, reduce) alphas, from torch.autograd.functional."""
    model = copy.deepcopy(model).train()
    x, y = batch
    normal, reduce = model.alphas()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        alphas = {"normal": flat[:normal.numel()].view_as(normal), "reduce": flat[normal.numel():].view_as(reduce)}
        return cross_entropy(model(x, edge_weights=model.arch.edge_weights(alphas)), y)

    flat = torch.cat([normal.detach().reshape(-1), reduce.detach().reshape(-1)])
    return torch.autograd.functional.hessian(loss, flat)


def test_power_iteration_matches_the_exact_hessian():
    model, batch = tiny_model(), tiny_batch()
    eigs = torch.linalg.eigvalsh(exact_hessian(model, batch))
    top = eigs[eigs.abs().argmax()].item()
    second = eigs.abs().sort(descending=True).values[1].item()
    assert top < 0  # this point has a negative dominant eigenvalue: the sign must survive
    assert second / abs(top) < 0.9  # a clear gap, so 100 iterations converge far below the tolerance
    assert hessian_eig_max(model, batch, iters=100) == pytest.approx(top, rel=1e-3)
    # A different start vector converges to the same eigenvalue; tol stops once it has.
    assert hessian_eig_max(model, batch, iters=100, seed=3, tol=1e-9) == pytest.approx(top, rel=1e-3)
    assert hessian_eig_max(model, batch, iters=1) != pytest.approx(top, rel=1e-3)  # not by luck


def test_hessian_eig_max_leaves_the_model_and_rng_alone():
    model, batch = tiny_model(), tiny_batch()
    model.eval()
    model.cells[1].train()  # a mixed mode must come back as it was
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch_rng, py_rng = torch.random.get_rng_state(), random.getstate()
    value = hessian_eig_max(model, batch, iters=3)
    assert math.isfinite(value)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, tensor in before.items():
        assert torch.equal(tensor, after[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.random.get_rng_state(), torch_rng) and random.getstate() == py_rng


def test_hessian_eig_max_is_reproducible_with_the_noise_op():
    model = Supernet(SPACES["s4"], channels=4, layers=2, num_classes=3, nodes=2).double()
    batch = tiny_batch()
    first = hessian_eig_max(model, batch, iters=5)
    assert math.isfinite(first) and hessian_eig_max(model, batch, iters=5) == first


def test_param_free_count_of_published_cells():
    v1 = PUBLISHED["DARTS_V1"]
    assert param_free_count(v1.normal) == 3
    assert param_free_count(v1.reduce) == 8
    assert param_free_counts(v1) == {"normal": 3, "reduce": 8}
    assert param_free_count([("sep_conv_3x3", 0), ("noise", 1), ("none", 0), ("dil_conv_5x5", 2)]) == 2
    assert param_free_count([]) == 0


def test_alpha_entropy_uniform_onehot_and_pruned():
    assert alpha_entropy(torch.full((14, 8), 1 / 8)) == pytest.approx(math.log(8))
    assert alpha_entropy(torch.eye(8)[:5]) == 0.0
    # Edge 0 keeps 2 of 4 ops (uniform over them), edge 1 one op: mean of log 2 and 0.
    alive = torch.tensor([[True, False, True, False], [False, False, False, True]])
    weights = torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert alpha_entropy(weights, alive) == pytest.approx(math.log(2) / 2)
    assert alpha_entropy(weights) == pytest.approx(math.log(2) / 2)
    # The supernet's own masked softmax gives exact zeros on pruned ops.
    model = tiny_model()
    model.arch.prune("normal", 0, 1)
    weights = model.arch.edge_weights()["normal"]
    assert math.isfinite(alpha_entropy(weights, model.arch.alive()["normal"]))
