"""The genotypes a ranking scores, each with a name for the table: the ``genotype.json`` of every run
directory below a folder, a list of published names, files or ``Genotype(...)`` texts, and random
cells. All are read and checked before anything is written, so a bad one is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.data.loader import derive_seed
from nas.errors import ConfigError, GenotypeError
from nas.genotype import Genotype, load, parse_text
from nas.ops import OPS
from nas.rank.config import GenotypeSetConfig
from nas.spaces.darts_random import sample_genotype

_RANDOM_STREAM = 0x7A4  # the key of the random cells' seeds
Named = tuple[str, Genotype]


def from_folder(folder: str) -> list[Named]:
    """Every ``genotype.json`` below ``folder`` (e.g. ``runs/search``), named by its directory."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"genotypes.folder={folder} is not a directory")
    found = sorted(root.rglob("genotype.json"))
    if not found:
        raise ConfigError(f"genotypes.folder={folder} holds no genotype.json (searched every folder below it)")
    named = []
    for path in found:
        name = str(path.parent.relative_to(root)) if path.parent != root else root.name
        named.append((name, load(str(path), OPS)))
    return named


def from_names(names: Sequence[str]) -> list[Named]:
    """Published names (``DARTS_V2``), genotype files or run directories, and ``Genotype(...)`` texts."""
    named = []
    for i, spec in enumerate(names):
        if spec.lstrip().startswith("Genotype("):
            named.append((f"text{i}", parse_text(spec, OPS)))
        else:
            named.append((spec, load(spec, OPS)))
    return named


def random_cells(count: int, op_names: Sequence[str], nodes: int, k: int, max_skip: int | None,
                 seed: int) -> list[Named]:
    """``count`` random cells; cell i depends on (seed, i) only, so a longer list extends a shorter one."""
    return [(f"random{i}", sample_genotype(op_names, nodes, k, derive_seed(seed, _RANDOM_STREAM, i), max_skip))
            for i in range(count)]


def collect(cfg: GenotypeSetConfig, op_names: Sequence[str], nodes: int, seed: int) -> list[Named]:
    """Every genotype the config names, in order: the folder's, the list's, the random ones."""
    named: list[Named] = []
    if cfg.folder is not None:
        named += from_folder(cfg.folder)
    named += from_names(cfg.names)
    named += random_cells(cfg.random, op_names, nodes, cfg.k, cfg.max_skip, seed)
    if len(named) < 2:
        raise ConfigError(f"a ranking needs at least 2 genotypes, got {len(named)}")
    return named


def check_fit(named: Sequence[Named], space: Any, model: Any) -> None:
    """The supernet evaluator runs each genotype as a path of the supernet: its ops must be in the
    space and its cells must have ``model.nodes`` nodes, all concatenated."""
    for name, genotype in named:
        try:
            space.path_of(genotype, model)
        except GenotypeError as exc:
            raise GenotypeError(f"genotype {name} cannot be scored by the supernet evaluator: {exc}") from None
