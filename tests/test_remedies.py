"""Collapse remedies and diagnostics: each switch checked on hand-set numbers, then end to end."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.cells import MixedEdge, channel_shuffle, edge_inputs
from nas.ops import SPACES
from nas.search.bilevel import Bilevel
from nas.search.perturbation import select_by_perturbation
from nas.search.remedies import aux_skip_coefficient
from nas.search.task import run_search
from nas.spaces.darts_derive import derive_cell
from nas.spaces.darts_supernet import Supernet, darts_architecture
from nas.spaces.weighting import uniform_noise

S3 = SPACES["s3"]  # none, skip_connect, sep_conv_3x3


# --- P-DARTS skip cap -------------------------------------------------------------------------
def skip_heavy_weights(nodes: int = 4) -> torch.Tensor:
    """Skip is the strongest op on every edge, sep_conv second; edge e's strengths grow with e."""
    rows = []
    for e in range(len(edge_inputs(nodes))):
        rows.append([0.0, 0.6 + 0.01 * e, 0.3 + 0.01 * e])
    return torch.tensor(rows)


def test_skip_cap_keeps_the_strongest_skips_and_falls_back_to_the_next_op():
    weights = skip_heavy_weights()
    uncapped = derive_cell(weights, S3, nodes=4)
    assert [op for op, _ in uncapped].count("skip_connect") == 8
    capped = derive_cell(weights, S3, nodes=4, max_skip=2)
    ops = [op for op, _ in capped]
    assert ops.count("skip_connect") == 2 and ops.count("sep_conv_3x3") == 6
    # The two surviving skips are the two strongest ones: the last node's edges (largest indices).
    skips = [pair for pair in capped[-2:]]
    assert all(op == "skip_connect" for op, _ in skips)
    assert derive_cell(weights, S3, nodes=4, max_skip=0) == [("sep_conv_3x3", src) for _, src in uncapped]


def test_edge_scales_decide_which_edges_a_node_keeps():
    weights = torch.tensor([[0.0, 0.0, 1.0]] * 5)  # nodes=2: edges (0,0) (0,1) (1,0) (1,1) (1,2)
    scales = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.5])
    pairs = derive_cell(weights, S3, nodes=2, k=1, edge_scales=scales)
    assert pairs == [("sep_conv_3x3", 0), ("sep_conv_3x3", 2)]


# --- PC-DARTS partial channels and edge normalisation --------------------------------------------
def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_shape_parameters_and_bypass(stride):
    full = MixedEdge(S3, channels=8, stride=stride)
    partial = MixedEdge(S3, channels=8, stride=stride, partial_channels=4)
    quarter = MixedEdge(S3, channels=2, stride=stride)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(partial) == count(quarter) < count(full)
    x = torch.randn(2, 8, 9, 9)
    weights = torch.tensor([0.2, 0.3, 0.5])
    assert partial(x, weights).shape == full(x, weights).shape
    # With only the zero op alive, the processed quarter is 0 and the bypass shows up shuffled.
    out = partial(x, weights, alive=[0])
    rest = x[:, 2:] if stride == 1 else torch.nn.functional.max_pool2d(x[:, 2:], 2, 2, ceil_mode=True)
    expected = channel_shuffle(torch.cat([torch.zeros_like(rest[:, :2]), rest], 1), 4)
    torch.testing.assert_close(out, expected)


def test_edge_normalisation_is_a_softmax_over_each_nodes_edges():
    arch = darts_architecture(S3, nodes=3, edge_norm=True)
    with torch.no_grad():
        arch.beta_normal.copy_(torch.arange(9.0))
    scales = arch.edge_scales()["normal"]
    for node, size in enumerate([2, 3, 4]):
        start = sum([2, 3, 4][:node])
        part = scales[start:start + size]
        assert part.sum().item() == pytest.approx(1.0)
        torch.testing.assert_close(part, torch.softmax(torch.arange(start, start + size, dtype=torch.float), 0))
    assert darts_architecture(S3, nodes=3).edge_scales() is None


# --- DARTS- auxiliary skip, SDARTS-RS perturbation ---------------------------------------------------
def test_aux_skip_coefficient_decays_linearly_from_one_to_zero():
    assert [aux_skip_coefficient(s, 5) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    edge = MixedEdge(S3, channels=4, stride=1)
    x, w = torch.randn(2, 4, 6, 6), torch.tensor([0.2, 0.3, 0.5])
    torch.testing.assert_close(edge(x, w, aux_skip=0.5), edge(x, w) + 0.5 * x)
    reducing = MixedEdge(S3, channels=4, stride=2)
    torch.testing.assert_close(reducing(x, w, aux_skip=0.5), reducing(x, w))  # no identity at stride 2


def test_perturbed_alphas_stay_within_epsilon_and_leave_the_alphas_alone():
    alphas = {"normal": torch.zeros(14, 3, requires_grad=True)}
    noisy = uniform_noise(alphas, 0.1, torch.Generator().manual_seed(0))
    assert 0 < noisy["normal"].abs().max() <= 0.1 and not noisy["normal"].requires_grad
    assert not alphas["normal"].any()


def test_perturbation_acts_in_the_weight_step_only(monkeypatch):
    torch.manual_seed(0)
    model = Supernet(S3, channels=4, layers=3, nodes=2)
    bilevel = Bilevel(model, torch.optim.SGD(model.weights(), lr=0.1), torch.optim.Adam(model.alphas()), 5.0,
                      perturb=lambda alphas: uniform_noise(alphas, 0.5))
    seen = []
    real = Supernet.forward
    monkeypatch.setattr(Supernet, "forward", lambda self, x, w=None, *a, **k: seen.append(w) or real(self, x, w, *a, **k))
    before = {k: v.detach().clone() for k, v in model.arch.alphas().items()}
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    bilevel.weight_step(batch)
    for kind, alpha in model.arch.alphas().items():
        assert torch.equal(alpha, before[kind])  # the weight step never moves the alphas
    clean = model.arch.edge_weights(before)
    assert all(not torch.allclose(seen[0][k], clean[k]) for k in clean)  # but it saw perturbed ones
    seen.clear()
    bilevel.alpha_step(batch, batch)
    assert seen == [None]  # the alpha step weighs the ops with the clean rule


# --- DARTS-PT selection --------------------------------------------------------------------------
def test_perturbation_selection_follows_measured_contributions_not_alphas():
    nodes = 2
    arch = darts_architecture(S3, nodes=nodes, init_std=0.0)
    with torch.no_grad():  # the alphas prefer skip everywhere
        for alpha in arch.alphas().values():
            alpha[:, 1] = 3.0
    # Ground truth of the stub supernet: on even edges sep_conv matters, on odd ones skip does;
    # edges matter in proportion to their index.
    important = {e: (2 if e % 2 == 0 else 1) for e in range(5)}

    def accuracy(weights):
        acc = 1.0
        for kind in ("normal", "reduce"):
            for e, op in important.items():
                if weights[kind][e, op] == 0:
                    acc -= 0.1 * (e + 1)
        return acc

    tunes = []
    genotype = select_by_perturbation(arch, accuracy, lambda: tunes.append(1), nodes=nodes, k=1, seed=0)
    assert len(tunes) == 10  # one fine-tuning after each of the 2 × 5 edge decisions
    names = {2: "sep_conv_3x3", 1: "skip_connect"}
    # Node 0 keeps edge 1 (input 1), node 1 keeps edge 4 (input 2): the costliest to remove.
    expected = [(names[important[1]], 1), (names[important[4]], 2)]
    assert genotype.normal == expected and genotype.reduce == expected
    assert arch.ops_alive() == {"normal": 5, "reduce": 5}  # every edge was discretised


# --- end to end --------------------------------------------------------------------------------
SWITCHES = [
    ["derive.max_skip=0"],
    ["algorithm.partial_channels=2"],
    ["algorithm.partial_channels=2", "algorithm.edge_norm=false"],
    ["algorithm.perturb=uniform"],
    ["algorithm.aux_skip=true"],
    ["derive.method=perturbation", "derive.tune_epochs=1"],
    ["algorithm=asap", "algorithm.partial_channels=2", "algorithm.aux_skip=true"],
    ["space=s4"],
    ["space=s2", "algorithm=darts_2nd"],
]


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: " ".join(o))
def test_each_switch_runs_end_to_end(tmp_path, tiny_search_config, overrides):
    summary = run_search(tiny_search_config("space=s3", "log.images=false", *overrides), tmp_path)
    genotype = json.loads((tmp_path / "genotype.json").read_text())
    assert summary["genotype"] == {k: v for k, v in genotype.items() if k != "meta"}
    assert all(op != "none" for op, _ in genotype["normal"] + genotype["reduce"])
    if "derive.max_skip=0" in overrides:
        assert all(op != "skip_connect" for op, _ in genotype["normal"])
    assert len(summary["diagnostics"]) == summary["epochs"]


def test_diagnostics_reach_tensorboard_and_summary(tmp_path, tiny_search_config):
    summary = run_search(tiny_search_config("space=s3", "log.images=false", "diagnostics.hessian_every=2",
                                            "diagnostics.hessian_iters=3"), tmp_path)
    first, second = summary["diagnostics"]
    assert "hessian/eig_max" not in first and "hessian/eig_max" in second  # every 2nd epoch
    genotype = json.loads((tmp_path / "genotype.json").read_text())
    free = sum(op in ("skip_connect",) for op, _ in genotype["normal"])
    assert second["collapse/param_free/normal"] == free
    assert 0 < second["alpha/entropy/normal"] <= torch.log(torch.tensor(3.0)).item() + 1e-6
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    for tag in ("collapse/param_free/normal", "collapse/param_free/reduce", "alpha/entropy/normal",
                "alpha/entropy/reduce", "hessian/eig_max"):
        assert tag in events.Tags()["scalars"]


def test_early_stop_rules_end_the_search_with_a_reason(tmp_path, tiny_search_config):
    summary = run_search(tiny_search_config("space=s3", "epochs=3", "log.images=false",
                                            "algorithm.early_stop.max_skip=0"), tmp_path / "skips")
    assert summary["epochs"] == 1 and "skip_connect" in summary["stop_reason"]
    summary = run_search(tiny_search_config("space=s3", "epochs=4", "log.images=false", "optim.alpha_lr=1e-9",
                                            "algorithm.early_stop.stable_epochs=1"), tmp_path / "stable")
    assert summary["epochs"] == 2 and "not changed for 1 epochs" in summary["stop_reason"]
    assert json.loads((tmp_path / "stable" / "summary.json").read_text())["stop_reason"] == summary["stop_reason"]


def test_random_baseline_is_seeded_valid_and_written_like_a_search(tmp_path, tiny_search_config):
    first = run_search(tiny_search_config("algorithm=random", "seed=3"), tmp_path / "a")
    again = run_search(tiny_search_config("algorithm=random", "seed=3"), tmp_path / "b")
    other = run_search(tiny_search_config("algorithm=random", "seed=4"), tmp_path / "c")
    assert first["genotype"] == again["genotype"] != other["genotype"]
    for name in ("genotype.json", "summary.json"):
        assert (tmp_path / "a" / name).is_file()
    meta = json.loads((tmp_path / "a" / "genotype.json").read_text())["meta"]
    assert meta["algorithm"] == "random" and meta["seed"] == 3
    assert first["stop_reason"] == "random sample" and first["final_val_acc"] is None
    assert list((tmp_path / "a" / "tb").iterdir())
