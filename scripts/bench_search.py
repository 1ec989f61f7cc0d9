"""Time one DARTS/ASAP search step on the DARTS search network and print JSON, one object per run.

Protocol (the same as the reference figures in docs/performance.md): the search network with C=16,
8 cells, 10 classes, 32 px; one timed step = the algorithm's own step (arch step on a validation
batch + weight step with forward, backward, clip and SGD on a training batch; ASAP: weight step,
then arch step and pruning check); random batches are made before timing, so data loading is
excluded. Each configuration runs in a fresh process so that peak memory (max RSS on CPU, max
allocated on CUDA) belongs to it alone.

    python scripts/bench_search.py --algorithm darts_1st,darts_2nd --batch-size 16,64 --steps 5 --warmup 1
    python scripts/bench_search.py --algorithm asap --pruned-fraction 0,0.5,0.85 --batch-size 64
    python scripts/bench_search.py --partial-channels 1,4 --batch-size 64      # PC-DARTS memory
    python scripts/bench_search.py --algorithm darts_1st,darts_2nd --official-style   # side-by-side baseline
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> (registered algorithm, its config values); any other registered name runs with its defaults.
ALGORITHMS = {
    "darts_1st": ("darts", {"order": 1}),
    "darts_2nd": ("darts", {"order": 2}),
    "darts_2nd_exact": ("darts", {"order": 2, "hessian": "exact"}),
    # Below the grace temperature from the first step, with a threshold that never fires, so the
    # timed step always includes the arch step and the pruning check.
    "asap": ("asap", {"t0": 0.5, "threshold": 0.0}),
}


def algorithm_choice(name: str) -> tuple[str, dict]:
    from nas.search.algorithms import algorithm_spec

    registered, values = ALGORITHMS.get(name, (name, {}))
    algorithm_spec(registered)  # an unknown name fails here, with the registered ones listed
    return registered, values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", default="darts_1st",
                   help="comma-separated: " + ", ".join(ALGORITHMS) + " or any registered algorithm")
    p.add_argument("--batch-size", default="64", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet's forward (experimental)")
    p.add_argument("--pruned-fraction", default="0", help="asap: comma-separated fractions of ops pruned first")
    p.add_argument("--partial-channels", default="1",
                   help="comma-separated PC-DARTS K values (1/K of the channels through each mixed edge)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--recompute", action="store_true", help="recompute cell activations in backward (less memory)")
    p.add_argument("--official-style", action="store_true",
                   help="time a step built like the official DARTS code's (full backward, model copy) instead")
    p.add_argument("--profile", action="store_true",
                   help="also profile two steps: kernels launched, device busy time, host time per step")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prune_fraction(model, fraction: float, seed: int = 0) -> None:
    """Remove ``fraction`` of each edge's ops at random (never the last), as ASAP would mid-search."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for kind, mask in model.arch.alive().items():
        ops = mask.shape[1]
        drop = min(round(fraction * ops), ops - 1)
        for edge in range(mask.shape[0]):
            for op in torch.randperm(ops, generator=generator)[:drop].tolist():
                model.arch.prune(kind, edge, op)


def official_style_step(run, train_batch, val_batch) -> None:
    """A step built the way the official DARTS code builds it, on the same supernet and data, as a
    side-by-side baseline on whatever host runs the benchmark (the reference figures in the issue
    come from another host). Arch step: a full ``backward()`` (weight gradients included) for 1st
    order; for 2nd order a deep copy of the model as the unrolled model, a full backward through it,
    and two finite-difference passes that perturb the weights in place. Then our weight step.
    """
    import copy

    import torch
    from torch import nn

    model, a_opt, w_opt = run.model, run.a_optimizer, run.w_optimizer
    model.train()
    x_v, y_v = val_batch
    a_opt.zero_grad()
    if getattr(run.cfg.algorithm, "order", 1) == 1:
        nn.functional.cross_entropy(model(x_v), y_v).backward()
    else:
        x_t, y_t = train_batch
        lr = w_opt.param_groups[0]["lr"]
        weights = list(model.weights())
        loss = nn.functional.cross_entropy(model(x_t), y_t)
        grads = torch.autograd.grad(loss, weights)
        unrolled = copy.deepcopy(model)
        buffers = [w_opt.state.get(p, {}).get("momentum_buffer") for p in weights]
        with torch.no_grad():
            for (_, p), g, buf in zip(unrolled.named_weights(), grads, buffers):
                step = g + 3e-4 * p + (0.9 * buf if buf is not None else 0)
                p.sub_(lr * step)
        unrolled.zero_grad()
        nn.functional.cross_entropy(unrolled(x_v), y_v).backward()
        d_alpha = [a.grad.clone() for a in unrolled.alphas()]
        vector = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in unrolled.named_weights()]
        eps = 0.01 / torch.cat([v.flatten() for v in vector]).norm()
        hessian = []
        for shift in (1, -2):  # w + εv, then w − εv
            with torch.no_grad():
                for p, v in zip(weights, vector):
                    p.add_(shift * eps * v)
            loss = nn.functional.cross_entropy(model(x_t), y_t)
            hessian.append(torch.autograd.grad(loss, model.alphas()))
        with torch.no_grad():  # back to w
            for p, v in zip(weights, vector):
                p.add_(eps * v)
        del unrolled
        for a, da, gp, gm in zip(model.alphas(), d_alpha, *hessian):
            a.grad = da - lr * (gp - gm) / (2 * eps)
    a_opt.step()
    run.bilevel.weight_step(train_batch)


def profile_steps(step, device, steps: int = 2) -> dict:
    """Where a step's time goes: kernels launched and device busy time per step beside the wall time.
    A device busy for a small part of the wall time means the step waits on the host (Python,
    kernel launches, synchronisations); the top operators by host time go to stderr."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        sync()
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type != torch.autograd.DeviceType.CPU]
    busy_us = sum(e.time_range.elapsed_us() for e in kernels)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)
    aten = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    return {"profiled_step_s": round(wall / steps, 4), "kernels_per_step": len(kernels) // steps,
            "aten_calls_per_step": aten // steps,
            "device_busy_s_per_step": round(busy_us / 1e6 / steps, 4)}


def run_one(args: argparse.Namespace, algorithm: str, batch_size: int, fraction: float, partial: int = 1) -> dict:
    import torch

    from nas.benchmark import step_figures, time_steps
    from nas.distributed import World
    from nas.engine import Counters
    from nas.logging import TBLogger
    from nas.search.algorithms import algorithm_spec
    from nas.search.config import SearchConfig, validate_search
    from nas.search.task import SearchTask

    if args.threads:
        torch.set_num_threads(args.threads)
    registered, values = algorithm_choice(algorithm)
    cfg = SearchConfig(algorithm=algorithm_spec(registered).config(**values))
    cfg.data.name = "synthetic"
    cfg.batch_size = batch_size
    cfg.epochs = 50
    cfg.device = args.device
    cfg.channels_last = args.channels_last
    cfg.amp = args.amp
    cfg.model.channels, cfg.model.layers = args.channels, args.layers
    cfg.algorithm.partial_channels = partial
    cfg.recompute = args.recompute
    cfg.log.progress, cfg.log.images, cfg.log.every_steps = False, False, 10**9
    cfg.diagnostics.hessian_every = 0
    validate_search(cfg)
    if args.official_style:  # the official code's dilated convs: plain nn.Conv2d
        from torch import nn

        from nas.ops.primitives import DilatedDepthwiseConv2d

        DilatedDepthwiseConv2d.forward = nn.Conv2d.forward
    with tempfile.TemporaryDirectory() as run_dir:
        counters = Counters(epochs=cfg.epochs)
        run = SearchTask(cfg, World(), cfg.device, counters, TBLogger(run_dir, enabled=False), Path(run_dir))
        if fraction:
            prune_fraction(run.model, fraction)
        if args.compile:
            run.model.forward = torch.compile(run.model.forward)
        n = args.warmup + args.steps
        needed = n * batch_size
        if needed > run.data.train.num_images:
            raise SystemExit(f"--steps/--warmup need {needed} images per half; synthetic data has "
                             f"{run.data.train.num_images}")
        train = list(itertools.islice(run.data.train.batches(0), n))
        val = [next(run.val_stream) for _ in range(n)]

        def step(i: int) -> None:
            with run.autocast():
                if args.official_style:
                    official_style_step(run, train[i], val[i])
                else:
                    run.algorithm.step(train[i], val[i])
            counters.global_step += 1

        times = time_steps(step, args.steps, args.warmup, run.device)
        figures = step_figures(times, batch_size, run.device)
        if args.profile:
            figures.update(profile_steps(step, run.device))
        ops_alive = run.model.arch.ops_alive()
    return {
        "algorithm": algorithm, "batch_size": batch_size, "device": args.device, **figures,
        "pruned_fraction": fraction, "partial_channels": partial, "recompute": args.recompute,
        "ops_alive": ops_alive["normal"] + ops_alive["reduce"], "channels_last": args.channels_last,
        "amp": args.amp, "compile": args.compile, "official_style": args.official_style, "steps": args.steps, "warmup": args.warmup,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    from nas.benchmark import with_flag

    args = parse_args(argv)
    algorithms = args.algorithm.split(",")
    for name in algorithms:
        algorithm_choice(name)
    batches = [int(b) for b in args.batch_size.split(",")]
    fractions = [float(f) for f in args.pruned_fraction.split(",")]
    partials = [int(k) for k in args.partial_channels.split(",")]
    if args.child:
        print(json.dumps(run_one(args, algorithms[0], batches[0], fractions[0], partials[0])), flush=True)
        return
    for algorithm, batch, fraction, partial in itertools.product(algorithms, batches, fractions, partials):
        if fraction and algorithm != "asap":
            continue
        child = [a for a in (argv if argv is not None else sys.argv[1:])]
        child = with_flag(child, "--algorithm", algorithm)
        child = with_flag(child, "--batch-size", str(batch))
        child = with_flag(child, "--pruned-fraction", str(fraction))
        child = with_flag(child, "--partial-channels", str(partial))
        result = subprocess.run([sys.executable, __file__, *child, "--child"], capture_output=True, text=True)
        if result.returncode:
            print(json.dumps({"algorithm": algorithm, "batch_size": batch, "error": result.stderr.strip()[-500:]}))
        else:
            print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
