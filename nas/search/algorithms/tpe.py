"""TPE over cells (``algorithm=tpe``): Bayesian optimisation of the cell's choices with Optuna's
tree-structured Parzen estimator, scored by the same evaluators as the other discrete searches.

A genotype is its space's set of categorical choices (``nas.spaces``: in the DARTS space, per cell
and node, which k inputs and the op of each kept edge; in NAS-Bench-201 the op of each edge), each
an Optuna categorical parameter. The first ``startup`` proposals are uniformly random (Optuna's
startup trials); after that each proposal maximises TPE's density ratio of good to bad scores
(Bergstra et al., NeurIPS 2011). A proposal that breaks the space's rules (``derive.max_skip``) is
told to the study as failed, so TPE learns to avoid it, and another is asked for.

Every proposal comes from a sampler seeded by (seed, trials so far) and the history of
(choices, score): the state a checkpoint saves is that history, so a resumed run rebuilds the same
study and proposes the same cells as a run that was never stopped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from nas.config import option
from nas.data.loader import derive_seed
from nas.errors import ConfigError
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import DiscreteConfig, DiscreteSearch
from nas.spaces import Sampler
from nas.spaces.base import MAX_TRIES

_STREAM = 0x7E  # the key of TPE's streams

@dataclass
class TpeConfig(DiscreteConfig):
    name: str = algorithm_name("tpe")
    startup: int = option(10, ge=1, le=100_000)  # random proposals before TPE models the scores
    multivariate: bool = option(True, free="a switch")  # model the choices jointly (multivariate TPE), not one by one


@register_algorithm("tpe", TpeConfig)
class Tpe(DiscreteSearch):
    def __init__(self, cfg: TpeConfig):
        super().__init__(cfg)
        self.cfg: TpeConfig = cfg

    def begin(self, space: Sampler, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # multivariate TPE is "experimental" in Optuna; it warns on every proposal
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space, self.seed = space, seed
        self.history: list[list[Any]] = []  # [choices, score or None (failed or invalid)] of every trial
        self.study = optuna.create_study(direction="maximize")
        self.distributions = {c.name: optuna.distributions.CategoricalDistribution(c.options) for c in space.choices}
        self.trial: Any = None

    def _ask(self) -> tuple[Any, Any]:
        import optuna

        self.study.sampler = optuna.samplers.TPESampler(
            seed=derive_seed(self.seed, _STREAM + len(self.history)) % 2**32, n_startup_trials=self.cfg.startup,
            multivariate=self.cfg.multivariate)
        trial = self.study.ask(self.distributions)
        values = [c.options.index(trial.params[c.name]) for c in self.space.choices]
        return trial, self.space.decode(values)

    def propose(self) -> Any:
        for _ in range(MAX_TRIES):
            self.trial, genotype = self._ask()
            if self.space.valid(genotype):
                return genotype
            self.study.tell(self.trial, state=self._failed())
            self.history.append([dict(self.trial.params), None])
        raise ConfigError("TPE proposes no valid cell under derive.max_skip")

    def observe(self, genotype: Any, value: float) -> dict[str, float]:
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

        for choices, score in state["history"]:
            outcome = {"value": score} if score is not None else {"state": self._failed()}
            self.study.add_trial(optuna.trial.create_trial(params=dict(choices), distributions=self.distributions,
                                                           **outcome))
            self.history.append([dict(choices), score])
