"""NAS-Bench-201 as a space: the benchmark's sizes, its genotype text, derivation, the choices the
discrete strategies move in, the table of known answers and the closed form of random search."""

from __future__ import annotations

import gzip
import json
import random
from itertools import product
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import invoke_cli, one_error_line
from nas.errors import DataError, GenotypeError
from nas.spaces import Rules, Sampler, make_space
from nas.spaces.nb201 import Cell201, parse_cell
from nas.spaces.table import load_table

SPACE = make_space(SimpleNamespace(name="nb201", ops=None, table="cifar10", table_dataset="cifar10"))
BENCHMARK = SimpleNamespace(channels=16, layers=5, nodes=3, stem_multiplier=1, name="nb201", auxiliary=False)
TINY = SimpleNamespace(channels=4, layers=1, nodes=3, stem_multiplier=1, name="nb201", auxiliary=False)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_benchmark_sizes():
    assert count(SPACE.build_network(Cell201(("nor_conv_3x3",) * 6), BENCHMARK, 10)) == 1_531_546
    assert count(SPACE.build_network(Cell201(("skip_connect",) * 6), BENCHMARK, 10)) == 73_306
    supernet = SPACE.build_supernet(BENCHMARK, 10, 3)
    assert sum(p.numel() for p in supernet.weights()) == 1_692_826
    assert [tuple(a.shape) for a in supernet.alphas()] == [(6, 5)]


def test_the_supernet_trains_and_the_network_runs():
    torch.manual_seed(0)
    supernet = SPACE.build_supernet(TINY, 10, 3)
    loss = torch.nn.functional.cross_entropy(supernet(torch.randn(2, 3, 8, 8)), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(supernet.arch.alpha_cell.grad).all() and supernet.arch.alpha_cell.grad.abs().sum() > 0
    logits, aux = SPACE.build_network(parse_cell(BEST, OPS), TINY, 10)(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10) and aux is None


def test_genotype_text_and_json_round_trip(tmp_path):
    cell = parse_cell(BEST, OPS)
    assert cell.to_text() == BEST
    assert cell.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1")
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps({**cell.to_dict(), "meta": {"space_name": "nb201"}}))
    assert SPACE.load(str(tmp_path)) == cell and SPACE.from_dict(cell.to_dict()) == cell
    (tmp_path / "cell.txt").write_text(BEST + "\n")
    assert SPACE.load(str(tmp_path / "cell.txt")) == cell


@pytest.mark.parametrize("text", ["|nor_conv_3x3~0|+|nor_conv_3x3~0|", "|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                  "__import__('os')", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_malformed_cell_text_is_refused(text):
    with pytest.raises(GenotypeError):
        SPACE.load(text if text.startswith("|") else "|" + text)


def test_derivation_keeps_every_edge_takes_the_argmax_and_allows_none():
    weights = torch.full((6, 5), 0.1)
    for e, op in enumerate([0, 3, 1, 2, 1, 4]):
        weights[e, op] = 0.5
    weights[4, 1], weights[4, 3] = 0.48, 0.45  # edge 3←1: a weaker skip, then nor_conv_3x3
    cell = SPACE.derive({"cell": weights}, TINY, Rules())
    assert cell.ops == ("none", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "skip_connect", "avg_pool_3x3")
    capped = SPACE.derive({"cell": weights}, TINY, Rules(max_skip=1))
    assert capped.ops[2] == "skip_connect" and capped.ops[4] == "nor_conv_3x3"  # the weaker skip gives way


@pytest.mark.parametrize("name", ["nb201", "darts", "s3"])
def test_sample_and_mutate_stay_inside_the_space(name):
    space = make_space(SimpleNamespace(name=name, ops=None, table=None, table_dataset=None))
    model = TINY if name == "nb201" else SimpleNamespace(nodes=3)
    sampler, rng = Sampler(space, model, Rules(k=2, max_skip=1)), random.Random(0)
    for _ in range(30):
        genotype = sampler.sample(rng)
        assert sampler.valid(genotype) and space.identity_count(genotype) <= 1
        values = sampler.encode(genotype)
        assert space.key(sampler.decode(values)) == space.key(genotype)
        child = sampler.mutate(genotype, rng)
        assert sampler.valid(child)
        changed = [a != b for a, b in zip(values, sampler.encode(child))]
        assert sum(changed) == 1
        if name != "nb201":
            assert "none" not in [op for ops in space.ops_of(child).values() for op in ops]


def write_table(path, rows):
    text = "arch,val_acc,test_acc\n" + "".join(f"{a},{v},{t}\n" for a, v, t in rows)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    load_table.cache_clear()
    return str(path)


def all_cells(ops):
    return [Cell201(c).to_text() for c in product(ops, repeat=6)]


def test_expected_random_search_matches_a_brute_force_simulation(tmp_path):
    rng = np.random.default_rng(0)
    archs = all_cells(("none", "nor_conv_3x3"))  # 64 cells
    val = rng.integers(0, 8, len(archs)).astype(float) * 10  # many ties
    test = rng.uniform(40, 95, len(archs))
    table = load_table(write_table(tmp_path / "t.csv", zip(archs, val, test)))
    for n in (1, 3, 10):
        draws = rng.integers(0, len(archs), size=(200_000, n))
        best_val = val[draws].max(axis=1, keepdims=True)
        tied = val[draws] == best_val  # a tie between the best draws: each equally likely
        simulated = ((test[draws] * tied).sum(1) / tied.sum(1)).mean()
        assert table.expected_random_search(n) == pytest.approx(simulated, abs=0.05)
    assert table.expected_random_search(1) == pytest.approx(test.mean())
    assert table.optimum == pytest.approx(test[val == val.max()].mean())


def test_the_shipped_table_holds_the_published_facts():
    table = load_table("cifar10")
    assert len(table) == 15_625
    assert table.optimum == pytest.approx(94.37, abs=0.01) and table.mean_test == pytest.approx(87.06, abs=0.01)
    assert table.lookup(Cell201(("skip_connect",) * 6).to_text()).test_acc == pytest.approx(54.30, abs=0.01)
    assert table.lookup(BEST).rank == 1


@pytest.mark.parametrize("body, message", [("arch,acc\nx,1\n", "header"), ("arch,val_acc,test_acc\nx,abc,1\n", "line 2"),
                                            ("arch,val_acc,test_acc\nx,120,1\n", "percentages"),
                                            ("arch,val_acc,test_acc\n", "no cells")])
def test_a_bad_table_is_one_line(tmp_path, body, message):
    (tmp_path / "bad.csv").write_text(body)
    load_table.cache_clear()
    with pytest.raises(DataError, match=message) as info:
        load_table(str(tmp_path / "bad.csv"))
    assert "\n" not in str(info.value)


SEARCH = ["space=nb201", "data=sample", "algorithm.evaluator=table", "algorithm.budget.evaluations=40",
          "log.progress=false", "log.images=false", "data.limit=64", "batch_size=8", "data.image_size=16"]


@pytest.mark.parametrize("algorithm", ["random_search", "evolution", "reinforce", "tpe"])
def test_a_search_never_reads_the_test_accuracy(tmp_path, monkeypatch, algorithm):
    """Two tables with the same val_acc and scrambled test_acc: every strategy makes the same choices."""
    archs = all_cells(("none", "skip_connect", "nor_conv_3x3"))  # 729 cells
    rng = np.random.default_rng(1)
    val = rng.uniform(10, 90, len(archs)).round(3)
    found = []
    for variant in range(2):
        test = rng.permutation(np.linspace(10, 95, len(archs))).round(3)
        table = write_table(tmp_path / f"t{variant}.csv", zip(archs, val, test))
        run = tmp_path / f"run{variant}"
        args = [*SEARCH, f"algorithm={algorithm}", f"space.table={table}", f"hydra.run.dir={run}",
                "space.ops=[none,skip_connect,nor_conv_3x3]"]
        assert invoke_cli("search", args, monkeypatch) == 0
        summary = json.loads((run / "summary.json").read_text())
        found.append(([e["genotype"]["arch"] for e in summary["evaluations"]], summary["best"]))
        assert summary["benchmark"]["test_acc"] == pytest.approx(float(test[archs.index(summary["best"]["genotype_text"])]))
    assert found[0] == found[1]


def test_nas_train_profiles_a_cell_given_as_benchmark_text(tmp_path, monkeypatch, capsys):
    args = ["space=nb201", "profile_only=true", f"genotype='{BEST}'", f"hydra.run.dir={tmp_path}"]
    assert invoke_cli("train", args, monkeypatch) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["benchmark"]["rank"] == 1 and summary["model"] == "nb201"
    assert "params 1,073,466" in capsys.readouterr().out
    assert invoke_cli("train", ["space=nb201", "profile_only=true", "genotype=DARTS_V2",
                                f"hydra.run.dir={tmp_path / 'x'}"], monkeypatch) == 2
    assert "NAS-Bench-201 cell" in one_error_line(capsys)


def test_nb201_quick_prints_the_derived_cell_with_its_known_answer(tmp_path, monkeypatch, capsys):
    args = ["+experiment=nb201_quick", "epochs=1", "max_steps_per_epoch=2", "data.limit=64", "batch_size=8",
            "model.channels=4", "log.progress=false", f"hydra.run.dir={tmp_path}"]
    assert invoke_cli("search", args, monkeypatch) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    parse_cell(summary["genotype_text"], OPS)
    assert f"derived genotype: {summary['genotype_text']}" in out
    assert f"rank {summary['benchmark']['rank']:,} of 15,625" in out
    meta = json.loads((tmp_path / "genotype.json").read_text())["meta"]
    assert meta["space_name"] == "nb201" and np.array(meta["alphas"]["cell"]).shape == (6, 5)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert "genotype/cell" in events.Tags()["images"] and "alpha/cell" in events.Tags()["images"]
    assert "benchmark/test_acc" in events.Tags()["scalars"]
