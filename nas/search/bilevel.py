"""The bilevel step of DARTS: alphas on a validation batch, then weights on a training batch.

Alpha step, first order: ∇α L_val(w, α), asking autograd for the alpha gradients only (that skips
the weight gradients of every convolution, the largest share of a backward pass).

Alpha step, second order: differentiate through one virtual SGD step of the weights,
w′ = w − ξ·(∇w L_train(w, α) + μ·v + λ·w) (ξ the weight learning rate, μ the momentum, v the SGD
momentum buffer, λ the weight decay):

    ∇α L_val(w′, α) − ξ · ∇²_{α,w} L_train(w, α) · ∇w′ L_val(w′, α).

The Hessian-vector product is DARTS' central difference (``hessian=finite_difference``),
(∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / 2ε with w± = w ± ε·∇w′ L_val and ε = 0.01 / ‖∇w′ L_val‖,
or exact (``hessian=exact``): autograd's double backward through the ∇w L_train pass.

Every pass runs the one supernet with swapped-in weights (``torch.func.functional_call``): nothing
is copied. BatchNorm running statistics see exactly what the official code's live model sees — the
∇w L_train pass and the finite-difference passes — while the L_val(w′) pass, which the official
code runs on a throw-away copy, updates copies of the statistics that are then dropped.

Weight step: SGD on L_train with the op weights fixed (no graph back to the alphas), gradients
averaged over data-parallel ranks before clipping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from nas.spaces.darts_supernet import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]
Average = Callable[[list], None]  # averages tensors over data-parallel ranks in place
Regularizer = Callable[[], torch.Tensor]  # an extra alpha loss (FairDARTS, DrNAS)
LOSS = nn.functional.cross_entropy


def _no_average(tensors: list) -> None:
    """The single-process case: every gradient is already the whole batch's."""


def loss_at(model: Supernet, batch: Batch, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """L(batch) of the supernet, at its own weights or at ``weights`` swapped in by name."""
    x, y = batch
    return LOSS(model(x) if weights is None else functional_call(model, weights, (x,), strict=False), y)


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


class Bilevel:
    """``step(train, val)``: the alpha step, then the weight step — the DARTS algorithm's order."""

    def __init__(self, model: Supernet, w_opt: torch.optim.SGD, a_opt: torch.optim.Optimizer, grad_clip: float,
                 order: int = 1, hessian: str = "finite_difference", fd_epsilon: float = 0.01,
                 average: Average = _no_average, regularizer: Regularizer | None = None,
                 perturb: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None):
        if order not in (1, 2) or hessian not in ("finite_difference", "exact"):
            raise ValueError(f"order must be 1 or 2 and hessian finite_difference or exact, got {order}, {hessian}")
        self.model, self.w_opt, self.a_opt, self.grad_clip = model, w_opt, a_opt, grad_clip
        self.order, self.hessian, self.fd_epsilon = order, hessian, fd_epsilon
        self.average, self.regularizer = average, regularizer
        self.perturb = perturb  # noise on the alphas of the weight step (SDARTS), or None

    @property
    def lr(self) -> float:
        return self.w_opt.param_groups[0]["lr"]

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        metrics = {"loss/val_step": self.alpha_step(train, val)}
        metrics.update(self.weight_step(train))
        return metrics

    # -- alphas ---------------------------------------------------------------------------------
    def alpha_step(self, train: Batch, val: Batch) -> torch.Tensor:
        """Update the alphas; returns the validation loss the step saw."""
        self.model.train()
        loss, grads = self.hypergradient(train, val)
        for alpha, g in zip(self.model.alphas(), grads):
            alpha.grad = g
        self.a_opt.step()
        self.a_opt.zero_grad(set_to_none=True)
        return loss

    def hypergradient(self, train: Batch, val: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the validation loss, the gradient of the alpha objective), averaged over ranks."""
        alphas = self.model.alphas()
        if self.order == 2:
            loss, grads = self.unrolled_gradient(train, val)
            if self.regularizer is not None:  # it depends on α alone: its gradient simply adds
                grads = [g + r for g, r in zip(grads, torch.autograd.grad(self.regularizer(), alphas))]
            return loss, grads
        loss = loss_at(self.model, val)
        # allow_unused: with a sampled path (GDAS) a cell whose every edge drew an input-free op (S4's
        # noise) cuts the loss off from the cells before it; their alphas then get a zero gradient.
        grads = torch.autograd.grad(self._with_regularizer(loss), alphas, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads)]
        self.average(grads)
        return loss.detach(), grads

    def _with_regularizer(self, loss: torch.Tensor) -> torch.Tensor:
        return loss if self.regularizer is None else loss + self.regularizer()

    def unrolled_gradient(self, train: Batch, val: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(L_val(w′, α), the second-order DARTS hypergradient with respect to α)."""
        model, lr, exact = self.model, self.lr, self.hessian == "exact"
        names, weights = zip(*model.named_weights())
        alphas = model.alphas()
        group = self.w_opt.param_groups[0]
        buffers = [self.w_opt.state.get(p, {}).get("momentum_buffer") for p in weights]

        # ∇w L_train(w, α) on the live supernet. Finite differences need no graph back to α here;
        # the exact Hessian-vector product differentiates this very gradient again later.
        if exact:
            train_loss = loss_at(model, train)
        else:
            with torch.no_grad():
                fixed_arch = {k: v.detach() for k, v in model.arch.edge_weights().items()}
            train_loss = LOSS(model(train[0], fixed_arch), train[1])
        grads = torch.autograd.grad(train_loss, weights, allow_unused=True, create_graph=exact)
        del train_loss
        step_grads = [None if g is None else g.detach().clone() for g in grads] if exact else list(grads)
        self.average(step_grads)  # so that every rank builds the same w′
        live = [i for i, g in enumerate(grads) if g is not None]  # weights the loss actually used
        with torch.no_grad():
            unrolled = virtual_step(names, weights, step_grads, lr, group.get("momentum", 0.0),
                                    group.get("weight_decay", 0.0), buffers)
        del step_grads
        for i in live:
            unrolled[names[i]].requires_grad_(True)

        # L_val(w′, α) on copies of the BatchNorm statistics (the official code's throw-away model).
        scratch = {name: b.clone() for name, b in model.named_buffers()}
        val_loss = LOSS(functional_call(model, {**unrolled, **scratch}, (val[0],), strict=False), val[1])
        outs = torch.autograd.grad(val_loss, alphas + [unrolled[names[i]] for i in live], allow_unused=True)
        d_alpha = list(outs[: len(alphas)])
        v = [torch.zeros_like(unrolled[names[i]]) if g is None else g for i, g in zip(live, outs[len(alphas):])]
        del outs, scratch
        self.average(d_alpha + v)

        if exact:  # ∇α (∇w L_train(w, α) · v) by double backward; each rank's share, then averaged
            hvp = torch.autograd.grad([grads[i] for i in live], alphas, grad_outputs=v, allow_unused=True)
            hvp = [torch.zeros_like(a) if h is None else h for a, h in zip(alphas, hvp)]
            self.average(hvp)
            return val_loss.detach(), [da - lr * h for da, h in zip(d_alpha, hvp)]
        # Central differences of ∇α L_train around w along v.
        del grads
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in v]))
        eps = self.fd_epsilon / norm.clamp_min(1e-12)
        terms = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shifted = {names[i]: weights[i] + sign * eps * g for i, g in zip(live, v)}
            terms.append(list(torch.autograd.grad(loss_at(model, train, shifted), alphas)))
            self.average(terms[-1])
            del shifted
        return val_loss.detach(), [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, *terms)]

    # -- weights --------------------------------------------------------------------------------
    def weight_step(self, batch: Batch, edge_weights: dict[str, torch.Tensor] | None = None,
                    active: dict | None = None) -> dict[str, torch.Tensor]:
        """One SGD step of the weights with the op weights fixed (``edge_weights``: instead of the
        architecture's own, e.g. SDARTS' perturbed ones; ``active``: the ops to compute)."""
        model = self.model
        model.train()
        x, y = batch
        if edge_weights is None:
            with torch.no_grad():
                noisy = None if self.perturb is None else self.perturb(model.arch.alphas())
                edge_weights, active = model.arch.forward_weights(True, noisy)
        logits = model(x, edge_weights, active)
        loss = LOSS(logits, y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        weights = list(model.weights())
        self.average([p.grad for p in weights])
        nn.utils.clip_grad_norm_(weights, self.grad_clip)
        self.w_opt.step()
        return {"loss/train": loss.detach(), "acc/train": (logits.argmax(1) == y).float().mean()}
