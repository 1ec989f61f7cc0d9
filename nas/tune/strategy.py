"""The Optuna sampler and pruner a study runs with, from ``tune.sampler`` and ``tune.pruner``.

Samplers: ``random``; ``tpe`` (multivariate TPE, with the constant liar so that parallel workers
do not all propose the same point); ``cmaes`` (one objective); ``nsga2`` (two objectives). Pruners,
all on epochs as the fidelity and reported from epoch 1: ``none``; ``median`` (stop a trial below
the median of the others at the same epoch); ``asha`` (Optuna's asynchronous successive halving:
rungs at ``min_epochs × η^k`` epochs, 1 in η trials promoted); ``hyperband`` (several ASHA
brackets with different first rungs, up to the trial's full ``epochs``). TPE with Hyperband is the
BOHB-style default: Optuna's TPE models each Hyperband bracket on its own trials.

Each worker and each resumed session draws its own sampler stream (``tune.seed`` mixed with the
worker index and the trials already in the study), so parallel or resumed workers never replay
the same random proposals.
"""

from __future__ import annotations

import hashlib
import warnings

import optuna

from nas.tune.config import TuneOptions


def stream_seed(seed: int, *parts: int) -> int:
    """A 32-bit seed that differs for every (seed, worker, trials so far)."""
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_sampler(options: TuneOptions, seed: int) -> optuna.samplers.BaseSampler:
    startup = options.startup_trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if options.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if options.sampler == "tpe":
            return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=startup, seed=seed,
                                              constant_liar=True)
        if options.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(n_startup_trials=startup, seed=seed, warn_independent_sampling=False)
        # NSGA-II evolves a population; a study of a few dozen trials needs a small one to get past
        # its first generation.
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, options.trials // 4)), seed=seed)


def make_pruner(options: TuneOptions, max_epochs: int) -> optuna.pruners.BasePruner:
    r, eta = options.min_epochs, options.reduction_factor
    if options.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=options.startup_trials, n_warmup_steps=r)
    if options.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=r, reduction_factor=eta)
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=r, max_resource=max(max_epochs, r), reduction_factor=eta)
    return optuna.pruners.NopPruner()
