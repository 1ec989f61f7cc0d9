"""Discrete search: mutation keeps a genotype valid in every registered space, the evolution population
ages out as Real et al. specify, REINFORCE's gradient moves its policy towards a toy reward, and every
strategy runs a tiny search from the command line and resumes after a kill to the same result."""

from __future__ import annotations

import itertools
import json
import math
import random
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import torch

from conftest import TINY_SEARCH, compose_search, darts_sampler, invoke_cli, one_error_line
from nas.genotype import Genotype, validate
from nas.ops import SPACES, get_op
from nas.search.algorithms.discrete import DiscreteTask
from nas.search.algorithms.evolution import Evolution, EvolutionConfig, Population
from nas.search.algorithms.reinforce import ChoicePolicy, Learner
from nas.search.algorithms.tpe import Tpe, TpeConfig
from nas.search.task import run_search

pytestmark = pytest.mark.usefixtures("one_thread")


def darts(op_set: str, nodes: int, k: int = 2, max_skip: int | None = None):
    return darts_sampler(SPACES[op_set], nodes, k, max_skip)


def assert_valid(g: Genotype, space) -> None:
    validate(g, space.space.op_names)
    nodes, k = space.model.nodes, space.rules.k
    for kind in ("normal", "reduce"):
        pairs = getattr(g, kind)
        assert len(pairs) == k * nodes and getattr(g, f"{kind}_concat") == list(range(2, nodes + 2))
        assert all(op in space.space.op_names and not get_op(op).zero for op, _ in pairs)
        for node in range(nodes):
            inputs = [src for _, src in pairs[node * k:(node + 1) * k]]
            assert inputs == sorted(set(inputs)) and all(0 <= i < node + 2 for i in inputs)
    if space.rules.max_skip is not None:
        assert sum(op == "skip_connect" for op, _ in g.normal) <= space.rules.max_skip


def differences(space, a, b) -> int:
    return sum(x != y for x, y in zip(space.encode(a), space.encode(b)))


# -- mutation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(n for n in SPACES if n != "nb201"))
@pytest.mark.parametrize(("nodes", "k", "max_skip"), [(1, 1, None), (1, 2, None), (3, 2, 1), (4, 2, None), (4, 1, 0)])
def test_mutation_keeps_a_genotype_valid_in_every_registered_space(name, nodes, k, max_skip):
    space = darts(name, nodes, k, max_skip)
    if max_skip == 0 and space.space.candidate_ops == ("skip_connect",):
        pytest.skip("no cell obeys the cap")
    rng = random.Random(0)
    genotype = space.sample(rng)
    changed = 0
    for _ in range(60):
        child = space.mutate(genotype, rng)
        assert_valid(child, space)
        if any(len(c.options) > 1 for c in space.choices):
            assert differences(space, child, genotype) == 1  # one choice changed
            changed += 1
        else:
            assert child == genotype  # a space of one cell: nothing to change
        genotype = child
    if nodes > 1 or len(space.space.candidate_ops) > 1:
        assert changed == 60


def test_mutation_changes_one_op_or_one_input_set_and_reaches_both():
    space, rng = darts("darts", 4, 2), random.Random(1)
    parent = space.sample(rng)
    kinds = set()
    for _ in range(50):
        child = space.mutate(parent, rng)
        assert differences(space, child, parent) == 1
        inputs = [[src for _, src in getattr(g, kind)] for g in (parent, child) for kind in ("normal", "reduce")]
        kinds.add("op" if inputs[:2] == inputs[2:] else "input")
    assert kinds == {"op", "input"}


# -- regularised evolution ----------------------------------------------------------------------------------
def test_the_oldest_member_leaves_not_the_worst():
    population = Population(3)
    g = darts("s2", 1, 1).sample(random.Random(0))
    for born, value in enumerate([9.0, 1.0, 2.0, 3.0, 0.5]):
        population.add(g, value)
        assert [m.born for m in population.members] == list(range(max(0, born - 2), born + 1))
    assert [m.value for m in population.members] == [2.0, 3.0, 0.5]  # 9.0, the best, aged out first
    assert population.tournament(3, random.Random(0)).value == 3.0


def test_evolution_starts_random_then_mutates_tournament_winners_and_ages_out():
    strategy = Evolution(EvolutionConfig(population=5, tournament=2))
    space = darts("darts", 2, 2)
    strategy.begin(space, seed=0)
    for step in range(20):
        members = list(strategy.population.members)
        child = strategy.propose()
        if step >= 5:  # one mutation away from a member of the population that bred it
            assert 1 in {differences(space, child, m.genotype) for m in members}
        strategy.observe(child, float(sum(op == "sep_conv_3x3" for op, _ in child.normal + child.reduce)))
        assert [m.born for m in strategy.population.members] == list(range(max(0, step - 4), step + 1))
    # the state round-trips: a resumed search continues the same population and random stream
    state = strategy.state_dict()
    twin = Evolution(EvolutionConfig(population=5, tournament=2))
    twin.begin(space, seed=99)
    twin.load_state_dict(state)
    assert [m.genotype for m in twin.population.members] == [m.genotype for m in strategy.population.members]
    assert twin.propose() == strategy.propose()


# -- REINFORCE ----------------------------------------------------------------------------------------------
def random_policy(space, seed: int) -> ChoicePolicy:
    policy = ChoicePolicy(space)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0, 1, generator=generator)
    return policy


@pytest.mark.parametrize(("nodes", "k"), [(1, 1), (1, 2), (2, 1)])
def test_the_policy_is_a_distribution_over_exactly_the_genotypes(nodes, k):
    space = darts("s3", nodes, k)  # none excluded
    policy = random_policy(space, seed=nodes + k)
    every = [space.decode(list(v)) for v in itertools.product(*(range(len(c.options)) for c in space.choices))]
    assert len({space.space.key(g) for g in every}) == len(every)  # one encoding per genotype
    with torch.no_grad():
        total = sum(math.exp(float(policy.log_prob(g))) for g in every)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_the_policy_draws_only_cells_within_the_skip_cap():
    space = darts("s2", 2, 2, max_skip=0)
    policy = random_policy(space, seed=3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert_valid(policy.sample(generator), space)


def op_share(policy, space, op: str) -> float:
    with torch.no_grad():
        shares = [float(torch.softmax(v, -1)[c.options.index(op)]) for v, c in zip(policy.logits, space.choices)
                  if op in c.options]
    return sum(shares) / len(shares)


def test_reinforce_moves_the_policy_towards_a_toy_reward():
    space = darts("darts", 2, 2)
    learner = Learner(space, seed=0, lr=0.2, entropy_weight=0.0)
    assert op_share(learner.policy, space, "sep_conv_3x3") == pytest.approx(1 / 7)
    for _ in range(30):
        g = learner.propose()
        learner.learn(g, sum(op == "sep_conv_3x3" for op, _ in g.normal + g.reduce) / 8)
    assert op_share(learner.policy, space, "sep_conv_3x3") > 0.25  # from 1/7
    # one step on a positive advantage makes the rewarded cell likelier, on a negative one less likely
    for sign in (1.0, -1.0):
        learner = Learner(space, seed=1, lr=0.01)
        g = learner.propose()
        learner.learn(g, 0.0)  # the first reward only sets the baseline
        before = float(learner.policy.log_prob(g).detach())
        learner.learn(g, sign)
        assert (float(learner.policy.log_prob(g).detach()) - before) * sign > 0


def test_the_entropy_bonus_alone_flattens_a_peaked_policy():
    space = darts("darts", 2, 2)
    learner = Learner(space, seed=0, lr=0.05, entropy_weight=1.0)
    with torch.no_grad():
        learner.policy.logits[1][0] = 3.0
    before = float(learner.policy.entropy().detach())
    g = learner.propose()
    learner.learn(g, 1.0)
    learner.learn(g, 1.0)  # equal rewards: no advantage, only the bonus acts
    assert float(learner.policy.entropy().detach()) > before


# -- TPE ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("nodes", "k", "max_skip"), [(1, 1, 0), (2, 2, 1), (4, 2, None)])
def test_tpe_proposes_only_valid_cells(nodes, k, max_skip):
    space = darts("darts", nodes, k, max_skip)
    tpe = Tpe(TpeConfig(startup=3))
    tpe.begin(space, seed=0)
    for i in range(8):
        g = tpe.propose()
        assert_valid(g, space)
        tpe.observe(g, float(i % 3) if i != 4 else -math.inf)  # a failed evaluation is told as failed


def test_tpe_moves_towards_a_toy_reward_and_resumes_to_the_same_proposals():
    space = darts("darts", 4, 2)

    def reward(g: Genotype) -> float:  # the more sep_conv_3x3, the better
        return sum(op == "sep_conv_3x3" for op, _ in g.normal + g.reduce) / 16

    tpe = Tpe(TpeConfig(startup=10))
    tpe.begin(space, seed=1)
    proposed, scores = [], []
    for _ in range(40):
        proposed.append(tpe.propose())
        scores.append(reward(proposed[-1]))
        tpe.observe(proposed[-1], scores[-1])
    assert sum(scores[-10:]) / 10 > sum(scores[:10]) / 10 + 0.15  # random cells score 1/7 on average
    resumed = Tpe(TpeConfig(startup=10))  # from a checkpoint taken after 25 evaluations
    resumed.begin(space, seed=1)
    resumed.load_state_dict({"history": tpe.state_dict()["history"][:25]})
    for expected in proposed[25:28]:
        g = resumed.propose()
        assert g == expected
        resumed.observe(g, reward(g))


# -- end to end -------------------------------------------------------------------------------------------
TINY = [*TINY_SEARCH, "model.nodes=2", "log.images=false", "algorithm.budget.evaluations=8"]
CASES = {
    "evolution": ["algorithm=evolution", "algorithm.evaluator=zero_cost", "algorithm.population=3",
                  "algorithm.tournament=2"],
    "reinforce": ["algorithm=reinforce", "algorithm.evaluator=supernet", "algorithm.supernet.epochs=1",
                  "algorithm.supernet.calibration_batches=2"],
    "random_search": ["algorithm=random_search", "algorithm.evaluator=train", "algorithm.train.epochs=1",
                      "algorithm.train.eval_batches=2", "algorithm.budget.evaluations=4"],
    "tpe": ["algorithm=tpe", "algorithm.evaluator=zero_cost", "algorithm.startup=2"],
}


class Killed(Exception):
    """What a SIGKILL leaves behind: the run stops with only its last checkpoint on disk."""


invoke = partial(invoke_cli, "search")


def replay(summary):
    """What must be identical between an interrupted-and-resumed run and an uninterrupted one."""
    return [(e["genotype"], e["score"], e["images"], e["cached"]) for e in summary["evaluations"]]


@pytest.mark.parametrize("strategy", list(CASES))
def test_tiny_search_from_the_cli_then_killed_and_resumed_to_the_same_result(strategy, tmp_path, monkeypatch):
    args = [*TINY, *CASES[strategy]]
    assert invoke([*args, f"hydra.run.dir={tmp_path / 'reference'}"], monkeypatch) == 0
    summary = json.loads((tmp_path / "reference" / "summary.json").read_text())
    budget = int(next(a for a in reversed(args) if a.startswith("algorithm.budget.evaluations=")).split("=")[1])
    assert summary["evaluations_done"] == len(summary["evaluations"]) == len(summary["best_so_far"]) == budget
    assert summary["stop_reason"] == f"budget of {budget} evaluations spent"
    scores = [e["score"] for e in summary["evaluations"]]
    assert summary["best_so_far"] == [max(scores[:i + 1]) for i in range(budget)]
    assert all(e["seconds"] > 0 and e["images"] > 0 for e in summary["evaluations"] if not e["cached"])
    genotype = json.loads((tmp_path / "reference" / "genotype.json").read_text())
    assert {k: v for k, v in genotype.items() if k != "meta"} == summary["genotype"]
    assert genotype["meta"]["score"] == summary["best"]["score"] == max(scores)
    assert any(p.name.startswith("events") for p in (tmp_path / "reference" / "tb").iterdir())
    if strategy == "reinforce":
        assert summary["cost"]["setup_images"] > 0  # the supernet's training, apart from the evaluations

    kill_after = 3
    real_step, calls = DiscreteTask.step, {"n": 0}

    def dies_before_saving(self, index):
        result = real_step(self, index)
        calls["n"] += 1
        if calls["n"] == kill_after:  # scored, learnt from, but never checkpointed
            raise Killed
        return result

    monkeypatch.setattr(DiscreteTask, "step", dies_before_saving)
    with pytest.raises(Killed):
        run_search(compose_search(args), tmp_path / "run")
    monkeypatch.setattr(DiscreteTask, "step", real_step)
    assert not (tmp_path / "run" / "summary.json").exists()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert len(state["records"]) == kill_after - 1

    assert invoke([f"resume={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'elsewhere'}"], monkeypatch) == 0
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert replay(resumed) == replay(summary)
    assert resumed["genotype"] == summary["genotype"]
    if strategy == "reinforce":
        assert resumed["reinforce"] == summary["reinforce"]  # the policy continued, not restarted


def test_sigterm_stops_after_the_evaluation_in_progress_with_a_checkpoint(tmp_path):
    args = [*TINY, *CASES["evolution"], "algorithm.budget.evaluations=400", "threads=1",
            f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.search", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and f"resume={tmp_path / 'run'}" in lines[0], stderr
    state = torch.load(last, weights_only=True)
    assert 1 <= len(state["records"]) < 400 and state["stop_reason"] is None


BAD = [
    (["algorithm=evolution", "algorithm.population=4", "algorithm.tournament=5"], "algorithm.tournament=5"),
    (["algorithm=random_search", "algorithm.budget.evaluations=null"], "algorithm.budget needs"),
    (["algorithm=reinforce", "algorithm.evaluator=magic"], "algorithm.evaluator"),
    (["algorithm=reinforce", "algorithm.zero_cost.proxy=fisher"], "algorithm.zero_cost.proxy"),
    (["algorithm=evolution", "algorithm.budget.seconds=0"], "algorithm.budget.seconds"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[b[1] for b in BAD])
def test_bad_values_are_one_line_and_exit_2(args, fragment, tmp_path, monkeypatch, capsys):
    assert invoke([*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch) == 2
    assert fragment in one_error_line(capsys)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# -- the engine's loop: budgets, a finished run, scores that could not be computed ----------------------------
TABLE = ["space=nb201", "data=sample", "algorithm.evaluator=table", "log.progress=false", "log.images=false",
         "data.limit=64", "batch_size=8", "data.image_size=16", "model.layers=1"]


def test_a_wall_time_budget_ends_the_search_which_then_cannot_be_resumed(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = [*TABLE, "algorithm=evolution", "algorithm.budget.evaluations=null", "algorithm.budget.seconds=1",
            f"hydra.run.dir={run}"]
    assert invoke(args, monkeypatch) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "wall-time budget of 1 s spent" and summary["wall_time_s"] >= 1
    assert summary["steps"] == summary["evaluations_done"] == len(summary["evaluations"]) > 1
    assert json.loads((run / "genotype.json").read_text())["meta"]["evaluation"] == summary["best"]["evaluation"]
    capsys.readouterr()
    assert invoke([f"resume={run}"], monkeypatch) == 2
    assert "already ended (wall-time budget of 1 s spent)" in one_error_line(capsys)
    assert json.loads((run / "summary.json").read_text()) == summary


def test_a_score_that_cannot_be_computed_ranks_last_and_is_saved_as_null(tmp_path, monkeypatch):
    from nas.evaluate.base import Score
    from nas.evaluate.table import TableEvaluator

    real = TableEvaluator.score_one

    def fails_on_none(self, genotype):  # a scorer that cannot score a cell with a `none` edge
        return Score(math.nan, 0.0, 0) if "none" in genotype.to_text() else real(self, genotype)

    monkeypatch.setattr(TableEvaluator, "score_one", fails_on_none)
    run = tmp_path / "run"
    assert invoke([*TABLE, "algorithm=random_search", "algorithm.budget.evaluations=20", f"hydra.run.dir={run}"],
                  monkeypatch) == 0
    summary = json.loads((run / "summary.json").read_text())
    failed = [e for e in summary["evaluations"] if "none" in e["genotype"]["arch"]]
    assert failed and all(e["score"] is None for e in failed)
    assert "none" not in summary["best"]["genotype_text"] and summary["best"]["score"] > 0
    records = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["records"]
    assert [value for _, value, *_ in records] == [e["score"] for e in summary["evaluations"]]
