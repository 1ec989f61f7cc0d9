"""The settings of each evaluator, shared by the discrete searches (``algorithm.train.*``, ...) and
``nas-rank`` (``train.*``, ...), so that an evaluator means the same in both commands.

Every field declares its limits (``nas.config.option``), so a bad value fails at start-up with one
line and exit code 2, like every other key of the toolkit.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.config import option
from nas.evaluate.zero_cost import PROXIES

# The evaluators by name: ``zero_cost`` scores with the proxy its settings name; ``table`` looks the
# cell's validation accuracy up in its space's table of known answers (NAS-Bench-201).
EVALUATORS = ("train", "supernet", "zero_cost", "table")
PROXY_NAMES = tuple(PROXIES)


@dataclass
class TrainEvaluatorConfig:
    """``train``: the discrete network trained from scratch for ``epochs`` (the fidelity) on the weight
    part of the search split, scored by its accuracy on the held-out part."""

    epochs: int = option(1, ge=1, le=10_000)
    lr: float = option(0.025, gt=0.0, le=10.0)  # SGD, cosine to 0 over the epochs
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    weight_decay: float = option(3e-4, ge=0.0, le=1.0)
    grad_clip: float = option(5.0, gt=0.0, le=1e6)
    eval_batches: int | None = option(None, ge=1)  # held-out batches scored per candidate; None: all


@dataclass
class SupernetEvaluatorConfig:
    """``supernet``: one supernet trained with uniform single-path sampling (SPOS; random sampling with
    weight sharing), each candidate scored on the held-out part with the weights it inherits, after its
    BatchNorm statistics are re-estimated on ``calibration_batches`` training batches."""

    epochs: int = option(10, ge=1, le=10_000)  # epochs of supernet training over the weight part
    lr: float = option(0.025, gt=0.0, le=10.0)  # SGD, cosine to 0 over the epochs
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    weight_decay: float = option(3e-4, ge=0.0, le=1.0)
    grad_clip: float = option(5.0, gt=0.0, le=1e6)
    calibration_batches: int = option(10, ge=0, le=100_000)  # 0: keep the statistics of training
    eval_batches: int | None = option(None, ge=1)  # held-out batches scored per candidate; None: all


@dataclass
class ZeroCostEvaluatorConfig:
    """``zero_cost``: a proxy of the untrained network, averaged over the first ``batches`` training
    batches (the same batches for every candidate)."""

    proxy: str = option("naswot", choices=PROXY_NAMES)
    batches: int = option(1, ge=1, le=1000)
