"""The bilevel step: architecture gradients checked against autograd, not against another
implementation, and the BatchNorm statistics the live supernet keeps checked against a model copy."""


import copy

import torch
from torch import nn
from torch.func import functional_call

from nas.search.bilevel import Bilevel, virtual_step
from nas.spaces.darts_supernet import Supernet

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


def stepper(model, order=1, hessian="finite_difference", fd_epsilon=0.01, lr=0.05, momentum=0.9, wd=3e-4,
            buffers=None):
    """A Bilevel on ``model`` whose weight optimizer holds ``buffers`` as momentum buffers."""
    w_opt = torch.optim.SGD(model.weights(), lr=lr, momentum=momentum, weight_decay=wd)
    if buffers is not None:
        for p, b in zip(model.weights(), buffers):
            w_opt.state[p]["momentum_buffer"] = b
    a_opt = torch.optim.Adam(model.alphas(), lr=0.1)
    return Bilevel(model, w_opt, a_opt, grad_clip=5.0, order=order, hessian=hessian, fd_epsilon=fd_epsilon)


def test_first_order_equals_alpha_gradient_of_val_loss():
    model = tiny_supernet()
    train, val = batches()
    loss, grads = stepper(model).hypergradient(train, val)
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
    _, approx = stepper(model, 2, fd_epsilon=1e-6, lr=lr, momentum=momentum, wd=wd,
                        buffers=buffers).hypergradient(train, val)
    exact_flat = torch.cat([g.flatten() for g in exact])
    approx_flat = torch.cat([g.flatten() for g in approx])
    cosine = nn.functional.cosine_similarity(exact_flat, approx_flat, dim=0)
    assert cosine >= 0.999, f"cosine similarity {cosine.item():.6f}"
    torch.testing.assert_close(approx_flat, exact_flat, rtol=1e-2, atol=1e-4)
    # The hessian term matters: without it the gradient would be the plain ∇α L_val(w′, α).
    first = torch.cat([g.flatten() for g in stepper(model).hypergradient(train, val)[1]])
    assert not torch.allclose(first, exact_flat, rtol=1e-3, atol=1e-6)


def test_alpha_step_moves_only_alphas():
    model = tiny_supernet()
    train, val = batches()
    before_w = [w.detach().clone() for w in model.weights()]
    before_a = [a.detach().clone() for a in model.alphas()]
    for order in (1, 2):
        stepper(model, order).alpha_step(train, val)
    assert all(torch.equal(b, w) for b, w in zip(before_w, model.weights()))
    assert all(not torch.equal(b, a) for b, a in zip(before_a, model.alphas()))
    assert all(a.grad is None for a in model.alphas())


def test_exact_hessian_equals_the_autograd_hypergradient():
    model = tiny_supernet()
    train, val = batches()
    torch.manual_seed(3)
    buffers = [0.1 * torch.randn_like(w) for w in model.weights()]
    lr, momentum, wd = 0.05, 0.9, 3e-4
    reference = torch.cat([g.flatten() for g in exact_hypergradient(model, train, val, lr, momentum, wd, buffers)])
    _, exact = stepper(model, 2, hessian="exact", lr=lr, momentum=momentum, wd=wd,
                       buffers=buffers).hypergradient(train, val)
    torch.testing.assert_close(torch.cat([g.flatten() for g in exact]), reference, rtol=0, atol=1e-8)
    # At DARTS' radius the finite difference is a different number on this tiny net (ReLU and
    # max-pool kinks): what the exact mode is for.
    _, fd = stepper(model, 2, lr=lr, momentum=momentum, wd=wd, buffers=buffers).hypergradient(train, val)
    assert not torch.allclose(torch.cat([g.flatten() for g in fd]), reference, rtol=1e-3, atol=1e-6)


def running_stats(model):
    return {name: b.clone() for name, b in model.named_buffers() if "running" in name or "num_batches" in name}


def test_second_order_step_leaves_batchnorm_as_the_official_code_does():
    """The official code runs ∇w L_train and both finite-difference passes on the live model and
    L_val(w′) on a throw-away copy: the live statistics must see exactly those three passes."""
    model = tiny_supernet()
    train, val = batches()
    reference = copy.deepcopy(model)
    lr = 0.05
    bilevel = stepper(model, 2, lr=lr, momentum=0.0, wd=0.0)
    bilevel.hypergradient(train, val)

    # The official sequence, by hand, on the copy taken before the step.
    ref = reference
    weights = list(ref.weights())
    grads = torch.autograd.grad(LOSS(ref(train[0]), train[1]), weights, allow_unused=True)  # live pass 1
    throwaway = copy.deepcopy(ref)
    with torch.no_grad():
        for p, g in zip(throwaway.weights(), grads):
            if g is not None:
                p.sub_(lr * g)
    val_loss = LOSS(throwaway(val[0]), val[1])  # on the copy: its statistics are dropped
    v = torch.autograd.grad(val_loss, list(throwaway.weights()), allow_unused=True)
    v = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, v)]
    eps = 0.01 / torch.cat([g.flatten() for g in v]).norm()
    for sign in (1.0, -1.0):  # live passes 2 and 3, at w ± εv
        shifted = {n: w + sign * eps * g for (n, w), g in zip(ref.named_weights(), v)}
        with torch.no_grad():
            functional_call(ref, shifted, (train[0],), strict=False)
    got, expected = running_stats(model), running_stats(ref)
    assert got.keys() == expected.keys() and got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12, msg=name)
