"""Collapse diagnostics: numbers that warn when a differentiable search is degenerating.

DARTS tends to collapse onto parameter-free ops (skip connections, pools, R-DARTS' noise) as the
search runs long; R-DARTS (Zela et al., ICLR 2020) shows that the dominant eigenvalue of the
validation loss' Hessian with respect to the alphas grows as that happens, and the entropy of the
op weights tells how decided the architecture is. These are plain functions of a model, its op
weights or a derived cell; ``CollapseDiagnostics`` is the engine hook that logs them each epoch.
None of them changes the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas.engine import Engine, Hook
from nas.genotype import Genotype, Pair
from nas.ops import get_op

if TYPE_CHECKING:
    from nas.spaces.darts_supernet import Supernet

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def param_free_count(pairs: Iterable[Pair]) -> int:
    """Number of parameter-free ops among a derived cell's ``(op, input)`` pairs.

    A cell full of skip connections and pools is the signature of collapse; which ops are
    parameter-free is a fact of the op registry (skip_connect counts, as in the literature).
    """
    return sum(1 for op, _ in pairs if get_op(op).parameter_free)


def param_free_counts(genotype: Genotype | Mapping[str, Iterable[Pair]]) -> dict[str, int]:
    """``param_free_count`` of the normal and the reduction cell, keyed like the alphas; takes a
    ``Genotype`` or its dict form (``genotype.json``, ``summary.json``)."""
    cells = genotype.to_dict() if isinstance(genotype, Genotype) else genotype
    return {kind: param_free_count(cells[kind]) for kind in ("normal", "reduce") if kind in cells}


def param_free_scalars(genotype: Any, space: Any = None) -> dict[str, int]:
    """Parameter-free ops per cell kind under their TensorBoard / summary.json tags,
    ``collapse/param_free/<kind>``: counted by ``space`` (any space), or for a DARTS genotype or its
    dict form without one."""
    counts = space.param_free_counts(genotype) if space is not None else param_free_counts(genotype)
    return {f"collapse/param_free/{kind}": n for kind, n in counts.items()}


def alpha_entropy(weights: torch.Tensor, alive: torch.Tensor | None = None) -> float:
    """Mean over edges of the entropy (nats) of each edge's op weights.

    ``weights`` is an (edges × ops) tensor whose rows are distributions (softmax of the alphas).
    log(ops) means undecided, 0 means every edge has settled on one op. Ops outside ``alive``
    (pruned by ASAP) are left out; their weight is 0 anyway, and 0·log 0 counts as 0.
    """
    w = weights.detach().to(torch.float64)
    if alive is not None:
        w = w * alive.to(device=w.device, dtype=w.dtype)
    entropy = -torch.special.xlogy(w, w).sum(dim=-1)
    return float(entropy.mean())


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


def hessian_eig_max(model: nn.Module, batch: Sequence[torch.Tensor], iters: int,
                    loss_fn: LossFn = nn.functional.cross_entropy, seed: int = 0, tol: float = 0.0) -> float:
    """Dominant eigenvalue (largest in magnitude, with its sign) of ∇²_α L on one fixed batch.

    ``model`` is a supernet (``model(x)`` → logits, ``model.alphas()`` → the alpha parameters);
    the Hessian is over all alphas, normal and reduce, concatenated. Power iteration on
    Hessian-vector products (double backward through one forward pass, so stochastic ops such as
    ``noise`` see the same draw in every product), started from a seeded random vector; the
    estimate is the Rayleigh quotient vᵀHv of the last unit vector. With ``tol`` > 0 the
    iteration stops early once the estimate changes by at most ``tol``·|estimate| (each product
    costs about a backward pass, and the search calls this every epoch); 0 runs all ``iters``.

    The loss is evaluated in training mode (batch statistics), as the search sees it. Nothing of
    the model changes: every module's mode, the BatchNorm running statistics (saved and restored)
    and the parameters' ``.grad`` (autograd.grad never writes it) are as before, and the global
    RNG is forked so the search draws the same random numbers whether diagnostics run or not.
    """
    if iters < 1:
        raise ValueError(f"hessian_eig_max needs at least one iteration, got {iters}")
    alphas = list(model.alphas())
    device, dtype = alphas[0].device, alphas[0].dtype
    x, y = batch[0].to(device), batch[1].to(device)
    modes = _modes(model)
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            model.train()
            # Double backward through recomputed (checkpointed) cells is not supported: store them.
            loss = loss_fn(model(x, recompute=False) if hasattr(model, "recompute") else model(x), y)
            # An alpha set no cell uses (no normal cell when layers <= 2) has no gradient: its
            # Hessian rows are zero, so it is left out of the products and gets zeros.
            grads = torch.autograd.grad(loss, alphas, create_graph=True, allow_unused=True)
        used = [i for i, gr in enumerate(grads) if gr is not None and gr.requires_grad]
        generator = torch.Generator().manual_seed(seed)
        v = torch.randn(sum(a.numel() for a in alphas), generator=generator, dtype=torch.float64)
        v = v.to(device=device, dtype=dtype)
        v = v / v.norm()
        eig = 0.0
        for step in range(iters):
            hv = _hvp(grads, alphas, v, used)
            previous, eig = eig, float(torch.dot(v, hv))
            norm = hv.norm()
            if norm == 0:  # v lies in the null space (e.g. a flat loss): the estimate is 0
                break
            if step and abs(eig - previous) <= tol * abs(eig):
                break
            v = hv / norm
        return eig
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for module, training in modes:
            module.training = training


def _hvp(grads: Sequence[torch.Tensor | None], alphas: Sequence[torch.Tensor], v: torch.Tensor,
         used: Sequence[int]) -> torch.Tensor:
    """H·v as one flat vector: the gradient of (∇_α L · v) with respect to the alphas."""
    if not used:
        return torch.zeros_like(v)
    pieces = _split(v, alphas)
    products = torch.autograd.grad([grads[i] for i in used], alphas, grad_outputs=[pieces[i] for i in used],
                                   retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if h is None else h.detach()).reshape(-1) for p, h in zip(pieces, products)])


def _split(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Cut a flat vector into pieces shaped like ``like`` (the alphas)."""
    pieces, start = [], 0
    for t in like:
        pieces.append(flat[start:start + t.numel()].view_as(t))
        start += t.numel()
    return pieces


class CollapseDiagnostics(Hook):
    """After each epoch: parameter-free ops in the derived cells, op-weight entropy and, every
    ``hessian_every`` epochs, the dominant Hessian eigenvalue on one fixed validation batch."""

    def __init__(self, model: Supernet, task: Any, cfg: Any, val_batches: Any):
        self.model, self.task, self.cfg, self.val_batches = model, task, cfg, val_batches
        self._batch: Sequence[torch.Tensor] | None = None

    def after_epoch(self, engine: Engine, metrics: dict[str, float]) -> None:
        arch = self.model.arch
        with torch.no_grad():
            weights, alive = arch.edge_weights(), arch.alive()
        metrics.update(param_free_scalars(self.task.genotype, self.task.space))
        metrics.update({f"alpha/entropy/{k}": alpha_entropy(weights[k], alive[k]) for k in weights})
        every = self.cfg.hessian_every
        if every and engine.counters.epoch % every == 0:
            if self._batch is None:  # one fixed validation batch, so that epochs compare
                self._batch = next(iter(self.val_batches.batches(0)))
            metrics["hessian/eig_max"] = hessian_eig_max(self.model, self._batch, self.cfg.hessian_iters, tol=1e-3)
