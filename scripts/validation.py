"""The validation suite: what each search method finds, against known answers and against random.

    python scripts/validation.py planted --out runs/validation/planted
    python scripts/validation.py cifar --archive ../shared/data/cifar10-jpg.tar.gz --out runs/validation/cifar

``planted``: every algorithm searches the planted-cell task (nas/validation/planted.py) over the
seeds; per algorithm the fraction of the teacher's (op, input) choices recovered, mean ± std,
beside what a uniformly random cell recovers on average. ``--check N`` first retrains the planted
cell and N random cells at equal budget: the construction is only meaningful if the planted cell
wins.

``cifar``: a class-balanced CIFAR-10 subset at reduced resolution (from the JPEG release); each
algorithm searches it per seed, then the derived cell and a random cell (same seed) are retrained
at equal budget and scored on the CIFAR-10 test images: test top-1 mean ± std per algorithm.

Every search and retrain is the user's command (``python -m nas.search`` / ``nas.train``) in a
fresh process with its own run directory under ``--out``; the table is printed as JSON and written
to ``--out/table.json``. Sizes are flags, so the suite runs in seconds in the tests and in an hour
on 2 CPU cores for the documented tables (docs/validation.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ALGORITHMS = "darts_1st,darts_2nd,asap,gdas,drnas,fairdarts,random"


def run(module: str, overrides: list[str]) -> None:
    """One command as a user runs it; its last stderr line on failure."""
    result = subprocess.run([sys.executable, "-m", module, *overrides], capture_output=True, text=True)
    if result.returncode:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise SystemExit(f"error: {module} {' '.join(overrides)} failed: {lines[-1] if lines else result.returncode}")


def search(out: Path, algorithm: str, seed: int, data: list[str], size: list[str]) -> Path:
    run_dir = out / "search" / f"{algorithm}_seed{seed}"
    if not (run_dir / "summary.json").is_file():  # a rerun of the suite reuses finished runs
        run("nas.search", [*data, *size, f"algorithm={algorithm}", f"seed={seed}", "log.progress=false",
                           "log.images=false", "diagnostics.hessian_every=0", "overwrite=true",
                           f"hydra.run.dir={run_dir}"])
    return run_dir


def retrain(out: Path, name: str, genotype: str, seed: int, data: list[str], size: list[str]) -> float:
    run_dir = out / "train" / f"{name}_seed{seed}"
    if not (run_dir / "summary.json").is_file():
        run("nas.train", [*data, *size, f"genotype={genotype}", f"seed={seed}", "log.progress=false",
                          "log.images=false", "overwrite=true", f"hydra.run.dir={run_dir}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    return float(summary["top1"])


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "n": len(values)}


def search_size(args: argparse.Namespace) -> list[str]:
    return [f"epochs={args.search_epochs}", f"data.limit={args.search_images}", f"data.image_size={args.image_size}",
            f"batch_size={args.batch_size}", f"model.channels={args.channels}", f"model.layers={args.layers}",
            "optim.alpha_lr=0.1", *args.search_override]


def train_size(args: argparse.Namespace) -> list[str]:
    return [f"epochs={args.train_epochs}", f"data.image_size={args.image_size}", f"data.limit={args.train_images}",
            f"batch_size={args.batch_size}", "optim.lr=0.05", f"model.channels={args.train_channels}",
            f"model.layers={args.train_layers}", "model.auxiliary=false", "drop_path_prob=0",
            f"augment.cutout={args.image_size // 4}", *args.train_override]


def planted(args: argparse.Namespace) -> dict:
    from nas.genotype import load
    from nas.ops import resolve_space
    from nas.validation.planted import PLANTED, make_planted_data
    from nas.validation.recovery import chance_recovery, recovery

    out = Path(args.out)
    data_dir = out / "data"
    counts = make_planted_data(data_dir, image_size=args.image_size, channels=args.channels, layers=args.layers,
                               classes=args.classes, limit=args.limit)
    data = ["data=npz", f"data.root={data_dir}"]
    table: dict = {"task": "planted", "images": counts, "planted": PLANTED.to_text(),
                   "chance": round(chance_recovery(PLANTED, resolve_space("darts", None)), 4), "algorithms": {}}
    if args.check:
        from nas.genotype import save_json
        from nas.search.random_genotype import sample_genotype

        size = train_size(args)
        save_json(out / "planted.json", PLANTED, {"task": "planted"})
        planted_acc, random_acc = [], []
        for seed in args.seeds:
            planted_acc.append(retrain(out, "planted", str(out / "planted.json"), seed, data, size))
        for i in range(args.check):
            path = out / "random_cells" / f"{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_json(path, sample_genotype(resolve_space("darts", None), 4, 2, seed=1000 + i), {})
            random_acc.append(retrain(out, f"random{i}", str(path), 0, data, size))
        table["construction_check"] = {"planted_top1": mean_std(planted_acc), "random_top1": mean_std(random_acc)}
    for algorithm in args.algorithms:
        scores, seconds = [], []
        for seed in args.seeds:
            run_dir = search(out, algorithm, seed, data, search_size(args))
            scores.append(recovery(load(str(run_dir)), PLANTED))
            seconds.append(json.loads((run_dir / "summary.json").read_text())["wall_time_s"])
        table["algorithms"][algorithm] = {"recovery": mean_std(scores), "search_s": round(statistics.fmean(seconds), 1)}
    return table


def cifar_subset(args: argparse.Namespace, out: Path) -> Path:
    """train.npz / test.npz of a class-balanced CIFAR-10 subset at ``--image-size``."""
    from nas.data.datasets import ImageTensors, load_images, save_npz
    from nas.data.loader import balanced_subset

    data_dir = out / "data"
    if (data_dir / "test.npz").is_file():
        return data_dir
    root = Path(args.root) if args.root else out / "jpg"
    if not args.root:
        with tarfile.open(args.archive) as tar:
            tar.extractall(root, filter="data")
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", args.per_class), ("test", args.test_per_class)):
        full = load_images("imagefolder", str(root / split), "train", image_size=args.image_size)
        keep = balanced_subset(full.labels, per_class * len(full.classes), seed=0)
        save_npz(data_dir / f"{split}.npz", ImageTensors(full.images[keep], full.labels[keep], full.classes,
                                                          full.mean, full.std))
    return data_dir


def cifar(args: argparse.Namespace) -> dict:
    from nas.genotype import save_json
    from nas.ops import resolve_space
    from nas.search.random_genotype import sample_genotype

    out = Path(args.out)
    data = ["data=npz", f"data.root={cifar_subset(args, out)}"]
    size = train_size(args)
    table: dict = {"task": "cifar10", "per_class": args.per_class, "image_size": args.image_size, "algorithms": {}}
    random_acc = []
    for seed in args.seeds:
        path = out / "random_cells" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, sample_genotype(resolve_space("darts", None), 4, 2, seed=seed), {})
        random_acc.append(retrain(out, "random", str(path), seed, data, size))
    table["random_top1"] = mean_std(random_acc)
    for algorithm in args.algorithms:
        if algorithm == "random":
            continue
        accs = []
        for seed in args.seeds:
            run_dir = search(out, algorithm, seed, data, search_size(args))
            accs.append(retrain(out, algorithm, str(run_dir), seed, data, size))
        table["algorithms"][algorithm] = {"test_top1": mean_std(accs)}
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["planted", "cifar"])
    p.add_argument("--out", required=True, help="a folder for the data, every run and table.json")
    p.add_argument("--algorithms", default=ALGORITHMS, type=lambda s: s.split(","))
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--search-epochs", type=int, default=3)
    p.add_argument("--search-images", type=int, default=640, help="images of the search (half for the alphas)")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--train-channels", type=int, default=8)
    p.add_argument("--train-layers", type=int, default=5)
    p.add_argument("--search-override", action="append", default=[], help="an extra nas-search override")
    p.add_argument("--train-override", action="append", default=[], help="an extra nas-train override")
    p.add_argument("--classes", type=int, default=4, help="planted: the teacher's classes")
    p.add_argument("--limit", type=int, default=None, help="planted: images of each split of the sample to label")
    p.add_argument("--check", type=int, default=3, help="planted: random cells retrained against the planted one")
    p.add_argument("--archive", default="../shared/data/cifar10-jpg.tar.gz", help="cifar: the JPEG release")
    p.add_argument("--root", default=None, help="cifar: an extracted release (train/ and test/) instead")
    p.add_argument("--per-class", type=int, default=200, help="cifar: training images per class")
    p.add_argument("--test-per-class", type=int, default=100, help="cifar: test images per class")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.time()
    table = planted(args) if args.task == "planted" else cifar(args)
    table["wall_time_s"] = round(time.time() - start, 1)
    Path(args.out, "table.json").write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
