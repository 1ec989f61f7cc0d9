"""REINFORCE over the genotype's choices (Williams 1992; as a NAS controller: Zoph & Le, ICLR 2017):
``algorithm=reinforce``.

The policy is one softmax per categorical choice of the space (``nas.spaces``): in the DARTS space,
per cell and node, the set of its k inputs (one choice among the k-subsets of its predecessors)
and the op of each kept edge; in NAS-Bench-201 the op of each of the 6 edges. Its parameters are
those logits; they start at 0, so the first cells are uniform random samples. A sample that breaks
the space's rules (``derive.max_skip``) is drawn again.

After each evaluation, one REINFORCE step with Adam on

    L = −Â · log π(genotype) − β · H(π),   Â = (R − b) / rms(R − b),

where R is the score, b a moving average of past scores (``baseline_decay``) and H the entropy
bonus (``entropy_weight``: the sum of the entropies of every softmax of the policy), which keeps
the policy from settling on a cell before it has seen enough. Scores of different evaluators range
over many orders of magnitude (an accuracy in [0, 1], SynFlow in the 1e20s), so the advantage is
divided by a moving root mean square of R − b: the step means the same for any evaluator.
log π(genotype) = Σ log softmax(choice)[value] is a function of the genotype alone (its encoding is
canonical), so a run resumed between sampling and learning learns exactly what it would have.
A score that could not be computed (NaN, a proxy's −inf) counts as the lowest score seen so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas.config import option
from nas.data.loader import derive_seed
from nas.errors import ConfigError
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import DiscreteConfig, DiscreteSearch
from nas.spaces import Sampler
from nas.spaces.base import MAX_TRIES

_STREAM = 0x2E1  # the key of the policy's sampling stream


@dataclass
class ReinforceConfig(DiscreteConfig):
    name: str = algorithm_name("reinforce")
    lr: float = option(0.05, gt=0.0, le=10.0)  # Adam on the policy's logits
    baseline_decay: float = option(0.9, ge=0.0, lt=1.0)  # b ← decay·b + (1 − decay)·R
    entropy_weight: float = option(0.01, ge=0.0, le=100.0)  # β of the entropy bonus


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)


class ChoicePolicy(nn.Module):
    """A distribution over the genotypes of a space: one logit vector per categorical choice."""

    def __init__(self, space: Sampler):
        super().__init__()
        self.space = space
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(len(c.options))) for c in space.choices)

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> Any:
        for _ in range(MAX_TRIES):
            values = [int(torch.multinomial(torch.softmax(v, -1), 1, generator=generator)) for v in self.logits]
            genotype = self.space.decode(values)
            if self.space.valid(genotype):
                return genotype
        raise ConfigError("the REINFORCE policy draws no valid cell under derive.max_skip")

    def log_prob(self, genotype: Any) -> torch.Tensor:
        """log π(genotype), differentiable in the logits."""
        values = self.space.encode(genotype)
        return sum((torch.log_softmax(v, -1)[i] for v, i in zip(self.logits, values)), torch.zeros(()))

    def entropy(self) -> torch.Tensor:
        """The sum of the entropies of every softmax of the policy: the bonus that keeps it exploring."""
        return sum((_entropy(v) for v in self.logits), torch.zeros(()))

    @torch.no_grad()
    def most_likely(self) -> Any:
        """The policy's favourite cell: the likeliest option of every choice."""
        return self.space.decode([int(v.argmax()) for v in self.logits])


class Learner:
    """The policy, its optimizer, the baseline and the sampling stream: REINFORCE without a search around
    it (the tests train it on a toy reward)."""

    def __init__(self, space: Sampler, seed: int, lr: float = 0.05, baseline_decay: float = 0.9,
                 entropy_weight: float = 0.01):
        self.policy = ChoicePolicy(space)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, _STREAM))
        self.decay, self.entropy_weight = baseline_decay, entropy_weight
        self.baseline: float | None = None
        self.spread = 0.0  # moving mean of (R − b)²
        self.lowest: float | None = None  # the lowest finite reward seen

    def propose(self) -> Any:
        return self.policy.sample(self.generator)

    def learn(self, genotype: Any, reward: float) -> dict[str, float]:
        """One REINFORCE step on the reward of ``genotype``; returns the scalars to log."""
        if not math.isfinite(reward):
            if self.lowest is None:
                return {}
            reward = self.lowest
        self.lowest = reward if self.lowest is None else min(self.lowest, reward)
        advantage = 0.0
        if self.baseline is None:
            self.baseline = reward
        else:
            advantage = reward - self.baseline
            self.spread = self.decay * self.spread + (1 - self.decay) * advantage**2
            advantage = advantage / math.sqrt(self.spread) if self.spread > 0 else 0.0
            self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        entropy = self.policy.entropy()
        loss = -advantage * self.policy.log_prob(genotype) - self.entropy_weight * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"reinforce/baseline": self.baseline, "reinforce/advantage": advantage,
                "reinforce/entropy": float(entropy.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline, "spread": self.spread,
                "lowest": self.lowest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline, self.spread, self.lowest = state["baseline"], float(state["spread"]), state["lowest"]


@register_algorithm("reinforce", ReinforceConfig)
class Reinforce(DiscreteSearch):
    def __init__(self, cfg: ReinforceConfig):
        super().__init__(cfg)
        self.cfg: ReinforceConfig = cfg

    def begin(self, space: Sampler, seed: int) -> None:
        c = self.cfg
        self.learner = Learner(space, seed, c.lr, c.baseline_decay, c.entropy_weight)

    def propose(self) -> Any:
        return self.learner.propose()

    def observe(self, genotype: Any, value: float) -> dict[str, float]:
        return self.learner.learn(genotype, value)

    def summary(self) -> dict[str, Any]:
        return {"reinforce": {"most_likely": self.learner.policy.most_likely().to_text(),
                              "entropy": float(self.learner.policy.entropy().detach()),
                              "baseline": self.learner.baseline}}

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)
