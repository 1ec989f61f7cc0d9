"""Zero-cost proxies: scores of an untrained network from one batch, to rank architectures without training.

Each proxy is a plain function of a model and a batch (or, for SynFlow, only an input shape) that
returns a float; a higher score is meant to predict a higher accuracy after training. Sources:

* ``synflow``, ``snip``, ``grad_norm``, ``jacob_cov``: Abdelfattah, Mehrotra, Dudziak and Lane,
  "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (which takes SynFlow from Tanaka et al.,
  NeurIPS 2020, SNIP from Lee et al., ICLR 2019, and ``jacob_cov`` from the first version of
  Mellor et al.'s paper below);
* ``naswot``: Mellor, Turner, Storkey and Crowley, "Neural Architecture Search without Training",
  ICML 2021.

Conventions shared by every proxy:

* ``forward(model, x) -> logits`` is how the model is called, so that networks returning tuples
  (``EvalNetwork`` returns ``(logits, aux_logits)``) work; :func:`logits_of` is the default.
* Sums run over *all* parameters (trainable or frozen; biases and BatchNorm affine parameters
  included), accumulated in float64. The reference code of Abdelfattah et al. sums over the
  weights of conv and linear layers only and takes ``grad_norm`` per layer; here ``grad_norm`` is
  the Euclidean norm of the whole gradient. Both give the same ranking signal in spirit; the
  numbers differ.
* Except SynFlow, the proxies run the network in training mode, as the papers do at
  initialisation: BatchNorm normalises with the batch's statistics (an untrained network's
  running statistics are placeholders) and stochastic layers (dropout, noise) draw their
  randomness inside a forked RNG.
* The model is left exactly as it was found. The forward pass goes through
  :func:`torch.func.functional_call` with stand-ins for the parameters (detached views, or
  absolute float64 copies for SynFlow) and *clones* of the buffers, so BatchNorm's running
  statistics and ``num_batches_tracked`` are updated on the clones only; gradients come from
  :func:`torch.autograd.grad`, so no ``.grad`` is written and no ``requires_grad`` flag changes;
  every module's ``training`` flag is put back; the global RNG (CPU and the CUDA devices in use)
  is forked, so it is unchanged afterwards. Temporary hooks are removed before returning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nas.errors import ConfigError

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]

JACOB_COV_K = 1e-5  # the k of the jacob_cov score, as in the paper


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, or its first element when the model returns a tuple (``EvalNetwork``: the logits)."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


# --- leaving the model as it was --------------------------------------------------------------------------------
class _Call(nn.Module):
    """``forward(model, x)`` as a module, so that functional_call can substitute the model's tensors under the
    ``model.`` prefix. Holding the model as a child does not change it."""

    def __init__(self, model: nn.Module, forward: Forward):
        super().__init__()
        self.model = model
        self.call = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(self.model, x)


def _run(model: nn.Module, forward: Forward, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
         x: torch.Tensor) -> torch.Tensor:
    """The logits of ``forward(model, x)`` computed with ``params`` and ``buffers`` in place of the model's own."""
    substitutes = {f"model.{name}": tensor for name, tensor in {**params, **buffers}.items()}
    return functional_call(_Call(model, forward), substitutes, (x,))


def _stand_ins(model: nn.Module, requires_grad: bool, float64: bool = False,
               absolute: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(parameters, buffers) to run the model with: new leaf tensors for the parameters (views of the model's
    storage unless converted) and clones of the buffers, so nothing the forward pass does reaches the model."""
    params = {}
    for name, p in model.named_parameters():
        t = p.detach()
        if absolute:
            t = t.abs()
        if float64:
            t = t.double()
        params[name] = t.requires_grad_(requires_grad)
    buffers = {}
    for name, b in model.named_buffers():
        b = b.detach().clone()
        buffers[name] = b.double() if float64 and b.is_floating_point() else b
    return params, buffers


def _cuda_devices(model: nn.Module, *tensors: torch.Tensor) -> list[int]:
    every = [*model.parameters(), *model.buffers(), *tensors]
    return sorted({t.device.index or 0 for t in every if t.device.type == "cuda"})


@contextmanager
def _borrowed(model: nn.Module, training: bool, *tensors: torch.Tensor) -> Iterator[None]:
    """Put the whole model in ``training`` mode with gradients enabled and the global RNG forked; on the way out
    give every module its own mode back (submodules may have differed from their parent)."""
    modes = [(module, module.training) for module in model.modules()]
    with torch.random.fork_rng(devices=_cuda_devices(model, *tensors)), torch.enable_grad():
        try:
            model.train(training)
            yield
        finally:
            for module, mode in modes:
                module.training = mode


@contextmanager
def _hooks(modules: Sequence[nn.Module], hook: Callable) -> Iterator[None]:
    """Forward hooks on ``modules`` for the duration of the block."""
    with ExitStack() as stack:
        for module in modules:
            stack.callback(module.register_forward_hook(hook).remove)
        yield


def _grads(output: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∂output/∂inputs, zeros for inputs the output does not depend on; nothing is written to ``.grad``."""
    if not inputs or not output.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(output, list(inputs), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


def _device(model: nn.Module) -> torch.device:
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return torch.device("cpu")


def _saliency(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> float:
    """Σ |θ ⊙ g| over every parameter, in float64."""
    return float(sum((p.detach().double() * g.double()).abs().sum() for p, g in zip(params, grads)))


# --- the proxies ------------------------------------------------------------------------------------------------
def synflow(model: nn.Module, input_shape: Sequence[int], forward: Forward = logits_of) -> float:
    """SynFlow (Tanaka et al., NeurIPS 2020, as a zero-cost proxy in Abdelfattah et al., ICLR 2021): the total
    "synaptic flow" Σ |θ ⊙ ∂R/∂θ| of the network with every parameter replaced by its absolute value, where R is
    the sum of the outputs for a single all-ones input of shape ``input_shape`` (one image, no batch dimension,
    e.g. ``(3, 32, 32)``). Computed once, at the current weights (not the iterative pruning of the SynFlow paper).

    Why: with non-negative weights and a positive input, every ReLU passes its input and R is the sum over all
    input→output paths of the product of the |θ| along the path (an l1 path norm); θ·∂R/∂θ is the share of R
    that flows through θ. It needs no data and no labels, and unlike gradient saliencies it does not vanish for
    whole layers, so it measures how much of the network can carry signal at all. Float64, because R is a sum of
    products over every layer and overflows float32 in deep networks.

    BatchNorm is bypassed (an identity), as in the reference code of Abdelfattah et al., which builds the
    network without BatchNorm for SynFlow: in training mode BatchNorm would normalise the constant all-ones
    signal to about zero and kill the flow, and in eval mode it would subtract running means, which are not
    parameters, are not made positive and, once trained, break the path-norm reading. So BatchNorm affine
    parameters get no gradient and score 0. The network runs in eval mode (no dropout or drop path).
    """
    device = _device(model)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with _borrowed(model, False), _hooks(batchnorms, lambda module, inputs, output: inputs[0]):
        params, buffers = _stand_ins(model, requires_grad=True, float64=True, absolute=True)
        ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
        flow = _run(model, forward, params, buffers, ones).sum()
        values = list(params.values())
        return _saliency(values, _grads(flow, values))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forward: Forward = logits_of) -> float:
    """SNIP (Lee et al., ICLR 2019; a zero-cost proxy in Abdelfattah et al., ICLR 2021): Σ |θ ⊙ ∂L/∂θ| with L the
    mean cross-entropy of the batch ``(x, y)``.

    Why: θ·∂L/∂θ is the first-order change of the loss when θ is removed (set to 0), so the sum measures how
    much the untrained network's loss depends on its weights: the connection sensitivity of the architecture.
    """
    with _borrowed(model, True, x, y):
        params, buffers = _stand_ins(model, requires_grad=True)
        loss = F.cross_entropy(_run(model, forward, params, buffers, x), y)
        values = list(params.values())
        return _saliency(values, _grads(loss, values))


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forward: Forward = logits_of) -> float:
    """Gradient norm (a zero-cost baseline in Abdelfattah et al., ICLR 2021): the Euclidean norm of ∂L/∂θ over all
    parameters together, L the mean cross-entropy of the batch ``(x, y)``.

    Why: how strongly the untrained network's weights are pulled by the first training step; architectures
    whose gradients vanish (or explode) at initialisation tend to train badly.
    """
    with _borrowed(model, True, x, y):
        params, buffers = _stand_ins(model, requires_grad=True)
        loss = F.cross_entropy(_run(model, forward, params, buffers, x), y)
        grads = _grads(loss, list(params.values()))
        return math.sqrt(float(sum(g.double().pow(2).sum() for g in grads)))


def jacob_cov(model: nn.Module, x: torch.Tensor, forward: Forward = logits_of) -> float:
    """Jacobian covariance (Mellor et al., first version of "NAS without training", 2020; a zero-cost proxy in
    Abdelfattah et al., ICLR 2021).

    J is the gradient of the sum of all logits with respect to the input, one row per image, flattened (in
    training mode BatchNorm's batch statistics couple the images, and J includes that, as the paper's code
    does). With Σ_J the N×N correlation matrix of the rows of J and λ_1..λ_N its eigenvalues,

        score = −Σ_i [ log(λ_i + k) + 1 / (λ_i + k) ],   k = 1e-5.

    Why: a network that maps different images to different local linear maps (uncorrelated Jacobians, Σ_J close
    to the identity, every λ_i close to 1) can tell the images apart before training; highly correlated
    Jacobians give eigenvalues near 0, where 1/(λ + k) makes the score very negative.

    Needs at least 2 images. Returns NaN when some image's Jacobian is constant (a zero-variance row makes its
    correlations undefined), e.g. when the logits do not depend on the input.
    """
    if x.shape[0] < 2:
        raise ValueError(f"jacob_cov needs at least 2 images to correlate, got {x.shape[0]}")
    with _borrowed(model, True, x):
        params, buffers = _stand_ins(model, requires_grad=False)
        images = x.detach().clone().requires_grad_(True)
        (jacobian,) = _grads(_run(model, forward, params, buffers, images).sum(), [images])
    rows = jacobian.reshape(x.shape[0], -1).double().cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(rows)
    if not np.isfinite(corr).all():
        return float("nan")
    eig = np.linalg.eigvalsh(corr) + JACOB_COV_K
    return float(-np.sum(np.log(eig) + 1.0 / eig))


def naswot(model: nn.Module, x: torch.Tensor, forward: Forward = logits_of) -> float:
    """NASWOT (Mellor et al., ICML 2021, "Neural Architecture Search without Training"): log |det K|.

    Every ``nn.ReLU`` module's output gives each image a binary code (1 where the post-activation is > 0), and
    the codes of all ReLU calls are concatenated (length N_A). K is the N×N kernel K_ij = N_A − Hamming(c_i, c_j),
    that is c·cᵀ + (1 − c)·(1 − c)ᵀ, accumulated call by call in float64; the score is its log absolute
    determinant (``slogdet``), −inf when K is singular (two images with the same code).

    Why: the code says which linear region of the ReLU network an image falls in. An untrained network that
    puts the images of a batch in distinct, dissimilar regions (K close to diagonal, a large determinant) can
    separate them, and such architectures tend to train to higher accuracy.

    Only ``nn.ReLU`` modules are seen (not ``F.relu`` calls); a model without any raises ``ValueError``.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"naswot needs nn.ReLU modules to read binary codes from; {type(model).__name__} has none")
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    calls = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if output.shape[0] != n:
            raise ValueError(f"naswot: a ReLU output of shape {tuple(output.shape)} has no batch dimension of {n}")
        codes = (output.detach() > 0).reshape(n, -1).double()
        kernel.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)
        calls.append(codes.shape[1])

    with _borrowed(model, True, x), torch.no_grad(), _hooks(relus, record):
        params, buffers = _stand_ins(model, requires_grad=False)
        _run(model, forward, params, buffers, x)
    if not calls:
        raise ValueError(f"naswot: none of the {len(relus)} nn.ReLU modules of {type(model).__name__} ran")
    return float(torch.linalg.slogdet(kernel).logabsdet)


PROXIES: dict[str, Callable[..., float]] = {
    "synflow": synflow,
    "snip": snip,
    "grad_norm": grad_norm,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
}

# How each proxy takes a batch (x, y): SynFlow only needs the shape of one image, some ignore the labels.
_FROM_BATCH: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor, Forward], float]] = {
    "synflow": lambda model, x, y, forward: synflow(model, tuple(x.shape[1:]), forward),
    "snip": lambda model, x, y, forward: snip(model, x, y, forward),
    "grad_norm": lambda model, x, y, forward: grad_norm(model, x, y, forward),
    "jacob_cov": lambda model, x, y, forward: jacob_cov(model, x, forward),
    "naswot": lambda model, x, y, forward: naswot(model, x, forward),
}


def proxy_score(name: str, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                forward: Forward = logits_of) -> float:
    """The zero-cost proxy ``name`` of ``model`` on ``batch = (x, y)``; raises ``ConfigError`` for an unknown name."""
    if name not in PROXIES:
        raise ConfigError(f"unknown zero-cost proxy '{name}'; choose one of {', '.join(PROXIES)}")
    x, y = batch
    return _FROM_BATCH[name](model, x, y, forward)
