"""What a search space is: the one place that knows a topology.

A space owns the shape of its architecture parameters (one (edges × ops) tensor per cell kind),
the weight-sharing supernet it builds, its derivation rule, its genotype (JSON and native text),
the discrete network a genotype is retrained in, and the categorical choices a genotype is made of.
Algorithms, weighting rules, evaluators and discrete strategies see only these; none of them
knows how many inputs a cell has or which edges exist.

The choices are the bridge to the discrete strategies: a genotype is a list of independent
categorical choices (``choices()``, ``encode``/``decode``), so uniform sampling, one-choice
mutation, a REINFORCE policy and TPE's categorical suggestions need no space-specific code.
Constraints that the choices cannot express (the P-DARTS cap on skip connections) are a
predicate, ``valid``, and the samplers reject what it refuses.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError
from nas.ops import get_op

MAX_TRIES = 10_000  # draws before a sampler concludes that no valid genotype exists


class Genotype(Protocol):
    """The plain-data result of a search in some space."""

    def to_dict(self) -> dict[str, Any]: ...
    def to_text(self) -> str: ...


@dataclass(frozen=True)
class Choice:
    """One categorical decision of a genotype: its name (stable across runs: TPE keys on it) and
    its options, as text."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    """Derivation rules that a space may honour: parents kept per node (spaces with top-k
    derivation), the P-DARTS cap on identity ops in the cell that collapses."""

    k: int = 2
    max_skip: int | None = None


class SearchSpace:
    """Base of every space. ``op_names``: the ops of every mixed edge, in the alphas' column order."""

    name = "space"
    collapse_kind = "normal"  # the cell kind whose identity ops the collapse remedies count

    def __init__(self, op_names: Sequence[str]):
        self.op_names = tuple(op_names)

    # -- topology and alphas ---------------------------------------------------------------------
    def alpha_shapes(self, model: Any) -> dict[str, int]:
        """Edges per cell kind (each kind has one (edges × ops) alpha tensor)."""
        raise NotImplementedError

    def node_sizes(self, model: Any) -> dict[str, list[int]]:
        """Per kind, the number of edges entering each node, in edge order (edge normalisation)."""
        raise NotImplementedError

    def edge_labels(self, model: Any) -> dict[str, list[str]]:
        """Per kind, one label per edge (``src→dst``): the rows of heatmaps and the custom-scalar charts."""
        raise NotImplementedError

    # -- networks --------------------------------------------------------------------------------
    def validate_model(self, model: Any) -> None:
        """Refuse sizes the space cannot build, with one line (``ConfigError``)."""

    def build_supernet(self, model: Any, num_classes: int, in_channels: int, **options: Any) -> nn.Module:
        raise NotImplementedError

    def build_network(self, genotype: Any, model: Any, num_classes: int, in_channels: int = 3) -> nn.Module:
        """The discrete network of ``genotype`` for retraining (``forward(x, drop_path_prob)`` →
        ``(logits, aux logits or None)``)."""
        raise NotImplementedError

    def network_at_search_size(self, genotype: Any, model: Any, num_classes: int, in_channels: int) -> nn.Module:
        """The discrete network at the search supernet's size (the evaluators train and score it)."""
        raise NotImplementedError

    # -- derivation ------------------------------------------------------------------------------
    def derive(self, weights: Mapping[str, torch.Tensor], model: Any, rules: Rules,
               edge_scales: Mapping[str, torch.Tensor] | None = None) -> Any:
        raise NotImplementedError

    def path_of(self, genotype: Any, model: Any, device: torch.device | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
        """Op weights and active ops that make the supernet compute exactly ``genotype``."""
        raise NotImplementedError

    # -- genotypes -------------------------------------------------------------------------------
    def from_dict(self, data: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def load(self, spec: str) -> Any:
        """A published name, a ``genotype.json`` (or its run directory), a file of native text, or the text."""
        raise NotImplementedError

    def ops_of(self, genotype: Any) -> dict[str, list[str]]:
        """Per cell kind, the ops the genotype uses (one per kept edge)."""
        raise NotImplementedError

    def key(self, genotype: Any) -> str:
        """A text identifying the network a genotype builds (equal for equivalent genotypes)."""
        return self.canonical(genotype).to_text()

    def canonical(self, genotype: Any) -> Any:
        return genotype

    def images(self, genotype: Any, title: str = "") -> dict[str, np.ndarray]:
        """Per cell kind, a drawing of the derived cell (RGB uint8)."""
        return {}

    # -- discrete search -------------------------------------------------------------------------
    def choices(self, model: Any, rules: Rules) -> list[Choice]:
        raise NotImplementedError

    def decode(self, values: Sequence[int], model: Any, rules: Rules) -> Any:
        raise NotImplementedError

    def encode(self, genotype: Any, model: Any, rules: Rules) -> list[int]:
        raise NotImplementedError

    def valid(self, genotype: Any, rules: Rules) -> bool:
        """Whether the genotype obeys the rules (by default the cap on identity ops)."""
        return rules.max_skip is None or self.identity_count(genotype) <= rules.max_skip

    def identity_count(self, genotype: Any) -> int:
        """Identity ops (skip_connect) in the cell kind that collapses."""
        return sum(get_op(op).identity for op in self.ops_of(genotype).get(self.collapse_kind, []))

    def param_free_counts(self, genotype: Any) -> dict[str, int]:
        """Per cell kind, the parameter-free ops of a derived cell (the signature of collapse)."""
        return {kind: sum(get_op(op).parameter_free for op in ops) for kind, ops in self.ops_of(genotype).items()}

    # -- the tabular benchmark -------------------------------------------------------------------
    def lookup(self, genotype: Any) -> dict[str, Any] | None:
        """The known answer of a genotype from the configured table (None: no table)."""
        return None


class Sampler:
    """Uniform draws, one-choice mutations and the categorical encoding of one space under its rules."""

    def __init__(self, space: SearchSpace, model: Any, rules: Rules):
        self.space, self.model, self.rules = space, model, rules
        self.choices = space.choices(model, rules)

    def decode(self, values: Sequence[int]) -> Any:
        return self.space.decode(values, self.model, self.rules)

    def encode(self, genotype: Any) -> list[int]:
        return self.space.encode(genotype, self.model, self.rules)

    def valid(self, genotype: Any) -> bool:
        return self.space.valid(genotype, self.rules)

    def sample(self, rng: random.Random) -> Any:
        """A genotype drawn uniformly among the valid ones (rejection sampling)."""
        for _ in range(MAX_TRIES):
            genotype = self.decode([rng.randrange(len(c.options)) for c in self.choices])
            if self.valid(genotype):
                return genotype
        raise ConfigError(f"no valid {self.space.name} cell found in {MAX_TRIES} draws: the rules "
                          f"(derive.max_skip={self.rules.max_skip}) leave (almost) nothing to sample")

    def mutate(self, genotype: Any, rng: random.Random) -> Any:
        """One choice changed to another of its options, each drawn uniformly; valid, or the genotype
        itself when no change is possible."""
        values = self.encode(genotype)
        movable = [i for i, c in enumerate(self.choices) if len(c.options) > 1]
        for _ in range(MAX_TRIES if movable else 0):
            i = rng.choice(movable)
            new = list(values)
            new[i] = rng.choice([v for v in range(len(self.choices[i].options)) if v != values[i]])
            child = self.decode(new)
            if self.valid(child):
                return child
        return genotype
