"""Random search (``algorithm=random_search``): N cells drawn uniformly, the best one kept.

The baseline every search strategy has to beat, and with weight sharing (``algorithm.evaluator=
supernet``, the default) a strong one for DARTS (Li & Talwalkar, UAI 2019). Each evaluation draws a
fresh cell under derivation's rules from a seeded stream, so N evaluations are N samples; unlike
``algorithm=random``, which draws one cell and trains nothing, it scores every sample and keeps the
best.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from nas.data.loader import derive_seed
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import DiscreteConfig, DiscreteSearch, rng_state, set_rng_state
from nas.spaces import Sampler

_STREAM = 0x25  # the key of random search's stream


@dataclass
class RandomSearchConfig(DiscreteConfig):
    name: str = algorithm_name("random_search")


@register_algorithm("random_search", RandomSearchConfig)
class RandomSearch(DiscreteSearch):
    def begin(self, space: Sampler, seed: int) -> None:
        self.space = space
        self.rng = random.Random(derive_seed(seed, _STREAM))

    def propose(self) -> Any:
        return self.space.sample(self.rng)

    def observe(self, genotype: Any, value: float) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
