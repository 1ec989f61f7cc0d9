"""The structured config of ``nas-search``: the schema behind ``configs/search/`` and its checks.

Hydra composes the YAML groups on top of these dataclasses, so a misspelt key or a value of the
wrong type fails during composition; each field's declared limits and the ``validate()`` methods
then check what types cannot express (``nas.config.check_limits``). The ``algorithm`` node is the
config dataclass of whichever registered algorithm ``algorithm=<name>`` selects: each algorithm
owns its keys (``nas/search/algorithms/``), none holds another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from nas.config import (
    RunConfig,
    SpaceConfig,
    check,
    check_limits,
    check_memory,
    from_saved_dict,
    option,
    summary_of,
    to_validated,
)
from nas.errors import ConfigError
from nas.ops import resolve_space
from nas.search.algorithms import algorithm_spec, register_algorithm_schemas


@dataclass
class SupernetConfig:
    channels: int = option(16, ge=2, le=512)
    layers: int = option(8, ge=1, le=64)  # darts: cells in the stack (>= 3); nb201: cells per stage (N)
    nodes: int = option(4, ge=1, le=12)  # intermediate nodes of a cell (nb201: its fixed 3)
    stem_multiplier: int = option(3, ge=1, le=16)

    def validate(self) -> None:
        check(self.channels % 2 == 0, f"model.channels must be even (FactorizedReduce halves it), got {self.channels}")
        check(self.layers >= 3 or self.nodes == 3, f"model.layers={self.layers}: a DARTS supernet needs 3 cells or more "
                                                   "(a normal cell and the two reduction cells)")


@dataclass
class OptimConfig:
    w_lr: float = option(0.025, gt=0.0, le=10.0)
    w_lr_min: float = option(0.001, ge=0.0)
    w_momentum: float = option(0.9, ge=0.0, lt=1.0)
    w_weight_decay: float = option(3e-4, ge=0.0, le=1.0)
    grad_clip: float = option(5.0, gt=0.0)
    alpha_lr: float = option(3e-4, gt=0.0, le=10.0)
    alpha_betas: list[float] = option(ge=0.0, lt=1.0, each=True, factory=lambda: [0.5, 0.999])
    alpha_weight_decay: float = option(1e-3, ge=0.0, le=1.0)

    def validate(self) -> None:
        check(self.w_lr_min <= self.w_lr, f"optim.w_lr_min must lie in [0, w_lr], got {self.w_lr_min}")
        check(len(self.alpha_betas) == 2, f"optim.alpha_betas must be two numbers in [0, 1), got {self.alpha_betas}")


@dataclass
class DeriveConfig:
    # Node 0 has only the two cell inputs as candidate parents, and every node keeps k of them.
    k: int = option(2, ge=1, le=2)  # parents kept per intermediate node (top-k spaces: darts; nb201 keeps every edge)
    max_skip: int | None = option(None, ge=0)  # P-DARTS: at most this many skip_connect in the normal cell
    method: str = option("argmax", choices=("argmax", "perturbation"))  # perturbation: DARTS-PT
    tune_epochs: int = option(1, ge=0, le=100)  # perturbation: epochs of fine-tuning between decisions


@dataclass
class DiagnosticsConfig:
    hessian_every: int = option(1, ge=0)  # dominant Hessian eigenvalue of L_val wrt the alphas every N epochs (0: off)
    hessian_iters: int = option(20, ge=1, le=1000)  # power iterations (each about one backward pass)


@dataclass
class SearchConfig(RunConfig):
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: SupernetConfig = field(default_factory=SupernetConfig)
    algorithm: Any = MISSING  # the selected algorithm's own config dataclass
    optim: OptimConfig = field(default_factory=OptimConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    recompute: bool = option(False, free="a switch")  # recompute cell activations in backward: less memory

    def validate(self) -> None:
        self.data.check_root()
        spec = algorithm_spec(self.algorithm.name)
        check(isinstance(self.algorithm, spec.config),
              f"algorithm '{self.algorithm.name}' needs its own config ({spec.config.__name__})")
        if hasattr(self.algorithm, "validate_with"):
            self.algorithm.validate_with(self)
        check_space(self.space, self.model, self.derive.method)
        check_memory(search_memory(self), f"a search step at data.image_size={self.data.image_size}, "
                                          f"batch_size={self.batch_size}")


def check_space(space: SpaceConfig, model: Any, method: str = "argmax") -> None:
    """The space exists, its ops and table are readable, and it can build ``model``'s sizes."""
    from nas.spaces import make_space
    from nas.spaces.table import load_table

    built = make_space(space)
    built.validate_model(model)
    if method == "perturbation" and built.name != "darts":
        raise ConfigError(f"derive.method=perturbation (DARTS-PT) selects parents in the DARTS cell; space "
                          f"{space.name} derives with derive.method=argmax")
    if space.table:
        load_table(space.table)


def search_memory(cfg: SearchConfig) -> float:
    """A rough upper estimate (bytes) of one search step: four stored tensors per op of every edge
    of every cell for backward, plus the dataset held in memory as uint8."""
    m, s = cfg.model, cfg.data.image_size
    ops = len(resolve_space(cfg.space.name, cfg.space.ops))
    edges = m.nodes * (m.nodes + 3) // 2
    channels, pixels, floats = m.channels, s * s, 0.0
    for layer in range(m.layers):
        if layer in (m.layers // 3, 2 * m.layers // 3):
            channels, pixels = channels * 2, pixels / 4
        floats += edges * ops * 4 * channels * pixels
    if cfg.recompute:
        floats /= m.layers
    images = cfg.data.limit or 60_000
    return floats * cfg.batch_size * 4 / 2 + images * 3 * (s + 8) ** 2


def register_configs() -> None:
    """Make the schemas known to Hydra: the primary ``search_schema`` and one per algorithm."""
    cs = ConfigStore.instance()
    cs.store(name="search_schema", node=SearchConfig)
    register_algorithm_schemas(cs)


def validate_search(cfg: SearchConfig) -> None:
    if not hasattr(cfg.algorithm, "name"):
        raise ConfigError("algorithm is not set; choose one with algorithm=<name>")
    check_limits(cfg)


def to_search_config(cfg: DictConfig | SearchConfig) -> SearchConfig:
    return to_validated(cfg, validate_search)


def search_config_from_dict(data: dict[str, Any]) -> SearchConfig:
    """The config a checkpoint or ``genotype.json`` saved, typed again by its algorithm's schema."""
    algorithm = data.get("algorithm") if isinstance(data, dict) else None
    name = algorithm.get("name") if isinstance(algorithm, dict) else None
    if not isinstance(name, str):
        raise ConfigError("saved config names no algorithm")
    return from_saved_dict(SearchConfig(algorithm=algorithm_spec(name).config()), data, validate_search)


__all__ = ["SearchConfig", "register_configs", "search_config_from_dict", "summary_of", "to_search_config"]
