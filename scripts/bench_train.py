"""Time one retrain step of the DARTS_V2 genotype in its scale-up network and print JSON, one object per run.

Protocol: the published DARTS_V2 cell in the evaluation networks of ``nas.spaces.darts_networks`` with the
defaults of ``configs/model/*.yaml`` (cifar: C=36, 20 cells, 10 classes, 32 px; imagenet: C=48, 14
cells, 1000 classes, 224 px; both with the auxiliary head). One timed step = what the retrain
loop's ``TrainRun.train_step`` does in a single process: forward in training mode with drop path
0.2 (the training run's final value), cross entropy (label smoothing 0.1 for imagenet) plus 0.4 ×
the auxiliary loss, backward, gradient clipping at 5 and an SGD step (lr 0.025, momentum 0.9,
weight decay 3e-4); ``--amp bf16`` autocasts the forward pass and the loss. Random batches are made
before timing, so data loading and augmentation are excluded. Each configuration runs in a fresh
process so that peak memory (max RSS on CPU, max allocated on CUDA) belongs to it alone.

    python scripts/bench_train.py --model cifar,imagenet --steps 5 --warmup 1
    python scripts/bench_train.py --model cifar --batch-size 32,96 --threads 2
    python scripts/bench_train.py --model imagenet --device cuda --amp bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import NoReturn

GENOTYPE = "DARTS_V2"
MODELS = {
    # name: (channels, layers, image size, default batch size, label smoothing), as in configs/model/*.yaml
    "cifar": (36, 20, 32, 96, 0.0),
    "imagenet": (48, 14, 224, 128, 0.1),
}

# Config keys in validation messages -> this script's flags.
FLAGS = {"data.image_size": "--image-size", "model.channels": "--channels", "model.layers": "--layers",
         "model.auxiliary=false": "--no-auxiliary", "batch_size": "--batch-size"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar,imagenet", help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--batch-size", default=None,
                   help="comma-separated batch sizes (default: " +
                        ", ".join(f"{m} {v[3]}" for m, v in MODELS.items()) + ")")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="bf16: torch.autocast around the step")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (experimental)")
    p.add_argument("--image-size", type=int, default=None, help="override the model's image size")
    p.add_argument("--channels", type=int, default=None, help="override the model's initial channels C")
    p.add_argument("--layers", type=int, default=None, help="override the model's number of cells")
    p.add_argument("--auxiliary", action=argparse.BooleanOptionalAction, default=True,
                   help="build the auxiliary head and add its loss (as in training)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


def train_config(args: argparse.Namespace, model: str, batch_size: int):
    """The ``TrainConfig`` a retrain of this configuration would have, validated like ``nas-train``'s."""
    from nas.train.config import TrainConfig, validate_train

    channels, layers, image_size, _, smoothing = MODELS[model]
    cfg = TrainConfig()
    cfg.profile_only = True  # nothing is read: no data root is needed
    cfg.data.name = "synthetic"
    cfg.data.image_size = args.image_size or image_size
    cfg.model.name = model
    cfg.model.channels = args.channels or channels
    cfg.model.layers = args.layers or layers
    cfg.model.auxiliary = args.auxiliary
    cfg.label_smoothing = smoothing
    cfg.genotype = GENOTYPE
    cfg.batch_size = batch_size
    cfg.device = args.device
    cfg.threads = args.threads
    cfg.channels_last = args.channels_last
    cfg.amp = args.amp
    cfg.compile = args.compile
    validate_train(cfg)
    return cfg


def run_one(args: argparse.Namespace, model_name: str, batch_size: int) -> dict:
    import torch
    from torch import nn

    from nas.benchmark import step_figures, time_steps
    from nas.engine import select_device
    from nas.genotype import PUBLISHED
    from nas.spaces.darts_networks import build_network, network_spec
    from nas.train.profile import count_parameters
    from nas.train.task import sgd_step

    cfg = train_config(args, model_name, batch_size)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    device = select_device(cfg.device)
    m = cfg.model
    num_classes = network_spec(m.name).default_classes
    model = build_network(m.name, PUBLISHED[GENOTYPE], m.channels, m.layers, num_classes, m.auxiliary).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    params, aux_params = count_parameters(model)
    o = cfg.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    net = torch.compile(model) if cfg.compile else model

    def train_step(i: int) -> None:
        """``nas-train``'s own step (single process), at the final drop-path probability."""
        sgd_step(net, model, optimizer, criterion, batches[i], cfg.drop_path_prob, cfg)

    n = args.warmup + args.steps
    size = cfg.data.image_size
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    batches = [(torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format),
                torch.randint(num_classes, (batch_size,), device=device)) for _ in range(n)]
    figures = step_figures(time_steps(train_step, args.steps, args.warmup, device), batch_size, device)
    return {
        "model": model_name, "genotype": GENOTYPE, "batch_size": batch_size, "image_size": size,
        "channels": m.channels, "layers": m.layers, "auxiliary": m.auxiliary, "num_classes": num_classes,
        "device": str(device), "amp": args.amp, "compile": args.compile, "channels_last": cfg.channels_last,
        "drop_path_prob": cfg.drop_path_prob, "aux_weight": cfg.aux_weight, "label_smoothing": cfg.label_smoothing,
        **figures, "params": params, "aux_params": aux_params,
        "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def fail(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    from nas.benchmark import with_flag

    args = parse_args(argv)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        fail(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}", 2)
    try:
        batches = [int(b) for b in args.batch_size.split(",")] if args.batch_size else None
    except ValueError:
        fail(f"--batch-size must be comma-separated integers, got '{args.batch_size}'", 2)
    if batches is not None and min(batches) < 1:
        fail(f"--batch-size must be positive, got '{args.batch_size}'", 2)

    import torch

    from nas.errors import ConfigError

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda was asked for but CUDA is not available here; use --device cpu", 2)
    runs = [(m, b) for m in models for b in (batches or [MODELS[m][3]])]
    try:  # every configuration is checked before the first one runs
        for model, batch in runs:
            train_config(args, model, batch)
    except ConfigError as exc:
        message = str(exc)
        for key, flag in FLAGS.items():
            message = message.replace(key, flag)
        fail(f"{model}: {message}", 2)
    if args.child:
        print(json.dumps(run_one(args, *runs[0])), flush=True)
        return
    base = list(argv if argv is not None else sys.argv[1:])
    for model, batch in runs:
        child = with_flag(with_flag(base, "--model", model), "--batch-size", str(batch))
        result = subprocess.run([sys.executable, __file__, *child, "--child"], capture_output=True, text=True)
        lines = result.stdout.strip().splitlines()
        if result.returncode or not lines:
            errors = [line for line in result.stderr.strip().splitlines() if line.strip()]
            reason = errors[-1].strip() if errors else f"exit status {result.returncode}"
            fail(f"bench_train: model={model} batch_size={batch} failed: {reason}", 1)
        print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
