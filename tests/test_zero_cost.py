"""Zero-cost proxies: each against a hand computation on a tiny network, and each leaving a real
evaluation network (parameters, buffers, gradients, flags, modes) and the global RNG as it found them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.evaluate.zero_cost import (
    JACOB_COV_K,
    PROXIES,
    grad_norm,
    jacob_cov,
    logits_of,
    naswot,
    proxy_score,
    snip,
    synflow,
)
from nas.genotype import PUBLISHED
from nas.spaces.darts_networks import build_network


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are far too small to gain from a second thread, and on shared cores a busy second
    thread makes torch's thread pool wait for it (100× slower); the suite's setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def set_weights(layer: nn.Linear, weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


# --- synflow ----------------------------------------------------------------------------------------------------
W1 = [[1.0, -2.0, 0.5], [-1.0, 3.0, 2.0]]  # Linear(3, 2): rows i, columns j
V = [[2.0, -0.5]]  # Linear(2, 1)
# Closed form for the chain x ↦ V·W·x with |W|, |V| and x = 1: R = Σ_i |v_i| Σ_j |W_ij| = 2·3.5 + 0.5·6 = 10.
# ∂R/∂|W_ij| = |v_i|, so Σ_ij |W_ij|·∂R/∂|W_ij| = R; ∂R/∂|v_i| = Σ_j |W_ij|, so Σ_i |v_i|·∂R/∂|v_i| = R.
# Score = 2R = 20 (R is homogeneous of degree 1 in each layer: Euler's theorem, once per layer).
SYNFLOW_CHAIN = 2 * (2.0 * (1.0 + 2.0 + 0.5) + 0.5 * (1.0 + 3.0 + 2.0))


def test_synflow_of_a_linear_chain_is_twice_its_path_norm():
    chain = nn.Sequential(set_weights(nn.Linear(3, 2, bias=False), W1), set_weights(nn.Linear(2, 1, bias=False), V))
    assert SYNFLOW_CHAIN == 20.0
    assert synflow(chain, (3,)) == pytest.approx(SYNFLOW_CHAIN, rel=1e-12)


def test_synflow_bypasses_batchnorm_and_relu_passes_the_positive_flow():
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():  # none of this may matter: BatchNorm is an identity for SynFlow
        bn.weight.copy_(torch.tensor([3.0, -0.2]))
        bn.bias.copy_(torch.tensor([-1.0, 5.0]))
        bn.running_mean.copy_(torch.tensor([7.0, -7.0]))
        bn.running_var.copy_(torch.tensor([0.1, 9.0]))
    chain = nn.Sequential(set_weights(nn.Linear(3, 2, bias=False), W1), bn, nn.ReLU(),
                          set_weights(nn.Linear(2, 1, bias=False), V))
    assert synflow(chain, (3,)) == pytest.approx(SYNFLOW_CHAIN, rel=1e-12)
    assert chain.training and bn.running_mean.tolist() == [7.0, -7.0]


# --- snip and grad_norm -----------------------------------------------------------------------------------------
# One sample x = (1, 2), label 0, through Linear(2, 3) with W, b chosen so that the logits are
# z = W·x + b = (0, ln 2, 0) + 1, hence p = softmax(z) = (1/4, 1/2, 1/4).
# Cross-entropy: ∂L/∂z = p − e_0 = (−3/4, 1/2, 1/4); ∂L/∂W = (p − e_0)·xᵀ, ∂L/∂b = p − e_0:
#   ∂L/∂W = [[−3/4, −3/2], [1/2, 1], [1/4, 1/2]].
# snip = Σ|W ⊙ ∂L/∂W| + Σ|b ⊙ ∂L/∂b|
#      = (3/4 + 3/4) + (ln2/2 + 0) + (1/2 + 1/2) + (3/4 + 1/2 + 1/4) = 4 + ln2/2.
# grad_norm = |p − e_0|·sqrt(|x|² + 1) = sqrt(14/16)·sqrt(6) = sqrt(84)/4.
LN2 = math.log(2.0)
SNIP_W = [[1.0, -0.5], [LN2, 0.0], [2.0, -1.0]]
SNIP_B = [1.0, 1.0, 1.0]
SNIP_X = torch.tensor([[1.0, 2.0]])
SNIP_Y = torch.tensor([0])


def snip_layer() -> nn.Linear:
    return set_weights(nn.Linear(2, 3), SNIP_W, SNIP_B)


def test_snip_of_one_linear_layer():
    layer = snip_layer()
    assert torch.allclose(torch.softmax(layer(SNIP_X), 1), torch.tensor([[0.25, 0.5, 0.25]]))
    assert snip(layer, SNIP_X, SNIP_Y) == pytest.approx(4.0 + LN2 / 2, rel=1e-6)
    with torch.no_grad():  # gradients are switched on inside, whatever the caller does
        assert snip(layer, SNIP_X, SNIP_Y) == pytest.approx(4.0 + LN2 / 2, rel=1e-6)


def test_grad_norm_of_one_linear_layer():
    assert grad_norm(snip_layer(), SNIP_X, SNIP_Y) == pytest.approx(math.sqrt(84) / 4, rel=1e-6)


def test_gradient_proxies_count_frozen_parameters_and_leave_their_flags():
    layer = snip_layer()
    layer.bias.requires_grad_(False)
    assert snip(layer, SNIP_X, SNIP_Y) == pytest.approx(4.0 + LN2 / 2, rel=1e-6)
    assert not layer.bias.requires_grad and layer.weight.grad is None and layer.bias.grad is None


# --- jacob_cov --------------------------------------------------------------------------------------------------
def jacob_cov_by_hand(eigenvalues: list[float]) -> float:
    """The paper's score: −Σ_i [log(λ_i + k) + 1/(λ_i + k)], k = 1e-5."""
    return -sum(math.log(lam + 1e-5) + 1.0 / (lam + 1e-5) for lam in eigenvalues)


def test_jacob_cov_of_a_linear_model_has_one_jacobian_for_every_image():
    # logits = w·x + b: the Jacobian of each image is the weight row w = (1, 2, 0, −4), so the 3 rows
    # are identical, their correlation matrix is all ones and its eigenvalues are 3, 0, 0.
    model = set_weights(nn.Linear(4, 1), [[1.0, 2.0, 0.0, -4.0]], [0.5])
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert JACOB_COV_K == 1e-5
    assert jacob_cov(model, x) == pytest.approx(jacob_cov_by_hand([3.0, 0.0, 0.0]), rel=1e-9)


class HalfSquares(nn.Module):
    """f(x) = ½ Σ_j w_j x_j²: the Jacobian of image x is w ⊙ x, different for every image."""

    def __init__(self, w: list[float]):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:  # a tuple, like EvalNetwork
        return (0.5 * self.w * x**2).sum(dim=1, keepdim=True), None


def test_jacob_cov_of_two_images_with_known_correlation():
    # w = (1, 2, 1); images (1, 1, 4) and (3, 0.5, 2) give Jacobian rows r1 = (1, 2, 4), r2 = (3, 1, 2).
    # Deviations from the means 7/3 and 2: (−4/3, −1/3, 5/3) and (1, −1, 0); cross sum −1, squares 14/3
    # and 2, so ρ = −1/sqrt(28/3) = −sqrt(3/28); the 2×2 correlation matrix has eigenvalues 1 ± ρ.
    model = HalfSquares([1.0, 2.0, 1.0])
    x = torch.tensor([[1.0, 1.0, 4.0], [3.0, 0.5, 2.0]])
    rho = -math.sqrt(3 / 28)
    assert np.corrcoef([[1, 2, 4], [3, 1, 2]])[0, 1] == pytest.approx(rho)
    assert jacob_cov(model, x) == pytest.approx(jacob_cov_by_hand([1 + rho, 1 - rho]), rel=1e-9)


def test_jacob_cov_needs_two_images_and_varying_jacobians():
    with pytest.raises(ValueError, match="at least 2 images"):
        jacob_cov(nn.Linear(3, 1), torch.ones(1, 3))
    constant_row = set_weights(nn.Linear(3, 1), [[1.0, 1.0, 1.0]])  # every Jacobian is (1, 1, 1)
    assert math.isnan(jacob_cov(constant_row, torch.randn(4, 3, generator=torch.Generator().manual_seed(0))))


# --- naswot -----------------------------------------------------------------------------------------------------
# W = [[1, 0], [0, 1], [1, 1]] on the images below gives pre-activations and binary codes (> 0):
#   (1, −1) → (1, −1, 0) → c1 = 100;   (−1, 2) → (−1, 2, 1) → c2 = 011;   (2, 1) → (2, 1, 3) → c3 = 111.
# N_A = 3; Hamming distances d12 = 3, d13 = 2, d23 = 1; K = N_A − d:
#   K = [[3, 0, 1], [0, 3, 2], [1, 2, 3]],  det K = 3·(9 − 4) − 0 + 1·(0 − 3) = 12.
NASWOT_W = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
NASWOT_X = torch.tensor([[1.0, -1.0], [-1.0, 2.0], [2.0, 1.0]])
NASWOT_K = [[3, 0, 1], [0, 3, 2], [1, 2, 3]]


def test_naswot_of_one_relu_layer():
    assert round(np.linalg.det(NASWOT_K)) == 12
    model = nn.Sequential(set_weights(nn.Linear(2, 3, bias=False), NASWOT_W), nn.ReLU())
    assert naswot(model, NASWOT_X) == pytest.approx(math.log(12.0), rel=1e-12)


def test_naswot_concatenates_the_codes_of_every_relu():
    # A second ReLU after an identity layer repeats the codes: N_A = 6, K doubles, det = 2³·12 = 96.
    identity = set_weights(nn.Linear(3, 3, bias=False), torch.eye(3).tolist())
    model = nn.Sequential(set_weights(nn.Linear(2, 3, bias=False), NASWOT_W), nn.ReLU(inplace=True), identity,
                          nn.ReLU())
    assert naswot(model, NASWOT_X) == pytest.approx(math.log(96.0), rel=1e-12)
    assert not model[0]._forward_hooks and not model[1]._forward_hooks  # the hooks are gone


def test_naswot_needs_a_relu():
    with pytest.raises(ValueError, match="nn.ReLU"):
        naswot(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), NASWOT_X)


# --- every proxy leaves the model and the RNG as it found them --------------------------------------------------
def snapshot(model: nn.Module) -> dict:
    return {
        "state": {name: t.clone() for name, t in model.state_dict().items()},  # parameters and buffers
        "params": [(name, id(p), p.requires_grad, p.grad, None if p.grad is None else p.grad.clone())
                   for name, p in model.named_parameters()],
        "buffers": [(name, id(b)) for name, b in model.named_buffers()],
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for name, tensor in before["state"].items():
        assert after["state"][name].dtype == tensor.dtype and torch.equal(after["state"][name], tensor), name
    for (name, ident, flag, grad, grad_value), (_, ident2, flag2, grad2, _) in zip(before["params"], after["params"]):
        assert (ident2, flag2) == (ident, flag), name
        assert grad2 is grad, name  # None stays None; an existing .grad is the same tensor ...
        assert grad is None or torch.equal(grad2, grad_value), name  # ... with the same values
    assert after["buffers"] == before["buffers"]
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    assert torch.equal(after["rng"], before["rng"])


@pytest.fixture(scope="module")
def darts_batch() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_network("cifar", PUBLISHED["DARTS_V2"], channels=4, layers=3, num_classes=10, auxiliary=False)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 16, 16, generator=generator)
    y = torch.randint(0, 10, (8,), generator=generator)
    return model, (x, y)


@pytest.mark.parametrize("name", list(PROXIES))
def test_proxy_leaves_a_darts_network_unchanged(name, darts_batch):
    model, (x, y) = darts_batch
    model.train()
    with torch.no_grad():
        model(x)  # running statistics that are not the defaults
    model.cells[1].eval()  # modes that differ between modules
    model.classifier.bias.requires_grad_(False)
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    before = snapshot(model)
    score = proxy_score(name, model, (x, y))
    assert isinstance(score, float) and math.isfinite(score), score
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", list(PROXIES))
def test_proxy_draws_dropout_from_a_forked_rng(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 3)).eval()
    generator = torch.Generator().manual_seed(2)
    batch = (torch.randn(6, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator))
    before = snapshot(model)
    score = proxy_score(name, model, batch)
    assert_unchanged(model, before)
    assert math.isfinite(score) and proxy_score(name, model, batch) == score  # the same dropout masks again


def test_proxy_score_dispatches_and_rejects_unknown_names():
    assert set(PROXIES) == {"synflow", "snip", "grad_norm", "jacob_cov", "naswot"}
    layer = snip_layer()
    assert proxy_score("snip", layer, (SNIP_X, SNIP_Y)) == snip(layer, SNIP_X, SNIP_Y)
    assert proxy_score("synflow", layer, (SNIP_X, SNIP_Y)) == synflow(layer, (2,))
    with pytest.raises(ConfigError, match="unknown zero-cost proxy 'fisher'.*synflow, snip, grad_norm, jacob_cov, naswot"):
        proxy_score("fisher", layer, (SNIP_X, SNIP_Y))


def test_logits_of_takes_the_first_element_of_a_tuple():
    x = torch.ones(2, 3)
    model = HalfSquares([1.0, 2.0, 3.0])
    assert torch.equal(logits_of(model, x), model(x)[0])
    assert torch.equal(logits_of(nn.Identity(), x), x)
