"""REINFORCE over the cell's choices (Williams 1992; as a NAS controller: Zoph & Le, ICLR 2017):
``algorithm=reinforce``.

The policy makes, for each of the two cells, exactly the choices a genotype consists of: for every
node, which k of its earlier states it reads (drawn without replacement from a softmax over them),
and for every kept edge, which op it applies (a softmax over the space's non-zero ops; once the
normal cell holds ``derive.max_skip`` skip connections, skip_connect is masked out, as the random
sampler does). Its parameters are those logits, one table of input logits per node and one of op
logits per edge, like the alphas of a supernet; they start at 0, so the first cells are uniform
random samples.

After each evaluation, one REINFORCE step with Adam on

    L = −Â · log π(genotype) − β · H(π),   Â = (R − b) / rms(R − b),

where R is the score, b a moving average of past scores (``baseline_decay``) and H the entropy
bonus (``entropy_weight``: the sum of the entropies of every softmax of the policy), which keeps
the policy from settling on a cell before it has seen enough. Scores of different evaluators range
over many orders of magnitude (an accuracy in [0, 1], SynFlow in the 1e20s), so the advantage is
divided by a moving root mean square of R − b: the step means the same for any evaluator. log π of
a node's parents is that of the *set* (summed over the orders it could have been drawn in), so the
probability of a genotype is a function of the genotype alone and the step needs nothing from the
moment it was sampled — a run resumed between the two learns exactly what it would have learnt.
A score that could not be computed (NaN, a proxy's −inf) counts as the lowest score seen so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import torch
from torch import nn

from nas.cells import edge_inputs
from nas.config import option
from nas.data.loader import derive_seed
from nas.errors import ConfigError
from nas.evaluate.base import canonical
from nas.genotype import Genotype, Pair
from nas.search.algorithms import register_algorithm
from nas.search.algorithms.base import algorithm_name
from nas.search.algorithms.discrete import CellSpace, DiscreteConfig, DiscreteSearch

_STREAM = 0x2E1  # the key of the policy's sampling stream
KINDS = ("normal", "reduce")


@dataclass
class ReinforceConfig(DiscreteConfig):
    name: str = algorithm_name("reinforce")
    lr: float = option(0.05, gt=0.0, le=10.0)  # Adam on the policy's logits
    baseline_decay: float = option(0.9, ge=0.0, lt=1.0)  # b ← decay·b + (1 − decay)·R
    entropy_weight: float = option(0.01, ge=0.0, le=100.0)  # β of the entropy bonus


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)


def set_log_prob(logits: torch.Tensor, chosen: list[int]) -> torch.Tensor:
    """log P(the set ``chosen``) when its members are drawn one by one, without replacement, from
    softmax(``logits``): the log of the sum over every order they could have come in."""
    orders = []
    for order in permutations(chosen):
        left, total = list(range(len(logits))), logits.new_zeros(())
        for c in order:
            total = total + logits[c] - torch.logsumexp(logits[left], 0)
            left.remove(c)
        orders.append(total)
    return torch.logsumexp(torch.stack(orders), 0)


class CellPolicy(nn.Module):
    """A distribution over the genotypes of ``space``: input logits per node, op logits per edge."""

    def __init__(self, space: CellSpace):
        super().__init__()
        self.space = space
        self.edge_of = {pair: e for e, pair in enumerate(edge_inputs(space.nodes))}
        n = space.nodes
        self.inputs = nn.ParameterDict({kind: nn.Parameter(torch.zeros(n, n + 1)) for kind in KINDS})
        self.ops = nn.ParameterDict({kind: nn.Parameter(torch.zeros(len(self.edge_of), len(space.ops)))
                                     for kind in KINDS})

    def input_logits(self, kind: str, node: int) -> torch.Tensor:
        return self.inputs[kind][node, : 2 + node]  # node j reads one of the 2 + j earlier states

    def op_logits(self, kind: str, node: int, src: int, before: list[Pair]) -> torch.Tensor:
        """The op logits of edge (node, src), skip_connect masked once ``before`` holds the cap."""
        logits = self.ops[kind][self.edge_of[(node, src)]]
        s = self.space
        if kind == "normal" and s.max_skip is not None and "skip_connect" in s.ops \
                and sum(op == "skip_connect" for op, _ in before) >= s.max_skip:
            if len(s.ops) == 1:
                raise ConfigError("derive.max_skip leaves no op to draw: the space holds only skip_connect")
            logits = logits.masked_fill(torch.tensor([op == "skip_connect" for op in s.ops]), -math.inf)
        return logits

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> Genotype:
        def draw(logits: torch.Tensor) -> int:
            return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))

        cells: dict[str, list[Pair]] = {}
        for kind in KINDS:
            pairs: list[Pair] = []
            for node in range(self.space.nodes):
                logits, left, chosen = self.input_logits(kind, node), list(range(2 + node)), []
                for _ in range(self.space.k):
                    chosen.append(left.pop(draw(logits[left])))
                for src in sorted(chosen):
                    pairs.append((self.space.ops[draw(self.op_logits(kind, node, src, pairs))], src))
            cells[kind] = pairs
        concat = list(range(2, 2 + self.space.nodes))
        return Genotype(cells["normal"], concat, cells["reduce"], list(concat))

    def log_prob(self, genotype: Genotype) -> torch.Tensor:
        """log π(genotype), differentiable in the logits; the same whatever order its pairs are listed in."""
        g, k, total = canonical(genotype), self.space.k, torch.zeros(())
        index = {op: i for i, op in enumerate(self.space.ops)}
        for kind in KINDS:
            pairs = getattr(g, kind)
            for node in range(self.space.nodes):
                mine = pairs[node * k:(node + 1) * k]
                total = total + set_log_prob(self.input_logits(kind, node), [src for _, src in mine])
                for position, (op, src) in enumerate(mine, start=node * k):
                    logits = self.op_logits(kind, node, src, pairs[:position])
                    total = total + torch.log_softmax(logits, -1)[index[op]]
        return total

    def entropy(self) -> torch.Tensor:
        """The sum of the entropies of every softmax of the policy (the first parent draw of each node,
        the ops of every edge): the bonus that keeps it exploring."""
        total = torch.zeros(())
        for kind in KINDS:
            for node in range(self.space.nodes):
                total = total + _entropy(self.input_logits(kind, node))
            total = total + _entropy(self.ops[kind]).sum()
        return total

    @torch.no_grad()
    def most_likely(self) -> Genotype:
        """The policy's favourite cell: the k likeliest parents of every node, the likeliest op of each."""
        cells: dict[str, list[Pair]] = {}
        for kind in KINDS:
            pairs: list[Pair] = []
            for node in range(self.space.nodes):
                top = self.input_logits(kind, node).topk(self.space.k).indices.tolist()
                for src in sorted(top):
                    pairs.append((self.space.ops[int(self.op_logits(kind, node, src, pairs).argmax())], src))
            cells[kind] = pairs
        concat = list(range(2, 2 + self.space.nodes))
        return Genotype(cells["normal"], concat, cells["reduce"], list(concat))


class Learner:
    """The policy, its optimizer, the baseline and the sampling stream: REINFORCE without a search around
    it (the tests train it on a toy reward)."""

    def __init__(self, space: CellSpace, seed: int, lr: float = 0.05, baseline_decay: float = 0.9,
                 entropy_weight: float = 0.01):
        self.policy = CellPolicy(space)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, _STREAM))
        self.decay, self.entropy_weight = baseline_decay, entropy_weight
        self.baseline: float | None = None
        self.spread = 0.0  # moving mean of (R − b)²
        self.lowest: float | None = None  # the lowest finite reward seen

    def propose(self) -> Genotype:
        return self.policy.sample(self.generator)

    def learn(self, genotype: Genotype, reward: float) -> dict[str, float]:
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

    def begin(self, space: CellSpace, seed: int) -> None:
        c = self.cfg
        self.learner = Learner(space, seed, c.lr, c.baseline_decay, c.entropy_weight)

    def propose(self) -> Genotype:
        return self.learner.propose()

    def observe(self, genotype: Genotype, value: float) -> dict[str, float]:
        return self.learner.learn(genotype, value)

    def summary(self) -> dict[str, Any]:
        return {"reinforce": {"most_likely": self.learner.policy.most_likely().to_text(),
                              "entropy": float(self.learner.policy.entropy().detach()),
                              "baseline": self.learner.baseline}}

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)
