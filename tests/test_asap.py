"""ASAP: schedules, the pruning rule, pruned ops that are never computed, and a whole tiny search."""

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.engine import Hook
from nas.ops import SPACES
from nas.search.algorithms.asap import ops_to_prune, temperature_at, threshold_at
from nas.search.supernet import Supernet
from nas.search.task import run_search

ASAP_FAST = ["algorithm=asap", "algorithm.t0=0.5", "algorithm.beta=0.01", "algorithm.threshold=0.3",
             "optim.alpha_lr=0.1", "epochs=3", "max_steps_per_epoch=3"]


def test_temperature_and_threshold_schedules():
    assert temperature_at(0, 1.6, 0.95) == 1.6
    assert math.isclose(temperature_at(10, 1.6, 0.95), 1.6 * 0.95**10)
    assert math.isclose(temperature_at(0.5, 2.0, 0.25), 1.0)  # half an epoch of a per-step schedule
    assert temperature_at(7, 1.3, 1.0) == 1.3
    assert threshold_at(5, 0.05, 1.0) == 0.05
    assert math.isclose(threshold_at(2, 0.05, 2.0), 0.2)
    assert threshold_at(100, 0.05, 2.0) < 1


def test_pruning_rule_on_hand_set_weights():
    weights = torch.tensor([[0.50, 0.30, 0.15, 0.05],
                            [0.25, 0.25, 0.25, 0.25],
                            [0.04, 0.03, 0.02, 0.01]])
    alive = torch.ones(3, 4, dtype=torch.bool)
    alive[0, 1] = False  # already pruned: never reported again
    pruned = ops_to_prune(weights, alive, threshold=0.2)
    assert pruned == [(0, 2), (0, 3), (2, 1), (2, 2), (2, 3)]  # edge 2 keeps its strongest op


def test_an_edge_never_empties():
    arch = Supernet(SPACES["darts"], channels=4, layers=3, nodes=2).arch
    for op in range(7):
        arch.prune("normal", 0, op)
    with pytest.raises(ValueError, match="last op"):
        arch.prune("normal", 0, 7)
    assert arch.alive_normal[0].tolist() == [False] * 7 + [True]


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_pruned_op_is_never_computed_and_gets_no_gradient():
    torch.manual_seed(0)
    model = Supernet(SPACES["darts"], channels=4, layers=1, nodes=2)  # one reduction cell
    edge = model.cells[0].edges[0]
    sep = SPACES["darts"].index("sep_conv_3x3")
    counter = Counting(edge.ops[sep])
    edge.ops[sep] = counter
    x = torch.randn(2, 3, 8, 8)
    model(x).sum().backward()
    assert counter.calls == 1
    model.zero_grad(set_to_none=True)
    model.arch.prune("reduce", 0, sep)
    model(x).sum().backward()
    assert counter.calls == 1, "a pruned op must not be computed"
    assert all(p.grad is None for p in counter.parameters())
    weights = model.arch.edge_weights()["reduce"]
    assert weights[0, sep] == 0 and torch.isclose(weights[0].sum(), torch.tensor(1.0))
    assert model.arch.alpha_reduce.grad[0].abs().sum() > 0, "the remaining alphas of the edge keep learning"


def test_tiny_asap_search_ends_with_one_op_per_edge(tmp_path, tiny_search_config):
    cfg = tiny_search_config(*ASAP_FAST)
    summary = run_search(cfg, tmp_path)
    asap = json.loads((tmp_path / "summary.json").read_text())["asap"]
    assert asap["stopped_early"] and summary["stop_reason"] == "one op per edge"
    assert asap["prune_events"] and {"step", "epoch", "cell", "edge", "op", "weight"} <= set(asap["prune_events"][0])
    assert len(asap["prune_events"]) == 2 * 14 * 7
    assert asap["ops_alive_history"][-1]["total"] == 28
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["arch.alive_normal"].sum(-1).tolist() == [1] * 14
    assert state["hooks"]["algorithm"]["t"] > 0
    meta = json.loads((tmp_path / "genotype.json").read_text())["meta"]
    assert meta["algorithm"] == "asap" and len(meta["alive"]["reduce"]) == 14
    tags = EventAccumulator(str(tmp_path / "tb")).Reload().Tags()
    for tag in ("asap/temperature", "asap/ops_alive", "asap/ops_alive/normal", "asap/ops_alive/reduce"):
        assert tag in tags["scalars"]
    assert any(t.startswith("asap/prune") for t in tags["tensors"])


def test_asap_resume_keeps_ops_pruned_and_its_schedule(tmp_path, tiny_search_config):
    gentle = [*ASAP_FAST, "algorithm.threshold=0.1", "epochs=1", "log.images=false"]  # prunes some ops, not all
    run_search(tiny_search_config(*gentle), tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    alive = saved["model"]["arch.alive_normal"]
    assert not alive.all() and not (alive.sum(-1) == 1).all()  # epoch 1 pruned some ops, not all
    seen = {}

    class Spy(Hook):
        def before_step(self, engine):
            if not seen:
                algorithm = engine.task.algorithm
                seen.update(alive=engine.task.model.arch.alive_normal.clone(), t=algorithm.t,
                            temperature=float(engine.task.model.arch.rule.temperature), expected=algorithm.temperature)

    (tmp_path / "summary.json").unlink()  # pretend the run was stopped after its first epoch
    run_search(tiny_search_config(*gentle, f"resume={tmp_path}"), tmp_path, hooks=[Spy()], changed={"epochs": 2})
    assert torch.equal(seen["alive"], saved["model"]["arch.alive_normal"])
    assert seen["t"] == saved["hooks"]["algorithm"]["t"]
    assert math.isclose(seen["temperature"], seen["expected"], rel_tol=1e-6)

