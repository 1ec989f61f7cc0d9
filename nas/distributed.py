"""Data-parallel runs under ``torchrun``: who this process is, gradient averaging, synced BatchNorm.

Why not ``DistributedDataParallel``: a search step runs the supernet through
``torch.func.functional_call`` with swapped-in weights, asks autograd for alpha gradients only,
and leaves pruned and ``none`` ops without gradients; the DDP wrapper's hooks assume one plain
forward and backward per step. Averaging the gradients explicitly, in one flat all-reduce per
update, works for every step of both loops (weights, first- and second-order alphas) and keeps the
model unwrapped (same checkpoints with or without DDP).

The rules that make ranks agree: every rank seeds identically (same initial weights and alphas);
each takes a disjoint slice of every *global* batch (``batch_size`` is the global batch, so a
config means the same thing on 1 or N GPUs); gradients are averaged before clipping and before
the optimizers step, so weights and alphas stay bitwise identical; decisions that end a run
(signals, a NaN) are agreed on by all ranks at once, so none is left waiting in a collective.
Only rank 0 writes files.

With ``distributed.sync_bn=true`` BatchNorm statistics are computed over the global batch (here,
on any backend, gloo included), so an N-process run matches a one-process run with the same
global batch; without it each rank normalises its own slice, as plain DDP does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nas.errors import ConfigError


@dataclass
class World:
    """This process's place in the run: rank 0 of 1 when not launched by ``torchrun``."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def average_(self, tensors: list[torch.Tensor | None]) -> None:
        """Average tensors across ranks in place, with one all-reduce over a flat buffer."""
        present = [t for t in tensors if t is not None]
        if not self.active or not present:
            return
        flat = torch.cat([t.reshape(-1).float() for t in present])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for t in present:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def average_grads_(self, params: list[nn.Parameter] | Any) -> None:
        """Average ``.grad`` of ``params`` across ranks (parameters without a gradient are skipped,
        and are the same on every rank: they are the ops that no rank computed)."""
        self.average_([p.grad for p in params])

    def agree_(self, metrics: dict[str, torch.Tensor], signal: int | None) -> int | None:
        """Once per step: average the step's metrics over ranks in place (a NaN on one rank becomes
        a NaN on all, so all stop together) and return the signal any rank received, or None."""
        if not self.active:
            return signal
        self.average_(list(metrics.values()))
        return self.any_(signal)

    def sum_(self, values: list[float]) -> list[float]:
        """Sums of a few numbers over ranks (evaluation totals)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return t.tolist()

    def any_(self, flag: int | None) -> int | None:
        """The largest non-zero flag raised on any rank (e.g. a signal number), or None: every rank
        takes the same decision at the same step."""
        if not self.active:
            return flag
        t = torch.tensor([flag or 0], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) or None

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the run directory Hydra chose there)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max_divergence(self, tensors: list[torch.Tensor]) -> float:
        """Largest absolute difference between this run's ``tensors`` on any rank and on rank 0:
        0.0 when the ranks agree, as they must (a cheap end-of-run check recorded in summary.json)."""
        if not self.active:
            return 0.0
        device = _collective_device()
        mine = torch.cat([t.detach().reshape(-1).float().to(device) for t in tensors])
        reference = mine.clone()
        dist.broadcast(reference, src=0)
        gap = (mine - reference).abs().max().reshape(1)
        dist.all_reduce(gap, op=dist.ReduceOp.MAX)
        return float(gap.item())

    def broadcast_buffers_(self, module: nn.Module) -> None:
        """Rank 0's BatchNorm running statistics on every rank (they differ without sync_bn)."""
        if not self.active:
            return
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.broadcast(buffer, src=0)


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: NCCL needs CUDA tensors, gloo takes CPU ones."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched_world() -> World:
    """The rank and world size ``torchrun`` put in the environment (rank 0 of 1 without it)."""
    return World(rank=int(os.environ.get("RANK", "0")), size=int(os.environ.get("WORLD_SIZE", "1")))


def init_world(device_name: str) -> tuple[World, str]:
    """Join the process group when launched by ``torchrun``; returns (world, device to use).

    Each rank takes the GPU of its local rank (``cuda:LOCAL_RANK``) and the NCCL backend; on CPU
    the gloo backend.
    """
    world = launched_world()
    if not world.active:
        return world, device_name
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device_name} was asked for but CUDA is not available here; use device=cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    return world, device_name


def shutdown_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch_divides(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise ConfigError(f"batch_size={batch_size} (the global batch) must be divisible by the "
                          f"{world.size} processes of this run")


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward is an all-reduce of the gradients: the statistics of a
    synced BatchNorm depend on every rank's activations, so every rank's gradient flows back."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span the global batch of all ranks, on any backend.

    torch's own ``SyncBatchNorm`` runs on GPUs only; this one needs two small all-reduces (sums, then
    centred sums of squares, in float32) per layer and works with gloo on CPU too, which is what lets the
    test suite check that N processes compute what one process does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        c = x.shape[1]
        # Two passes (mean, then centred squares) rather than E[x²] − E[x]²: the one-pass formula
        # loses float32 digits to cancellation, enough to move gradients by 1e-4.
        local = torch.cat([xf.sum(dim=(0, 2, 3)), xf.new_tensor([x.numel() / c])])
        total = _SumOverRanks.apply(local)
        count = total[-1]
        mean = total[:c] / count
        centred = xf - mean.view(1, c, 1, 1)
        var = _SumOverRanks.apply((centred * centred).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = float(count)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, c, 1, 1)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every BatchNorm2d of ``module`` into a ``SyncBatchNorm2d`` (same parameters and buffers)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            synced.to(device=child.running_mean.device if child.running_mean is not None else None)
            setattr(module, name, synced)
        else:
            sync_batchnorm(child)
    return module
