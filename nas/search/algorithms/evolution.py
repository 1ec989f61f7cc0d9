"""Regularised evolution (Real, Aggarwal, Huang & Le, AAAI 2019): ``algorithm=evolution``.

A population of ``population`` cells starts from random samples. Then, each cycle, ``tournament``
members are drawn at random, the best of them is copied and mutated once, the child is evaluated
and joins the population, and the *oldest* member leaves it — not the worst, which is what
"regularised" (or "aging") means: a cell survives only by having good descendants, so a lucky score
of a mediocre cell cannot dominate the search forever.

A mutation changes one thing in one of the two cells: the op of one (op, input) pair, or the input
it reads (the paper's op and hidden-state mutations). It keeps the genotype one that derivation
could have produced — k distinct parents per node, no ``none``, at most ``derive.max_skip`` skip
connections in the normal cell — so every child is a valid candidate of any registered space.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from nas.config import check, option
from nas.data.loader import derive_seed
from nas.evaluate.base import canonical
from nas.genotype import Genotype, Pair, from_mapping
from nas.ops import OPS
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import CellSpace, DiscreteConfig, DiscreteSearch, rng_state, set_rng_state

_STREAM = 0xE7  # the key of evolution's random stream
Mutation = tuple[str, int, Any]  # (cell, pair position, new op name or new input)


@dataclass
class EvolutionConfig(DiscreteConfig):
    name: str = algorithm_name("evolution")
    population: int = option(20, ge=2, le=1_000_000)  # P: cells alive at any time
    tournament: int = option(5, ge=1, le=1_000_000)  # S: members drawn to pick each parent

    def validate_with(self, cfg: Any) -> None:
        super().validate_with(cfg)
        check(self.tournament <= self.population,
              f"algorithm.tournament={self.tournament} must not exceed algorithm.population={self.population}")


def _skips(pairs: list[Pair], besides: int) -> int:
    return sum(op == "skip_connect" for i, (op, _) in enumerate(pairs) if i != besides)


def possible_mutations(genotype: Genotype, space: CellSpace) -> dict[str, list[list[Mutation]]]:
    """Per kind (``op``, ``input``), per pair of either cell that can change that way, its changes."""
    found: dict[str, list[list[Mutation]]] = {"op": [], "input": []}
    k = genotype.k
    for cell in ("normal", "reduce"):
        pairs = list(getattr(genotype, cell))
        for position, (op, _src) in enumerate(pairs):
            capped = (cell == "normal" and space.max_skip is not None
                      and _skips(pairs, position) >= space.max_skip)
            ops = [(cell, position, new) for new in space.ops if new != op and not (capped and new == "skip_connect")]
            node = position // k
            taken = {s for _, s in pairs[node * k:(node + 1) * k]}
            inputs = [(cell, position, new) for new in range(2 + node) if new not in taken]
            for kind, options in (("op", ops), ("input", inputs)):
                if options:
                    found[kind].append(options)
    return found


def mutate(genotype: Genotype, space: CellSpace, rng: random.Random) -> Genotype:
    """One random change: a kind (op or input) among those possible, a pair that can change that way,
    and a new value for it, each drawn uniformly. A genotype that admits no change (a space of one
    cell) is returned as it is. Each node's pairs come back listed by input, as the sampler lists them."""
    found = possible_mutations(genotype, space)
    kinds = [kind for kind in ("op", "input") if found[kind]]
    if not kinds:
        return genotype
    cell, position, new = rng.choice(rng.choice(found[rng.choice(kinds)]))
    cells = {kind: list(getattr(genotype, kind)) for kind in ("normal", "reduce")}
    op, src = cells[cell][position]
    cells[cell][position] = (new, src) if isinstance(new, str) else (op, new)
    return canonical(Genotype(cells["normal"], list(genotype.normal_concat), cells["reduce"],
                              list(genotype.reduce_concat)))


@dataclass
class Member:
    genotype: Genotype
    value: float
    born: int  # its evaluation index: the smallest is the oldest


class Population:
    """The aging population: ``add`` appends the newest member and drops the oldest beyond ``size``."""

    def __init__(self, size: int):
        self.size = size
        self.members: deque[Member] = deque()
        self.born = 0

    def add(self, genotype: Genotype, value: float) -> None:
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

    def begin(self, space: CellSpace, seed: int) -> None:
        self.space = space
        self.rng = random.Random(derive_seed(seed, _STREAM))
        self.population = Population(self.cfg.population)

    def propose(self) -> Genotype:
        if self.population.born < self.cfg.population:  # the first generation: random cells
            return self.space.sample(self.rng)
        parent = self.population.tournament(self.cfg.tournament, self.rng)
        return mutate(parent.genotype, self.space, self.rng)

    def observe(self, genotype: Genotype, value: float) -> dict[str, float]:
        self.population.add(genotype, value)
        return {"evolution/population_best": max(m.value for m in self.population.members)}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "born": self.population.born,
                "members": [[m.genotype.to_dict(), m.value, m.born] for m in self.population.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.population.members = deque(Member(from_mapping(g, OPS), float(v), int(b)) for g, v, b in state["members"])
        self.population.born = int(state["born"])
