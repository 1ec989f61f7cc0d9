"""A tabular benchmark: the known answer of every cell of a space, read from a CSV.

The format is one row per cell, ``arch,val_acc,test_acc`` (accuracies in %): ``arch`` the space's
native genotype text, ``val_acc`` the accuracy on the benchmark's validation split — the only
figure a search may select on — and ``test_acc`` the accuracy to report, never to select on.
NAS-Bench-201 publishes such tables for CIFAR-10, CIFAR-100 and ImageNet16-120; the file and its
dataset are configuration, never assumed. The CIFAR-10 table ships with the package
(``space.table=cifar10``; see nas/spaces/tables/README.md for where it comes from).

Besides lookups, a table knows the figures every search is compared with: the optimum (the
test accuracy of the cell with the best validation accuracy), the mean cell, and the exact
expectation of random search — the best-by-val cell of n uniform draws — computed in closed form
(``expected_random_search``), which the validation suite checks its harness against.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from nas.errors import DataError

SHIPPED = {"cifar10": "nb201_cifar10.csv.gz"}  # name -> file in nas/spaces/tables/
COLUMNS = ("arch", "val_acc", "test_acc")


@dataclass(frozen=True)
class Entry:
    val_acc: float
    test_acc: float
    rank: int  # by test accuracy, 1 = best of the table
    val_rank: int  # by validation accuracy


class BenchmarkTable:
    """Every cell's (val_acc, test_acc), keyed by its native text."""

    def __init__(self, archs: list[str], val: np.ndarray, test: np.ndarray, source: str):
        self.archs, self.val, self.test, self.source = archs, val, test, source
        self.index = {a: i for i, a in enumerate(archs)}
        # rank r: r - 1 cells are strictly better
        self.ranks = _ranks(test)
        self.val_ranks = _ranks(val)

    def __len__(self) -> int:
        return len(self.archs)

    def lookup(self, arch: str) -> Entry | None:
        i = self.index.get(arch)
        if i is None:
            return None
        return Entry(float(self.val[i]), float(self.test[i]), int(self.ranks[i]), int(self.val_ranks[i]))

    @property
    def optimum(self) -> float:
        """Test accuracy of the cell with the best validation accuracy (ties: the mean of their test accuracies)."""
        best = self.val == self.val.max()
        return float(self.test[best].mean())

    @property
    def best_test(self) -> float:
        return float(self.test.max())

    @property
    def mean_test(self) -> float:
        return float(self.test.mean())

    def expected_random_search(self, n: int) -> float:
        """E[test accuracy of the best-by-val cell among n uniform draws with replacement].

        Sort the distinct validation values v_1 < ... < v_m; the best draw has value v_j with
        probability F(v_j)^n − F(v_{j−1})^n (F the share of cells with val ≤ v), and among the cells
        tied at v_j each is equally likely, so its test accuracy is their mean.
        """
        if n < 1:
            raise ValueError(f"random search needs at least one draw, got {n}")
        values, inverse, counts = np.unique(self.val, return_inverse=True, return_counts=True)
        mean_test = np.bincount(inverse, weights=self.test) / counts
        cdf = np.cumsum(counts) / len(self.val)
        below = np.concatenate([[0.0], cdf[:-1]])
        probability = cdf**n - below**n
        return float((probability * mean_test).sum())


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.sort(values)[::-1]
    return np.searchsorted(-order, -values, side="left") + 1


def resolve_table(spec: str) -> str:
    """A shipped table's name → its path inside the package; anything else is a path."""
    if spec in SHIPPED:
        return str(resources.files("nas.spaces") / "tables" / SHIPPED[spec])
    return spec


@functools.lru_cache(maxsize=8)
def load_table(spec: str) -> BenchmarkTable:
    """Read a table (plain or gzipped CSV) once per process; a bad file is a one-line ``DataError``."""
    path = Path(resolve_table(spec)).expanduser()
    if not path.is_file():
        raise DataError(f"benchmark table {spec} not found (space.table: a file, or one of {', '.join(SHIPPED)})")
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read benchmark table {path}: {exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header[:3]) != COLUMNS:
        raise DataError(f"benchmark table {path} must start with the header {','.join(COLUMNS)}, got {header}")
    archs, val, test = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            arch, v, t = row[0].strip(), float(row[1]), float(row[2])
        except (IndexError, ValueError):
            raise DataError(f"benchmark table {path} line {line}: expected arch,val_acc,test_acc, got {row}") from None
        if not (math.isfinite(v) and math.isfinite(t) and 0 <= v <= 100 and 0 <= t <= 100):
            raise DataError(f"benchmark table {path} line {line}: accuracies must be percentages in [0, 100]")
        archs.append(arch)
        val.append(v)
        test.append(t)
    if not archs:
        raise DataError(f"benchmark table {path} holds no cells")
    if len(set(archs)) != len(archs):
        raise DataError(f"benchmark table {path} lists a cell twice")
    return BenchmarkTable(archs, np.array(val), np.array(test), str(path))
