"""The architecture step of the bilevel problem: first order and second order (unrolled) DARTS.

First order uses ∇α L_val(w, α) and asks autograd for the alpha gradients only, which skips the
weight gradients of every convolution (the largest share of a backward pass).

Second order differentiates through one virtual SGD step of the weights,
w′ = w − ξ·(∇w L_train(w, α) + μ·v + λ·w), with ξ the current weight learning rate, μ the momentum,
v the optimizer's momentum buffer and λ the weight decay, and approximates the Hessian-vector
product by central finite differences (DARTS eq. 7–8):

    ∇α L_val(w′, α) − ξ · (∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / (2ε),
    w± = w ± ε·∇w′ L_val(w′, α),  ε = 0.01 / ‖∇w′ L_val(w′, α)‖.

Every pass runs the one supernet with swapped-in weights through ``torch.func.functional_call``:
no model is copied or rebuilt, and the two finite-difference passes only ask for alpha gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from nas.search.supernet import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Average = Callable[[list], None]  # averages tensors over data-parallel ranks in place


def _no_average(tensors: list) -> None:
    """The single-process case: every gradient is already the whole batch's."""


def _loss_with(model: Supernet, weights: dict[str, torch.Tensor] | None, batch: Batch,
               loss_fn: LossFn) -> torch.Tensor:
    x, y = batch
    logits = model(x) if weights is None else functional_call(model, weights, (x,), strict=False)
    return loss_fn(logits, y)


def first_order_grad(model: Supernet, val_batch: Batch, loss_fn: LossFn,
                     average: Average = _no_average) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(L_val, ∇α L_val(w, α))."""
    loss = _loss_with(model, None, val_batch, loss_fn)
    grads = list(torch.autograd.grad(loss, model.alphas()))
    average(grads)
    return loss.detach(), grads


def virtual_step(names: Sequence[str], weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
                 lr: float, momentum: float, weight_decay: float,
                 momentum_buffers: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """w′ = w − ξ(g + μ·v + λ·w) for every weight; weights without a gradient (ops that were not
    computed) are left as they are, as the real SGD step leaves them."""
    out = {}
    for name, w, g, v in zip(names, weights, grads, momentum_buffers):
        if g is None:
            out[name] = w
            continue
        step = g + weight_decay * w
        if v is not None:
            step = step + momentum * v
        out[name] = w - lr * step
    return out


def second_order_grad(model: Supernet, train_batch: Batch, val_batch: Batch, loss_fn: LossFn, lr: float,
                      momentum: float, weight_decay: float,
                      momentum_buffers: Sequence[torch.Tensor | None],
                      epsilon: float = 0.01, average: Average = _no_average) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(L_val(w′, α), the finite-difference DARTS hypergradient with respect to α).

    ``epsilon`` is the length of the finite-difference step in weight space (DARTS: 0.01).
    ``average`` makes each intermediate gradient the global batch's under data parallelism, so
    that every rank builds the same w′ and w±, and ends with the same hypergradient.
    """
    names, weights = zip(*model.named_weights())
    alphas = model.alphas()

    # ∇w L_train(w, α): the arch is fixed here, so detach it and skip its graph.
    with torch.no_grad():
        fixed_arch = {k: v.detach() for k, v in model.arch.edge_weights().items()}
    x_t, y_t = train_batch
    train_loss = loss_fn(model(x_t, fixed_arch), y_t)
    grads = torch.autograd.grad(train_loss, weights, allow_unused=True)
    average(list(grads))
    del train_loss
    live = [n for n, g in zip(names, grads) if g is not None]  # weights the loss actually used
    with torch.no_grad():
        unrolled = virtual_step(names, weights, grads, lr, momentum, weight_decay, momentum_buffers)
    del grads
    for n in live:
        unrolled[n].requires_grad_(True)

    val_loss = _loss_with(model, unrolled, val_batch, loss_fn)
    outs = torch.autograd.grad(val_loss, alphas + [unrolled[n] for n in live], allow_unused=True)
    d_alpha = list(outs[: len(alphas)])
    d_unrolled = [torch.zeros_like(unrolled[n]) if g is None else g for n, g in zip(live, outs[len(alphas):])]
    del outs
    average(d_alpha + d_unrolled)

    # Central differences of ∇α L_train around w along v = ∇w′ L_val(w′, α).
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in d_unrolled]))
    eps = epsilon / norm.clamp_min(1e-12)
    by_name = dict(zip(names, weights))
    hessian_terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            shifted = {n: by_name[n] + sign * eps * g for n, g in zip(live, d_unrolled)}
        loss = _loss_with(model, shifted, train_batch, loss_fn)
        hessian_terms.append(list(torch.autograd.grad(loss, alphas)))
        average(hessian_terms[-1])
        del loss, shifted
    grad = [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, *hessian_terms)]
    return val_loss.detach(), grad


class Architect:
    """One entry point for both orders: ``step(train_batch, val_batch, lr)`` updates the alphas."""

    def __init__(self, model: Supernet, alpha_optimizer: torch.optim.Optimizer, weight_optimizer: torch.optim.Optimizer,
                 order: int = 1, loss_fn: LossFn = nn.functional.cross_entropy, fd_epsilon: float = 0.01,
                 average: Average = _no_average):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.model = model
        self.alpha_optimizer = alpha_optimizer
        self.weight_optimizer = weight_optimizer
        self.order = order
        self.loss_fn = loss_fn
        self.fd_epsilon = fd_epsilon
        self.average = average

    def hypergradient(self, train_batch: Batch, val_batch: Batch, lr: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.order == 1:
            return first_order_grad(self.model, val_batch, self.loss_fn, self.average)
        group = self.weight_optimizer.param_groups[0]
        buffers = [self.weight_optimizer.state.get(p, {}).get("momentum_buffer") for p in self.model.weights()]
        return second_order_grad(self.model, train_batch, val_batch, self.loss_fn, lr,
                                 group.get("momentum", 0.0), group.get("weight_decay", 0.0), buffers,
                                 self.fd_epsilon, self.average)

    def step(self, train_batch: Batch, val_batch: Batch, lr: float) -> torch.Tensor:
        """Update the alphas; returns the validation loss the step saw."""
        loss, grads = self.hypergradient(train_batch, val_batch, lr)
        for alpha, g in zip(self.model.alphas(), grads):
            alpha.grad = g
        self.alpha_optimizer.step()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        return loss
