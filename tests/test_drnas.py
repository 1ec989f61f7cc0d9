"""DrNAS: samples on the simplex with a reparameterised gradient, the regulariser, derivation on the mean."""

import pytest
import torch

from nas.search.algorithms.drnas import DirichletSample, Drnas, DrnasConfig, concentration, kl_to_uniform, l2_penalty
from nas.spaces.darts_supernet import darts_architecture

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def test_samples_lie_on_the_simplex_and_carry_a_reparameterised_gradient():
    torch.manual_seed(0)
    alpha = torch.randn(6, len(OPS), requires_grad=True)
    alive = torch.ones(6, len(OPS), dtype=torch.bool)
    alive[2, [0, 3]] = False
    rule = DirichletSample()
    weights, active = rule.sample(alpha, alive)
    assert active is None and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    assert (weights[2, [0, 3]] == 0).all()  # pruned ops are outside the distribution
    (weights[:, 3] * 2.0).sum().backward()
    assert alpha.grad.abs().sum() > 0 and torch.isfinite(alpha.grad).all()
    again, _ = rule.sample(alpha, alive)
    assert not torch.equal(weights, again)  # a fresh draw every pass


def test_the_mean_is_the_normalised_concentration_and_derivation_uses_it():
    alpha = torch.tensor([[0.0, 1.0, -0.5, 2.0, 0.3]])
    alive = torch.ones_like(alpha, dtype=torch.bool)
    beta = torch.tensor([[1.0, 2.0, 1.0 + torch.expm1(torch.tensor(-0.5)).item(), 3.0, 1.3]])
    torch.testing.assert_close(concentration(alpha), beta)
    torch.testing.assert_close(DirichletSample().probabilities(alpha, alive), beta / beta.sum())
    arch = darts_architecture(OPS, nodes=2, rule=DirichletSample())
    with torch.no_grad():
        arch.alpha_normal.copy_(torch.randn_like(arch.alpha_normal))
    expected = concentration(arch.alpha_normal) / concentration(arch.alpha_normal).sum(-1, keepdim=True)
    torch.testing.assert_close(arch.edge_weights()["normal"], expected)  # what derivation and logging read
    weights, _ = arch.forward_weights(training=False)
    torch.testing.assert_close(weights["normal"], expected)  # evaluation too


def test_regularisers_on_hand_set_concentrations():
    alpha = torch.zeros(2, 3)  # β = 1 everywhere: the uniform prior itself
    alive = torch.ones(2, 3, dtype=torch.bool)
    assert l2_penalty([alpha], [alive]).item() == pytest.approx(6.0)
    assert kl_to_uniform([alpha], [alive]).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_uniform([torch.ones(2, 3)], [alive]).item() > 0  # β = 2: away from the prior


def test_the_algorithm_adds_its_regulariser_to_the_alpha_loss(tmp_path, tiny_search_config, monkeypatch):
    from nas.search.task import run_search

    cfg = tiny_search_config("algorithm=drnas", "algorithm.reg_scale=0.5", "epochs=1", "max_steps_per_epoch=1",
                             "model.nodes=2", "log.images=false")
    seen = []
    real = Drnas.regularizer

    def spy(self):
        loss = real(self)

        def counted():
            value = loss()
            seen.append(float(value.detach()))
            return value

        return counted

    with monkeypatch.context() as patched:
        patched.setattr(Drnas, "regularizer", spy)
        run_search(cfg, tmp_path)
    assert seen and seen[0] > 0
    assert Drnas(DrnasConfig(reg_scale=0.0)).regularizer() is None
