"""The architecture gradients are checked against autograd, not against another implementation."""

import torch
from torch import nn
from torch.func import functional_call

from nas.search.architect import Architect, first_order_grad, second_order_grad, virtual_step
from nas.search.supernet import Supernet

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
LOSS = nn.functional.cross_entropy


def tiny_supernet(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    model = Supernet(OPS, channels=4, layers=3, num_classes=3, nodes=2, alpha_init_std=0.5).double()
    return model


def batches(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    train = (torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
    val = (torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
    return train, val


def test_first_order_equals_alpha_gradient_of_val_loss():
    model = tiny_supernet()
    _, val = batches()
    loss, grads = first_order_grad(model, val, LOSS)
    model.zero_grad()
    LOSS(model(val[0]), val[1]).backward()
    for g, alpha in zip(grads, model.alphas()):
        torch.testing.assert_close(g, alpha.grad)
    assert loss.item() > 0


def exact_hypergradient(model, train, val, lr, momentum, weight_decay, buffers):
    """d/dα L_val(w − ξ(∇w L_train(w, α) + μv + λw), α), by autograd through the virtual step."""
    names, weights = zip(*model.named_weights())
    train_loss = LOSS(model(train[0]), train[1])
    grads = torch.autograd.grad(train_loss, weights, create_graph=True, allow_unused=True)
    unrolled = virtual_step(names, weights, grads, lr, momentum, weight_decay, buffers)
    val_loss = LOSS(functional_call(model, unrolled, (val[0],), strict=False), val[1])
    return torch.autograd.grad(val_loss, model.alphas())


def test_second_order_matches_exact_hypergradient():
    model = tiny_supernet()
    train, val = batches()
    torch.manual_seed(3)
    buffers = [0.1 * torch.randn_like(w) for w in model.weights()]
    lr, momentum, wd = 0.05, 0.9, 3e-4
    exact = exact_hypergradient(model, train, val, lr, momentum, wd, buffers)
    # A tiny float64 net has so few weights that DARTS' step of 0.01 in weight space crosses ReLU and
    # max-pool kinks; a small step makes the central difference exact up to rounding, so this
    # checks the implementation (virtual step, direction, scaling, sign) rather than the FD error.
    _, approx = second_order_grad(model, train, val, LOSS, lr, momentum, wd, buffers, epsilon=1e-6)
    exact_flat = torch.cat([g.flatten() for g in exact])
    approx_flat = torch.cat([g.flatten() for g in approx])
    cosine = nn.functional.cosine_similarity(exact_flat, approx_flat, dim=0)
    assert cosine >= 0.999, f"cosine similarity {cosine.item():.6f}"
    torch.testing.assert_close(approx_flat, exact_flat, rtol=1e-2, atol=1e-4)
    # The hessian term matters: without it the gradient would be the plain ∇α L_val(w′, α).
    first = torch.cat([g.flatten() for g in first_order_grad(model, val, LOSS)[1]])
    assert not torch.allclose(first, exact_flat, rtol=1e-3, atol=1e-6)


def test_architect_step_moves_only_alphas():
    model = tiny_supernet()
    train, val = batches()
    w_opt = torch.optim.SGD(model.weights(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.alphas(), lr=0.1)
    before_w = [w.detach().clone() for w in model.weights()]
    before_a = [a.detach().clone() for a in model.alphas()]
    for order in (1, 2):
        Architect(model, a_opt, w_opt, order=order).step(train, val, lr=0.05)
    assert all(torch.equal(b, w) for b, w in zip(before_w, model.weights()))
    assert all(not torch.equal(b, a) for b, a in zip(before_a, model.alphas()))
    assert all(a.grad is None for a in model.alphas())
