"""The validation suite: what each search method finds, against known answers and against random.

    python scripts/validation.py planted --out runs/validation/planted
    python scripts/validation.py s4 --out runs/validation/s4
    python scripts/validation.py cifar --archive ../shared/data/cifar10-jpg.tar.gz --out runs/validation/cifar

``planted``: every algorithm searches the planted-cell task (nas/validation/planted.py) over the
seeds; per algorithm the fraction of the teacher's (op, input) choices recovered, mean ± std,
beside what a uniformly random cell recovers on average. ``--check N`` first retrains the planted
cell and N random cells at equal budget: the construction is only meaningful if the planted cell
wins.

``s4``: a known answer for the ops. In R-DARTS' stress space S4 every edge chooses between
``sep_conv_3x3`` and ``noise`` (Gaussian noise in training, zeros in evaluation: no signal), so the
right op is known by construction on every edge; each algorithm searches the shipped CIFAR-10 sample
in that space and scores the fraction of its edges holding ``sep_conv_3x3`` (a random cell: 0.5).
``--check N`` retrains the all-``sep_conv_3x3`` cell against N random S4 cells.

``nb201``: NAS-Bench-201's table of 15,625 known answers (``--table``). Tabular: random search,
evolution, REINFORCE and TPE query the table (``--tabular-seeds`` seeds, ``--budgets`` queries);
the test accuracy of their best-by-val cell beside the optimum, the mean cell and random search's
closed-form expectation. One-shot: every one-shot algorithm searches a CIFAR-10 subset (the
``cifar`` data below) in the NB201 space; its derived cell's table test accuracy and rank, its
parameter-free edges, beside random cells.

``cifar``: a class-balanced CIFAR-10 subset at reduced resolution (from the JPEG release); each
algorithm searches it per seed, then the derived cell and a random cell (same seed) are retrained
at equal budget and scored on the CIFAR-10 test images: test top-1 mean ± std per algorithm.

The discrete searches (evolution, reinforce, random_search, tpe) also report the recovery of their best
cell after 1, 2, 5, 10, ... evaluations (planted and s4): what each evaluation buys.

Every search and retrain is the user's command (``python -m nas.search`` / ``nas.train``) in a
fresh process with its own run directory under ``--out``; ``--jobs N`` runs N of them at a time
(each with its share of the CPU threads). The table is printed as JSON and written to
``--out/table.json``. Sizes are flags, so the suite runs in seconds in the tests and in an hour on
2 CPU cores for the documented tables (docs/validation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CURVE_AT = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def is_discrete(algorithm: str) -> bool:
    """Whether ``algorithm`` is a discrete search (scored candidates, a budget of evaluations)."""
    from nas.search.algorithms import discover
    from nas.search.algorithms.discrete import DiscreteSearch

    spec = discover().get(algorithm)
    return spec is not None and issubclass(spec.cls, DiscreteSearch)


def all_algorithms() -> list[str]:
    """Every search algorithm a user can name (``algorithm=<name>``: one config file each, so darts_1st and
    darts_2nd are two): a method added later is validated without editing this file."""
    from nas.cli import config_dir

    return sorted(p.stem for p in (Path(config_dir("search")) / "algorithm").glob("*.yaml"))


class Runner:
    """Runs the users' commands, ``jobs`` at a time, each in its own process and run directory."""

    def __init__(self, jobs: int, device: str | None):
        self.jobs = jobs
        self.device = device
        self.threads = max(1, (os.cpu_count() or 1) // jobs)

    def command(self, module: str, overrides: list[str]) -> None:
        """One command as a user runs it; its last stderr line on failure."""
        extra = [f"device={self.device}"] if self.device else []
        if self.jobs > 1:
            extra.append(f"threads={self.threads}")
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)} if self.jobs > 1 else None
        result = subprocess.run([sys.executable, "-m", module, *overrides, *extra], capture_output=True, text=True,
                                env=env)
        if result.returncode:
            lines = [line for line in result.stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
            raise SystemExit(f"error: {module} {' '.join(overrides)} failed: {lines[-1] if lines else result.returncode}")

    def map(self, tasks: Sequence[Callable[[], object]]) -> list:
        """Run ``tasks`` (each one command) ``jobs`` at a time; results in order."""
        if self.jobs == 1:
            return [task() for task in tasks]
        with ThreadPoolExecutor(self.jobs) as pool:
            return list(pool.map(lambda task: task(), tasks))

    def search(self, out: Path, algorithm: str, seed: int, overrides: list[str]) -> Path:
        run_dir = out / "search" / f"{algorithm}_seed{seed}"
        if not (run_dir / "summary.json").is_file():  # a rerun of the suite reuses finished runs
            self.command("nas.search", [*overrides, f"algorithm={algorithm}", f"seed={seed}", "log.progress=false",
                                        "log.images=false", "diagnostics.hessian_every=0", "overwrite=true",
                                        f"hydra.run.dir={run_dir}"])
        return run_dir

    def retrain(self, out: Path, name: str, genotype: str, seed: int, overrides: list[str]) -> float:
        run_dir = out / "train" / f"{name}_seed{seed}"
        if not (run_dir / "summary.json").is_file():
            self.command("nas.train", [*overrides, f"genotype={genotype}", f"seed={seed}", "log.progress=false",
                                       "log.images=false", "overwrite=true", f"hydra.run.dir={run_dir}"])
        return float(json.loads((run_dir / "summary.json").read_text())["top1"])


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "n": len(values)}


def search_size(args: argparse.Namespace, algorithm: str) -> list[str]:
    size = [f"epochs={args.search_epochs}", f"data.limit={args.search_images}", f"data.image_size={args.image_size}",
            f"batch_size={args.batch_size}", f"model.channels={args.channels}", f"model.layers={args.layers}",
            "optim.alpha_lr=0.1"]
    if is_discrete(algorithm):  # weight sharing: one supernet for as many epochs as a one-shot search
        size += [f"algorithm.budget.evaluations={args.evaluations}", f"algorithm.supernet.epochs={args.search_epochs}",
                 *args.discrete_override]
    return size + args.search_override


def train_size(args: argparse.Namespace) -> list[str]:
    return [f"epochs={args.train_epochs}", f"data.image_size={args.image_size}", f"data.limit={args.train_images}",
            f"batch_size={args.batch_size}", "optim.lr=0.05", f"model.channels={args.train_channels}",
            f"model.layers={args.train_layers}", "model.auxiliary=false", "drop_path_prob=0",
            f"augment.cutout={args.image_size // 4}", *args.train_override]


def searches(runner: Runner, args: argparse.Namespace, out: Path, data: list[str]) -> dict[tuple[str, int], Path]:
    """Every (algorithm, seed) search of the table, ``--jobs`` at a time."""
    keys = [(a, s) for a in args.algorithms for s in args.seeds]
    dirs = runner.map([lambda a=a, s=s: runner.search(out, a, s, [*data, *search_size(args, a)]) for a, s in keys])
    return dict(zip(keys, dirs))


def known_answer_table(runner: Runner, args: argparse.Namespace, out: Path, data: list[str],
                       score: Callable, table: dict) -> dict:
    """Per algorithm: recovery mean ± std over the seeds, search time, and for the discrete searches the
    recovery of the best cell after each number of evaluations."""
    from nas.genotype import load
    from nas.validation.recovery import recovery_curve

    runs = searches(runner, args, out, data)
    for algorithm in args.algorithms:
        summaries = [json.loads((runs[algorithm, s] / "summary.json").read_text()) for s in args.seeds]
        scores = [score(load(str(runs[algorithm, s]))) for s in args.seeds]
        row = {"recovery": mean_std(scores), "search_s": round(statistics.fmean(x["wall_time_s"] for x in summaries), 1)}
        if is_discrete(algorithm):
            curves = [recovery_curve(x["evaluations"], score, CURVE_AT) for x in summaries]
            counts = sorted(set.intersection(*(set(c) for c in curves)))
            row["recovery_by_evaluations"] = {str(n): mean_std([c[n] for c in curves]) for n in counts}
        table["algorithms"][algorithm] = row
    return table


def construction_check(runner: Runner, args: argparse.Namespace, out: Path, data: list[str], known: str,
                       random_cells: Sequence[str]) -> dict:
    """The known cell (one retrain per seed) against random cells (one each) at equal budget."""
    size = train_size(args)
    tasks = [lambda s=s: runner.retrain(out, "known", known, s, [*data, *size]) for s in args.seeds]
    tasks += [lambda i=i, p=p: runner.retrain(out, f"random{i}", p, 0, [*data, *size]) for i, p in enumerate(random_cells)]
    accs = runner.map(tasks)
    known_acc, random_acc = accs[:len(args.seeds)], accs[len(args.seeds):]
    return {"known_top1": mean_std(known_acc), "random_top1": mean_std(random_acc),
            "passed": statistics.fmean(known_acc) > max(random_acc)}


def random_cell_files(out: Path, space: Sequence[str], count: int, first_seed: int) -> list[str]:
    from nas.genotype import save_json
    from nas.spaces.darts_random import sample_genotype

    paths = []
    for i in range(count):
        path = out / "random_cells" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, sample_genotype(space, 4, 2, seed=first_seed + i), {})
        paths.append(str(path))
    return paths


def planted(runner: Runner, args: argparse.Namespace) -> dict:
    from nas.genotype import save_json
    from nas.ops import resolve_space
    from nas.validation.planted import PLANTED, make_planted_data
    from nas.validation.recovery import chance_recovery, recovery

    out = Path(args.out)
    space = resolve_space("darts", None)
    counts = make_planted_data(out / "data", image_size=args.image_size, channels=args.channels, layers=args.layers,
                               classes=args.classes, limit=args.limit)
    data = ["data=npz", f"data.root={out / 'data'}"]
    table: dict = {"task": "planted", "images": counts, "planted": PLANTED.to_text(),
                   "chance": round(chance_recovery(PLANTED, space), 4), "algorithms": {}}
    if args.check:
        save_json(out / "planted.json", PLANTED, {"task": "planted"})
        table["construction_check"] = construction_check(runner, args, out, data, str(out / "planted.json"),
                                                         random_cell_files(out, space, args.check, 1000))
    return known_answer_table(runner, args, out, data, lambda g: recovery(g, PLANTED), table)


def s4(runner: Runner, args: argparse.Namespace) -> dict:
    from nas.genotype import Genotype, save_json
    from nas.ops import resolve_space
    from nas.spaces.darts_random import sample_genotype
    from nas.validation.recovery import chance_op_recovery, op_recovery

    out = Path(args.out)
    space, right = resolve_space("s4", None), ("sep_conv_3x3",)
    data = ["data=sample", "space=s4"]
    table: dict = {"task": "s4", "right_ops": list(right), "chance": round(chance_op_recovery(right, space), 4),
                   "algorithms": {}}
    if args.check:
        wiring = sample_genotype(space, 4, 2, seed=999)  # the inputs do not matter here, only the ops
        known = Genotype([(right[0], i) for _, i in wiring.normal], wiring.normal_concat,
                         [(right[0], i) for _, i in wiring.reduce], wiring.reduce_concat)
        save_json(out / "known.json", known, {"task": "s4"})
        table["construction_check"] = construction_check(runner, args, out, ["data=sample"], str(out / "known.json"),
                                                         random_cell_files(out, space, args.check, 1000))
    return known_answer_table(runner, args, out, data, lambda g: op_recovery(g, right), table)


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


def cifar(runner: Runner, args: argparse.Namespace) -> dict:
    from nas.genotype import save_json
    from nas.ops import resolve_space
    from nas.spaces.darts_random import sample_genotype

    out = Path(args.out)
    data = ["data=npz", f"data.root={cifar_subset(args, out)}"]
    size = train_size(args)
    table: dict = {"task": "cifar10", "per_class": args.per_class, "image_size": args.image_size, "algorithms": {}}
    args.algorithms = [a for a in args.algorithms if a != "random"]  # random is the column beside every algorithm
    runs = searches(runner, args, out, data)
    tasks = []
    for seed in args.seeds:
        path = out / "random_cells" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, sample_genotype(resolve_space("darts", None), 4, 2, seed=seed), {})
        tasks.append(lambda s=seed, p=path: runner.retrain(out, "random", str(p), s, [*data, *size]))
    keys = [(a, s) for a in args.algorithms for s in args.seeds]
    tasks += [lambda a=a, s=s: runner.retrain(out, a, str(runs[a, s]), s, [*data, *size]) for a, s in keys]
    accs = runner.map(tasks)
    table["random_top1"] = mean_std(accs[:len(args.seeds)])
    for i, algorithm in enumerate(args.algorithms):
        got = accs[len(args.seeds) * (i + 1):len(args.seeds) * (i + 2)]
        seconds = [json.loads((runs[algorithm, s] / "summary.json").read_text())["wall_time_s"] for s in args.seeds]
        table["algorithms"][algorithm] = {"test_top1": mean_std(got), "search_s": round(statistics.fmean(seconds), 1)}
    return table


def nb201(runner: Runner, args: argparse.Namespace) -> dict:
    """NAS-Bench-201: the tabular table (discrete strategies on the table, many seeds) and the one-shot
    table (every one-shot algorithm searches real CIFAR-10 images; its cell is scored by the table)."""
    from nas.spaces.table import load_table
    from nas.validation.nb201 import STRATEGIES, random_cells, tabular_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_table(args.table)
    table: dict = {"task": "nb201", "tabular": tabular_table(args.table, STRATEGIES, range(args.tabular_seeds),
                                                             args.budgets, args.jobs)}
    if args.skip_one_shot:
        return table
    one_shot = [a for a in args.algorithms if not is_discrete(a) and a != "random"]
    data = ["data=npz", f"data.root={cifar_subset(args, out)}", "space=nb201", f"space.table={args.table}"]
    size = [f"epochs={args.search_epochs}", f"data.limit={args.search_images}", f"data.image_size={args.image_size}",
            f"batch_size={args.batch_size}", f"model.channels={args.channels}", f"model.layers={args.nb201_cells}",
            "optim.alpha_lr=0.1", *args.search_override]
    keys = [(a, s) for a in one_shot for s in args.seeds]
    dirs = runner.map([lambda a=a, s=s: runner.search(out, a, s, [*data, *size]) for a, s in keys])
    rows: dict = {}
    for (algorithm, _seed), run_dir in zip(keys, dirs):
        summary = json.loads((run_dir / "summary.json").read_text())
        known, last = summary["benchmark"], summary["diagnostics"][-1]
        row = rows.setdefault(algorithm, {"test_acc": [], "rank": [], "param_free_edges": [], "cells": [],
                                          "search_s": []})
        row["test_acc"].append(known["test_acc"])
        row["rank"].append(known["rank"])
        row["param_free_edges"].append(last.get("collapse/param_free/cell"))
        row["cells"].append(summary["genotype_text"])
        row["search_s"].append(summary["wall_time_s"])
    randoms = [bench.lookup(cell) for cell in random_cells(args.seeds, args.table)]
    table["one_shot"] = {
        "protocol": f"{args.search_images} CIFAR-10 training images (half weights, half alphas), "
                    f"{args.image_size} px, C={args.channels}, {args.nb201_cells} cell(s) per stage, "
                    f"{args.search_epochs} epochs, batch {args.batch_size}",
        "optimum_test_acc": round(bench.optimum, 3),
        "random_cells": {"test_acc": mean_std([e.test_acc for e in randoms]), "rank": mean_std([e.rank for e in randoms])},
        "algorithms": {a: {"test_acc": mean_std(r["test_acc"]), "rank": mean_std(r["rank"]),
                           "param_free_edges": mean_std(r["param_free_edges"]), "cells": r["cells"],
                           "search_s": round(statistics.fmean(r["search_s"]), 1)} for a, r in rows.items()},
    }
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["planted", "s4", "cifar", "nb201"])
    p.add_argument("--out", required=True, help="a folder for the data, every run and table.json")
    p.add_argument("--algorithms", default=None, type=lambda s: s.split(","), help="default: every registered one")
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--jobs", type=int, default=1, help="commands run at a time (the CPU threads are shared)")
    p.add_argument("--device", default=None, help="device= of every command (default: the commands' own)")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--search-epochs", type=int, default=3)
    p.add_argument("--search-images", type=int, default=640, help="images of the search (half for the alphas)")
    p.add_argument("--evaluations", type=int, default=50, help="discrete searches: candidates scored")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--train-channels", type=int, default=8)
    p.add_argument("--train-layers", type=int, default=5)
    p.add_argument("--search-override", action="append", default=[], help="an extra nas-search override")
    p.add_argument("--discrete-override", action="append", default=[],
                   help="an extra nas-search override of the discrete searches only (e.g. algorithm.evaluator=zero_cost)")
    p.add_argument("--train-override", action="append", default=[], help="an extra nas-train override")
    p.add_argument("--classes", type=int, default=4, help="planted: the teacher's classes")
    p.add_argument("--limit", type=int, default=None, help="planted: images of each split of the sample to label")
    p.add_argument("--check", type=int, default=3, help="planted, s4: random cells retrained against the known one")
    p.add_argument("--archive", default="../shared/data/cifar10-jpg.tar.gz", help="cifar: the JPEG release")
    p.add_argument("--root", default=None, help="cifar: an extracted release (train/ and test/) instead")
    p.add_argument("--per-class", type=int, default=200, help="cifar: training images per class")
    p.add_argument("--test-per-class", type=int, default=100, help="cifar: test images per class")
    p.add_argument("--table", default="cifar10", help="nb201: the table of known answers (a file or a shipped name)")
    p.add_argument("--tabular-seeds", type=int, default=100, help="nb201: seeds of each tabular strategy")
    p.add_argument("--budgets", default="10,30,100,300", type=lambda s: [int(v) for v in s.split(",")],
                   help="nb201: query budgets of the tabular table")
    p.add_argument("--nb201-cells", type=int, default=1, help="nb201: cells per stage of the one-shot supernet")
    p.add_argument("--skip-one-shot", action="store_true", help="nb201: only the tabular table")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    args.algorithms = args.algorithms or all_algorithms()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.time()
    runner = Runner(args.jobs, args.device)
    table = {"planted": planted, "s4": s4, "cifar": cifar, "nb201": nb201}[args.task](runner, args)
    table["wall_time_s"] = round(time.time() - start, 1)
    table["jobs"] = args.jobs
    Path(args.out, "table.json").write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
