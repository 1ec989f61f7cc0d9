"""ASAP: schedules, the pruning rule, pruned ops that are never computed, and a whole tiny search."""

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.engine import Hook
from nas.ops import SPACES
from nas.search.algorithms.asap import Asap, AsapConfig, ops_to_prune, temperature_at, threshold_at
from nas.search.task import run_search
from nas.spaces.calibration import recalibrate_batchnorm
from nas.spaces.darts_supernet import Supernet

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



def test_recalibrated_batchnorm_describes_the_pruned_supernet():
    torch.manual_seed(0)
    model = Supernet(SPACES["darts"], channels=8, layers=3, nodes=2, alpha_init_std=0.0)
    x = torch.randn(32, 3, 16, 16)
    with torch.no_grad():  # running statistics of the whole supernet, as training leaves them
        for _ in range(5):
            model(x + 0.1 * torch.randn_like(x))
    for kind, mask in model.arch.alive().items():  # half the ops of every edge go
        for edge in range(mask.shape[0]):
            for op in range(4):
                model.arch.prune(kind, edge, op)
    with torch.no_grad():
        train_mode = model.train()(x)
        stale = model.eval()(x)
    assert recalibrate_batchnorm(model, [(x, None)], limit=20) == 1
    with torch.no_grad():
        fresh = model.eval()(x)
    assert not model.training
    scale = train_mode.abs().max()
    fresh_error, stale_error = (fresh - train_mode).abs().max(), (stale - train_mode).abs().max()
    assert fresh_error < 0.02 * scale, (fresh_error, scale)  # unbiased vs biased variance is all that is left
    assert stale_error > 10 * fresh_error


def test_the_schedule_spans_the_run_unless_beta_is_given():
    spans = Asap(AsapConfig(t0=1.6, t_end=0.12))
    assert math.isclose(spans.decay(epochs=4), (0.12 / 1.6) ** 0.25)
    assert math.isclose(temperature_at(4, 1.6, spans.decay(epochs=4)), 0.12)
    assert math.isclose(spans.decay(epochs=50), 0.9495, abs_tol=1e-4)  # the paper's β≈0.95 over 50 epochs
    assert Asap(AsapConfig(beta=0.9)).decay(epochs=4) == 0.9


def test_asap_recalibrates_after_the_epochs_that_pruned(tmp_path, tiny_search_config):
    summary = run_search(tiny_search_config(*ASAP_FAST, "algorithm.threshold=0.1", "epochs=2",
                                            "algorithm.recalibrate_batches=2"), tmp_path)
    calibrations = summary["asap"]["calibrations"]
    assert calibrations and all(c["batches"] == 2 for c in calibrations)
    pruned_epochs = {e["epoch"] for e in summary["asap"]["prune_events"]}
    assert {c["epoch"] for c in calibrations} == {e + 1 for e in pruned_epochs}  # after each epoch that pruned
