"""Regularised evolution (Real, Aggarwal, Huang & Le, AAAI 2019): ``algorithm=evolution``.

A population of ``population`` cells starts from random samples. Then, each cycle, ``tournament``
members are drawn at random, the best of them is copied and mutated once, the child is evaluated
and joins the population, and the *oldest* member leaves it — not the worst, which is what
"regularised" (or "aging") means: a cell survives only by having good descendants, so a lucky score
of a mediocre cell cannot dominate the search forever.

A mutation changes one of the genotype's categorical choices (``nas.spaces.Sampler.mutate``): in
the DARTS space the op of one kept edge or the input set of one node (the paper's op and
hidden-state mutations), in NAS-Bench-201 the op of one edge. The child obeys the space's rules
(``derive.max_skip``), so every child is a valid candidate of any registered space.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from nas.config import check, option
from nas.data.loader import derive_seed
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import DiscreteConfig, DiscreteSearch, rng_state, set_rng_state
from nas.spaces import Sampler

_STREAM = 0xE7  # the key of evolution's random stream


@dataclass
class EvolutionConfig(DiscreteConfig):
    name: str = algorithm_name("evolution")
    population: int = option(20, ge=2, le=1_000_000)  # P: cells alive at any time
    tournament: int = option(5, ge=1, le=1_000_000)  # S: members drawn to pick each parent

    def validate_with(self, cfg: Any) -> None:
        super().validate_with(cfg)
        check(self.tournament <= self.population,
              f"algorithm.tournament={self.tournament} must not exceed algorithm.population={self.population}")


@dataclass
class Member:
    genotype: Any
    value: float
    born: int  # its evaluation index: the smallest is the oldest


class Population:
    """The aging population: ``add`` appends the newest member and drops the oldest beyond ``size``."""

    def __init__(self, size: int):
        self.size = size
        self.members: deque[Member] = deque()
        self.born = 0

    def add(self, genotype: Any, value: float) -> None:
        self.members.append(Member(genotype, value, self.born))
        self.born += 1
        if len(self.members) > self.size:
            self.members.popleft()

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size

    def tournament(self, sample: int, rng: random.Random) -> Member:
        """The best of ``sample`` members drawn without replacement (on a tie, the one drawn first)."""
        drawn = rng.sample(list(self.members), sample)
        return max(drawn, key=lambda m: m.value)


@register_algorithm("evolution", EvolutionConfig)
class Evolution(DiscreteSearch):
    def __init__(self, cfg: EvolutionConfig):
        super().__init__(cfg)
        self.cfg: EvolutionConfig = cfg

    def begin(self, space: Sampler, seed: int) -> None:
        self.space = space
        self.rng = random.Random(derive_seed(seed, _STREAM))
        self.population = Population(self.cfg.population)

    def propose(self) -> Any:
        if self.population.born < self.cfg.population:  # the first generation: random cells
            return self.space.sample(self.rng)
        parent = self.population.tournament(self.cfg.tournament, self.rng)
        return self.space.mutate(parent.genotype, self.rng)

    def observe(self, genotype: Any, value: float) -> dict[str, float]:
        self.population.add(genotype, value)
        return {"evolution/population_best": max(m.value for m in self.population.members)}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "born": self.population.born,
                "members": [[m.genotype.to_dict(), m.value, m.born] for m in self.population.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.population.members = deque(Member(self.space.space.from_dict(g), float(v), int(b)) for g, v, b in state["members"])
        self.population.born = int(state["born"])
