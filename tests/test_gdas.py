"""GDAS: hard one-hot forward weights with a gradient that reaches every alpha, only the sampled op
computed, and the linear temperature schedule."""

import pytest
import torch

from nas.search.algorithms.gdas import Gdas, GdasConfig, HardGumbel, tau_at
from nas.spaces.darts_supernet import Supernet

OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def test_forward_weights_are_one_hot_and_the_gradient_reaches_alpha():
    torch.manual_seed(0)
    alpha = torch.randn(5, len(OPS), requires_grad=True)
    alive = torch.ones(5, len(OPS), dtype=torch.bool)
    alive[0, 1] = False
    weights, active = HardGumbel(tau=1.0).sample(alpha, alive)
    assert set(weights.detach().flatten().tolist()) <= {0.0, 1.0}
    assert weights.detach().sum(-1).tolist() == [1.0] * 5
    assert [row.index(1.0) for row in weights.detach().tolist()] == [a[0] for a in active]
    assert active[0] != [1]  # a pruned op is never drawn
    (weights * torch.arange(len(OPS), dtype=torch.float)).sum().backward()
    assert alpha.grad is not None and (alpha.grad[1:] != 0).any(dim=-1).all()  # straight-through


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_only_the_sampled_op_of_each_edge_runs():
    torch.manual_seed(0)
    algorithm = Gdas(GdasConfig())
    model = Supernet(OPS, channels=4, layers=3, nodes=2, rule=algorithm.make_rule())
    counted = []
    for cell in model.cells:
        for edge in cell.edges:
            edge.ops = torch.nn.ModuleList(Counting(op) for op in edge.ops)
            counted.append(edge.ops)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(sum(op.calls for op in ops) == 1 for ops in counted)
    assert model.arch.alpha_normal.grad.abs().sum() > 0 and model.arch.alpha_reduce.grad.abs().sum() > 0
    model.eval()  # evaluation takes each edge's most probable op, deterministically
    with torch.no_grad():
        first, second = model(torch.ones(1, 3, 8, 8)), model(torch.ones(1, 3, 8, 8))
    assert torch.equal(first, second)


def test_tau_falls_linearly_over_the_epochs():
    assert tau_at(0, 5, 10.0, 0.1) == 10.0
    assert tau_at(4, 5, 10.0, 0.1) == pytest.approx(0.1)
    assert tau_at(2, 5, 10.0, 0.1) == pytest.approx(5.05)


def test_the_search_sets_tau_each_epoch(tmp_path, tiny_search_config):
    from nas.search.task import run_search

    summary = run_search(tiny_search_config("algorithm=gdas", "epochs=3", "max_steps_per_epoch=1",
                                            "model.nodes=2", "log.images=false"), tmp_path)
    assert summary["gdas"]["final_tau"] == pytest.approx(0.1)


def test_a_sampled_all_noise_cell_gives_the_cells_before_it_a_zero_gradient_not_an_error():
    """S4: when every edge of the last cell draws ``noise`` the loss no longer depends on the earlier
    cells; the alpha step must still run (it crashed a validation search), with zero reduce-cell gradients."""
    from nas.search.bilevel import Bilevel

    torch.manual_seed(0)
    model = Supernet(("noise", "sep_conv_3x3"), channels=4, layers=4, nodes=2, rule=Gdas(GdasConfig()).make_rule())
    with torch.no_grad():
        model.arch.alpha_normal.copy_(torch.tensor([50.0, 0.0]).expand_as(model.arch.alpha_normal))
    a_opt = torch.optim.Adam(model.alphas(), lr=0.1)
    bilevel = Bilevel(model, torch.optim.SGD(model.parameters(), lr=0.1), a_opt, grad_clip=5.0)
    batch = (torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    loss, grads = bilevel.hypergradient(batch, batch)
    assert torch.isfinite(loss)
    reduce = [g for a, g in zip(model.alphas(), grads) if a is model.arch.alpha_reduce][0]
    assert torch.equal(reduce, torch.zeros_like(reduce))
