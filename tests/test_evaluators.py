"""The evaluators behind discrete search and nas-rank: one interface, scores that are a function of the
genotype alone (so a cache and a resumed search are exact), honest costs, the supernet trained on one
path at a time, and the zero-cost evaluator equal to the proxy it wraps."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from conftest import darts_sampler
from nas.config import DataConfig
from nas.errors import ConfigError, GenotypeError
from nas.evaluate.base import Score, Workbench, build_workbench, genotype_key
from nas.evaluate.config import SupernetEvaluatorConfig, TrainEvaluatorConfig, ZeroCostEvaluatorConfig
from nas.evaluate.factory import make_evaluator
from nas.evaluate.supernet import path_of
from nas.evaluate.zero_cost import proxy_score
from nas.genotype import Genotype
from nas.ops import SPACES
from nas.search.config import SpaceConfig, SupernetConfig
from nas.spaces.darts import canonical

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**kw) -> SimpleNamespace:
    return SimpleNamespace(train=TrainEvaluatorConfig(epochs=1), supernet=SupernetEvaluatorConfig(epochs=1),
                           zero_cost=ZeroCostEvaluatorConfig(), **kw)


@pytest.fixture(scope="module")
def bench() -> Workbench:
    cfg = SimpleNamespace(data=DataConfig(name="sample", limit=48, image_size=16), space=SpaceConfig(),
                          model=SupernetConfig(channels=4, layers=3, nodes=2), batch_size=8, seed=0,
                          channels_last=False, max_steps_per_epoch=2)
    return build_workbench(cfg, torch.device("cpu"))


@pytest.fixture(scope="module")
def cells(bench) -> list[Genotype]:
    space, rng = darts_sampler(bench.op_names, bench.model.nodes, 2), random.Random(0)
    return [space.sample(rng) for _ in range(3)]


@pytest.fixture(scope="module")
def supernet(bench):
    evaluator = make_evaluator("supernet", settings(), bench, k=2, max_skip=None)
    evaluator.prepare()
    return evaluator


@pytest.mark.parametrize("name", ["train", "supernet", "zero_cost", "synflow"])
def test_one_interface_scores_depend_on_the_genotype_alone(name, bench, cells, supernet):
    evaluator = supernet if name == "supernet" else make_evaluator(name, settings(), bench, k=2, max_skip=None)
    rng_before = torch.random.get_rng_state()
    first = evaluator.score(cells)
    again = evaluator.score(list(reversed(cells)))[::-1]
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # a search's own random streams are untouched
    assert len(first) == len(cells) and all(isinstance(s, Score) for s in first)
    assert [s.value for s in first] == [s.value for s in again]
    assert all(s.seconds > 0 and s.images > 0 for s in first)
    if evaluator.measures_accuracy:
        assert all(0.0 <= s.value <= 1.0 for s in first)
    if name == "train":  # 1 epoch of 2 steps of 8 images, then the 24 held-out images
        assert first[0].images == 2 * 8 + 24


def test_the_zero_cost_evaluator_is_the_proxy_of_the_network_train_would_start_from(bench, cells):
    evaluator = make_evaluator("zero_cost", settings(), bench, k=2, max_skip=None)
    assert evaluator.name == ZeroCostEvaluatorConfig().proxy == "naswot"
    batch = next(bench.data.train.batches(0))
    expected = proxy_score("naswot", bench.network(cells[0]), batch)
    assert evaluator.score_one(cells[0]).value == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ConfigError, match="unknown evaluator"):
        make_evaluator("magic", settings(), bench, k=2, max_skip=None)


def test_a_score_that_cannot_be_computed_ranks_last():
    assert Score(math.nan, 0.1, 1).rank_value == -math.inf
    assert Score(0.5, 0.1, 1).rank_value == 0.5


def test_a_path_keeps_exactly_the_genotypes_edges_and_ops(bench, cells):
    weights, active = path_of(cells[0], bench)
    for kind in ("normal", "reduce"):
        pairs = getattr(cells[0], kind)
        assert float(weights[kind].sum()) == len(pairs)  # one op of weight 1 per kept (edge, op)
        assert sum(len(ops) for ops in active[kind]) == len(pairs)
        assert sorted(bench.op_names[i] for ops in active[kind] for i in ops) == sorted(op for op, _ in pairs)
    with pytest.raises(GenotypeError, match="nodes"):
        bench.space.path_of(cells[0], SimpleNamespace(nodes=bench.model.nodes + 1))
    odd = Genotype([("conv_9x9", 0), ("skip_connect", 1)] * 2, [2, 3], cells[0].reduce, [2, 3])
    with pytest.raises(GenotypeError, match="not in the searched space"):
        path_of(odd, bench)


def test_the_supernet_trains_only_the_sampled_path(bench, cells, supernet):
    model = supernet.model
    model.zero_grad(set_to_none=True)
    x, y = next(bench.data.train.batches(0))
    torch.nn.functional.cross_entropy(model(x, *path_of(cells[0], bench)), y).backward()
    _, active = path_of(cells[0], bench)
    for cell in model.cells:
        kind = "reduce" if cell.reduction else "normal"
        for e, edge in enumerate(cell.edges):
            for o, op in enumerate(edge.ops):
                grads = [p.grad for p in op.parameters()]
                if grads and o not in active[kind][e]:
                    assert all(g is None for g in grads), f"{kind} edge {e} op {o} was computed off the path"
    model.zero_grad(set_to_none=True)


def test_the_trained_supernet_is_its_state(bench, cells, supernet):
    assert supernet.ready and supernet.setup.seconds > 0 and supernet.setup.images == 2 * 8
    fresh = make_evaluator("supernet", settings(), bench, k=2, max_skip=None)
    assert not fresh.ready and fresh.state_dict() == {"ready": False}
    fresh.load_state_dict(supernet.state_dict())
    assert fresh.ready and fresh.setup == supernet.setup
    assert [s.value for s in fresh.score(cells)] == [s.value for s in supernet.score(cells)]
    with pytest.raises(RuntimeError, match="prepared"):
        make_evaluator("supernet", settings(), bench, k=2, max_skip=None).score(cells)


def test_a_node_lists_its_inputs_in_any_order_and_is_the_same_cell(cells):
    g = cells[0]
    swapped = Genotype([g.normal[1], g.normal[0], *g.normal[2:]], g.normal_concat, g.reduce, g.reduce_concat)
    assert genotype_key(swapped) == genotype_key(g) and canonical(swapped) == canonical(g)


def test_stochastic_ops_do_not_tie_a_score_to_the_global_rng(bench):
    space = darts_sampler(SPACES["s4"], bench.model.nodes, 2)  # R-DARTS' noise op draws in training mode
    rng = random.Random(0)
    genotype = next(g for g in (space.sample(rng) for _ in range(20)) if any(op == "noise" for op, _ in g.normal))
    evaluator = make_evaluator("snip", settings(), bench, k=2, max_skip=None)
    values = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        values.append(evaluator.score_one(genotype).value)
    assert values[0] == values[1]
