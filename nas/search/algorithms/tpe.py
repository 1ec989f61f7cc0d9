"""TPE over cells (``algorithm=tpe``): Bayesian optimisation of the cell's choices with Optuna's
tree-structured Parzen estimator, scored by the same evaluators as the other discrete searches.

A cell pair is a set of categorical choices: per cell and node, which k inputs (one choice among
the k-subsets of its 2 + j predecessors), then the op of each of the k chosen edges. The first
``startup`` proposals are uniformly random (Optuna's startup trials); after that each proposal
maximises TPE's density ratio of good to bad scores (Bergstra et al., NeurIPS 2011). Where
``derive.max_skip`` caps the normal cell's skip connections, an edge after the cap is reached draws
from the ops without skip_connect (a parameter of its own, since Optuna's choices are fixed per name).

Every proposal comes from a sampler seeded by (seed, evaluations so far) and the history of
(choices, score): the state a checkpoint saves is that history, so a resumed run rebuilds the same
study and proposes the same cells as a run that was never stopped.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas.config import option
from nas.data.loader import derive_seed
from nas.genotype import Genotype, Pair
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import CellSpace, DiscreteConfig, DiscreteSearch

_STREAM = 0x7E  # the key of TPE's streams

Suggest = Callable[[str, list[str]], str]


@dataclass
class TpeConfig(DiscreteConfig):
    name: str = algorithm_name("tpe")
    startup: int = option(10, ge=1, le=100_000)  # random proposals before TPE models the scores
    multivariate: bool = option(True, free="a switch")  # model the choices jointly (multivariate TPE), not one by one


def cell_from_choices(space: CellSpace, suggest: Suggest) -> Genotype:
    """The cell pair that ``suggest(name, choices)`` picks, choice by choice, within ``space``'s rules."""
    def cell(kind: str) -> list[Pair]:
        pairs: list[Pair] = []
        for node in range(space.nodes):
            subsets = [",".join(map(str, s)) for s in itertools.combinations(range(node + 2), space.k)]
            inputs = [int(i) for i in suggest(f"{kind}{node}_inputs", subsets).split(",")]
            for slot, src in enumerate(inputs):
                ops, name = list(space.ops), f"{kind}{node}_op{slot}"
                capped = (kind == "normal" and space.max_skip is not None
                          and sum(op == "skip_connect" for op, _ in pairs) >= space.max_skip)
                if capped and "skip_connect" in ops and len(ops) > 1:
                    ops, name = [op for op in ops if op != "skip_connect"], f"{name}_noskip"
                pairs.append((suggest(name, ops), src))
        return pairs

    concat = list(range(2, space.nodes + 2))
    return Genotype(cell("normal"), concat, cell("reduce"), list(concat))


@register_algorithm("tpe", TpeConfig)
class Tpe(DiscreteSearch):
    def __init__(self, cfg: TpeConfig):
        super().__init__(cfg)
        self.cfg: TpeConfig = cfg

    def begin(self, space: CellSpace, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # multivariate TPE is "experimental" in Optuna; it warns on every proposal, where a category it
        # cannot model jointly (a _noskip op) falls back to independent sampling
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*independent sampl", category=UserWarning)
        self.space, self.seed = space, seed
        self.history: list[list[Any]] = []  # [choices, score] of every evaluation
        self.study = optuna.create_study(direction="maximize")
        self.trial: Any = None

    def propose(self) -> Genotype:
        import optuna

        self.study.sampler = optuna.samplers.TPESampler(
            seed=derive_seed(self.seed, _STREAM + len(self.history)) % 2**32, n_startup_trials=self.cfg.startup,
            multivariate=self.cfg.multivariate)
        self.trial = self.study.ask()
        return cell_from_choices(self.space, self.trial.suggest_categorical)

    def observe(self, genotype: Genotype, value: float) -> dict[str, float]:
        score = value if math.isfinite(value) else None
        if score is None:
            self.study.tell(self.trial, state=self._failed())
        else:
            self.study.tell(self.trial, score)
        self.history.append([dict(self.trial.params), score])
        return {}

    @staticmethod
    def _failed() -> Any:
        import optuna

        return optuna.trial.TrialState.FAIL

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the study from the history (each trial's choices and score)."""
        import optuna
        from optuna.distributions import CategoricalDistribution

        for choices, score in state["history"]:
            distributions: dict[str, CategoricalDistribution] = {}

            def suggest(name: str, options: list[str], chosen: dict = choices, into: dict = distributions) -> str:
                into[name] = CategoricalDistribution(options)
                return chosen[name]

            cell_from_choices(self.space, suggest)  # the distributions of the names this trial used
            outcome = {"value": score} if score is not None else {"state": self._failed()}
            trial = optuna.trial.create_trial(params=dict(choices), distributions=distributions, **outcome)
            self.study.add_trial(trial)
            self.history.append([dict(choices), score])
