"""DARTS (Liu et al., ICLR 2019): softmax op weights, alphas and weights trained in alternation.

Each step takes an alpha step on a validation batch (first order, or second order through one
unrolled weight step: ``algorithm=darts_2nd``), then a weight step on a training batch. Everything
DARTS needs is the default of ``Algorithm`` and the bilevel stepper; this module only names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import Algorithm, BilevelConfig, algorithm_name


@dataclass
class DartsConfig(BilevelConfig):
    name: str = algorithm_name("darts")


@register_algorithm("darts", DartsConfig)
class Darts(Algorithm):
    """DARTS: softmax(α) on every edge; alpha step, then weight step."""
