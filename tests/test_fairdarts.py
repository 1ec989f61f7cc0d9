"""FairDARTS: independent sigmoid weights, the zero-one loss on hand-set alphas, and the loss in the alpha step."""

import math

import pytest
import torch

from nas.search.algorithms.fairdarts import FairDarts, FairDartsConfig, IndependentSigmoid, zero_one_loss
from nas.spaces.darts_derive import derive_cell


def test_weights_are_independent_sigmoids():
    alpha = torch.tensor([[0.0, 2.0, -2.0], [5.0, 5.0, 5.0]])
    alive = torch.tensor([[True, True, False], [True, True, True]])
    weights = IndependentSigmoid().probabilities(alpha, alive)
    torch.testing.assert_close(weights, torch.tensor([[0.5, torch.sigmoid(torch.tensor(2.0)).item(), 0.0],
                                                      [torch.sigmoid(torch.tensor(5.0)).item()] * 3]))
    assert weights[1].sum() > 1  # no competition: several ops can be fully on


def test_zero_one_loss_on_hand_set_alphas():
    alive = torch.ones(1, 2, dtype=torch.bool)
    assert zero_one_loss([torch.zeros(1, 2)], [alive]).item() == 0.0  # undecided: no reward
    # σ(ln 3) = 0.75: (0.75 − 0.5)² = 0.0625 for one of the two weights.
    value = zero_one_loss([torch.tensor([[0.0, math.log(3.0)]])], [alive]).item()
    assert value == pytest.approx(-0.0625 / 2)
    assert zero_one_loss([torch.tensor([[50.0, -50.0]])], [alive]).item() == pytest.approx(-0.25)
    pruned = torch.tensor([[True, False]])
    assert zero_one_loss([torch.tensor([[0.0, 50.0]])], [pruned]).item() == 0.0  # pruned weights do not count


def test_derivation_in_the_top_k_parents_format():
    ops = ("none", "skip_connect", "sep_conv_3x3")
    # nodes=2: edges (0,0) (0,1) (1,0) (1,1) (1,2); σ(α) of several ops may be near 1 at once.
    alpha = torch.tensor([[9.0, 3.0, 4.0], [9.0, 2.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, -1.0, 2.0]])
    pairs = derive_cell(IndependentSigmoid().probabilities(alpha, torch.ones_like(alpha, dtype=torch.bool)), ops,
                        nodes=2, k=2)
    assert pairs == [("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]


def test_the_zero_one_loss_pushes_the_alphas_apart(tmp_path, tiny_search_config):
    from nas.search.task import run_search

    base = ["epochs=1", "max_steps_per_epoch=3", "model.nodes=2", "log.images=false", "optim.alpha_lr=0.05"]
    run_search(tiny_search_config("algorithm=fairdarts", "algorithm.zero_one_weight=0", *base), tmp_path / "plain")
    run_search(tiny_search_config("algorithm=fairdarts", "algorithm.zero_one_weight=100", *base), tmp_path / "fair")
    spread = {}
    for run in ("plain", "fair"):
        state = torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)["model"]
        sigma = torch.sigmoid(torch.cat([state["arch.alpha_normal"], state["arch.alpha_reduce"]]))
        spread[run] = float(((sigma - 0.5) ** 2).mean())
    assert spread["fair"] > spread["plain"]
    assert FairDarts(FairDartsConfig(zero_one_weight=0)).regularizer() is None
