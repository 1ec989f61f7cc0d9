"""Convert the NAS-Bench-201 authors' own release (their ``nats_bench`` API, topology search space) into
the toolkit's table format: one row per cell, ``arch,val_acc,test_acc`` (accuracies in %).

    pip install nats_bench
    python scripts/nb201_table.py --benchmark $TORCH_HOME/NATS-tss-v1_0-3ffb9-simple --dataset cifar100 \\
        --out nb201_cifar100.csv.gz
    nas-search space=nb201 space.table=nb201_cifar100.csv.gz space.table_dataset=cifar100 ...

What each column holds, per dataset (the benchmark's 200-epoch results, seed-averaged by the API):
- cifar10: ``val_acc`` = accuracy on the held-out half after training on the other half
  (``cifar10-valid``), ``test_acc`` = test accuracy after training on the whole training set;
- cifar100, ImageNet16-120: ``val_acc`` = the benchmark's validation split (``x-valid``),
  ``test_acc`` = its test split (``x-test``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def accuracies(api, index: int, dataset: str) -> tuple[float, float]:  # noqa: ANN001 (nats_bench's API object)
    if dataset == "cifar10":
        val = api.get_more_info(index, "cifar10-valid", hp="200", is_random=False)["valid-accuracy"]
        test = api.get_more_info(index, "cifar10", hp="200", is_random=False)["test-accuracy"]
    else:
        info = api.get_more_info(index, dataset, hp="200", is_random=False)
        val, test = info["valid-accuracy"], info["test-accuracy"]
    return float(val), float(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True, help="the nats_bench topology file or folder (NATS-tss-...)")
    parser.add_argument("--dataset", choices=DATASETS, default="cifar10")
    parser.add_argument("--out", required=True, help="the CSV to write (.gz: gzipped)")
    args = parser.parse_args()
    try:
        from nats_bench import create
    except ImportError:
        sys.exit("error: this converter needs the benchmark authors' API: pip install nats_bench")
    try:
        api = create(args.benchmark, "tss", fast_mode=True, verbose=False)
    except Exception as exc:  # the API raises several types for a missing or wrong file
        sys.exit(f"error: cannot open the benchmark {args.benchmark}: {str(exc).splitlines()[0]}")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["arch", "val_acc", "test_acc"])
    for index in range(len(api)):
        val, test = accuracies(api, index, args.dataset)
        writer.writerow([api.arch(index), f"{val:.4f}", f"{test:.4f}"])
    data = buffer.getvalue().encode()
    with open(args.out, "wb") as handle:
        handle.write(gzip.compress(data) if args.out.endswith(".gz") else data)
    print(f"{len(api)} cells written to {args.out}")


if __name__ == "__main__":
    main()
