"""The validation suite (scripts/validation.py): planted data, recovery scoring, and both tasks end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas.cells.search_cell import edge_inputs
from nas.genotype import Genotype
from nas.ops import resolve_space
from nas.spaces.darts_derive import derive_genotype
from nas.spaces.darts_random import sample_genotype
from nas.validation.planted import PLANTED, make_planted_data
from nas.validation.recovery import chance_op_recovery, chance_recovery, op_recovery, recovery, recovery_curve

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validation.py"
DARTS = resolve_space("darts", None)


def test_planted_data_is_the_same_for_the_same_seed_and_differs_for_another(tmp_path):
    args = dict(image_size=8, channels=4, layers=3, limit=120)
    make_planted_data(tmp_path / "a", seed=5, **args)
    make_planted_data(tmp_path / "b", seed=5, **args)
    make_planted_data(tmp_path / "c", seed=6, **args)
    for split in ("train", "test"):
        a, b, c = (np.load(tmp_path / d / f"{split}.npz") for d in "abc")
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert len(np.unique(a["labels"])) == 4  # every class of the teacher is used
    assert not np.array_equal(np.load(tmp_path / "a" / "test.npz")["labels"], np.load(tmp_path / "c" / "test.npz")["labels"])


def planted_weights(genotype: Genotype, nodes: int = 4) -> dict[str, torch.Tensor]:
    """Op weights that put each planted (op, input) choice on top and everything else low."""
    edges = edge_inputs(nodes)
    weights = {}
    for kind in ("normal", "reduce"):
        w = torch.full((len(edges), len(DARTS)), 0.01)
        pairs = getattr(genotype, kind)
        for j in range(nodes):
            for op, src in pairs[2 * j: 2 * j + 2]:
                w[edges.index((j, src)), DARTS.index(op)] = 1.0
        weights[kind] = w
    return weights


def test_alphas_forced_to_the_planted_cell_recover_all_of_it():
    derived = derive_genotype(planted_weights(PLANTED), DARTS, nodes=4)
    assert recovery(derived, PLANTED) == 1.0


def test_random_cells_recover_what_chance_predicts():
    scores = [recovery(sample_genotype(DARTS, 4, 2, seed=s), PLANTED) for s in range(3000)]
    chance = chance_recovery(PLANTED, DARTS)
    standard_error = np.std(scores) / np.sqrt(len(scores))
    assert abs(np.mean(scores) - chance) < 4 * standard_error, (np.mean(scores), chance)


TINY = ["--seeds", "0", "--search-epochs", "1", "--search-images", "64", "--batch-size", "16", "--channels", "4",
        "--layers", "3", "--train-epochs", "1", "--train-images", "64", "--train-channels", "4", "--train-layers", "3",
        "--search-override", "max_steps_per_epoch=2", "--train-override", "max_steps_per_epoch=2"]


def run_suite(args: list[str], cwd: Path) -> dict:
    result = subprocess.run([sys.executable, str(SCRIPT), *args, *TINY], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((cwd / "out" / "table.json").read_text())
    assert json.loads(result.stdout) == table
    return table


S4 = resolve_space("s4", None)


def test_op_recovery_counts_the_edges_holding_a_right_op():
    cell = sample_genotype(S4, 4, 2, seed=3)
    right = sum(op == "sep_conv_3x3" for kind in ("normal", "reduce") for op, _ in getattr(cell, kind))
    assert op_recovery(cell, ["sep_conv_3x3"]) == right / 16
    assert chance_op_recovery(["sep_conv_3x3"], S4) == 0.5
    assert chance_op_recovery(["sep_conv_3x3"], DARTS) == 1 / 7  # none is never chosen
    scores = [op_recovery(sample_genotype(S4, 4, 2, seed=s), ["sep_conv_3x3"]) for s in range(2000)]
    assert abs(np.mean(scores) - 0.5) < 4 * np.std(scores) / np.sqrt(len(scores))


def test_the_recovery_curve_follows_the_best_cell_found_so_far():
    cells = [sample_genotype(DARTS, 4, 2, seed=s) for s in range(4)]
    records = [{"genotype": c.to_dict(), "score": v} for c, v in zip(cells, [0.1, None, 0.3, 0.3])]
    curve = recovery_curve(records, lambda g: recovery(g, cells[2]), at=[1, 2, 4, 10])
    assert curve == {1: recovery(cells[0], cells[2]), 2: recovery(cells[0], cells[2]), 4: 1.0}  # a tie keeps the first


def test_the_planted_suite_scores_one_shot_and_discrete_searches_in_parallel(tmp_path):
    table = run_suite(["planted", "--out", "out", "--algorithms", "darts_1st,random,random_search", "--check", "1",
                       "--limit", "200", "--jobs", "2", "--evaluations", "3",
                       "--discrete-override", "algorithm.supernet.eval_batches=1"], tmp_path)
    assert set(table["algorithms"]) == {"darts_1st", "random", "random_search"}
    for row in table["algorithms"].values():
        assert 0.0 <= row["recovery"]["mean"] <= 1.0 and row["recovery"]["n"] == 1
    assert set(table["algorithms"]["random_search"]["recovery_by_evaluations"]) == {"1", "2"}
    assert 0 < table["chance"] < 0.2 and table["jobs"] == 2
    check = table["construction_check"]
    assert 0.0 <= check["known_top1"]["mean"] <= 1.0 and check["random_top1"]["n"] == 1
    assert isinstance(check["passed"], bool)


def test_the_s4_suite_scores_the_share_of_right_ops(tmp_path):
    table = run_suite(["s4", "--out", "out", "--algorithms", "darts_1st", "--check", "1"], tmp_path)
    assert table["chance"] == 0.5 and 0.0 <= table["algorithms"]["darts_1st"]["recovery"]["mean"] <= 1.0
    known = json.loads((tmp_path / "out" / "known.json").read_text())
    assert {op for op, _ in known["normal"] + known["reduce"]} == {"sep_conv_3x3"}


def test_the_cifar_suite_retrains_searched_and_random_cells(tmp_path):
    generator = np.random.default_rng(0)
    for split, count in (("train", 20), ("test", 4)):
        for cls in ("cat", "dog"):
            folder = tmp_path / "jpg" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(generator.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    table = run_suite(["cifar", "--out", "out", "--root", str(tmp_path / "jpg"), "--algorithms", "darts_1st,random",
                       "--per-class", "16", "--test-per-class", "4"], tmp_path)
    assert set(table["algorithms"]) == {"darts_1st"}  # random is the column beside every algorithm
    assert table["random_top1"]["n"] == 1 and 0.0 <= table["algorithms"]["darts_1st"]["test_top1"]["mean"] <= 1.0
    with np.load(tmp_path / "out" / "data" / "train.npz") as data:
        assert data["images"].shape == (32, 3, 16, 16) and sorted(np.bincount(data["labels"])) == [16, 16]


def test_by_default_the_suite_validates_every_algorithm_a_user_can_name():
    import importlib.util

    spec = importlib.util.spec_from_file_location("validation_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    names = script.parse_args(["s4", "--out", "unused"]).algorithms
    assert {"darts_1st", "darts_2nd", "asap", "gdas", "drnas", "fairdarts", "random", "random_search", "evolution",
            "reinforce", "tpe"} <= set(names)
    assert "darts" not in names  # a registry name, not an algorithm= choice
    assert {a for a in names if script.is_discrete(a)} >= {"evolution", "random_search", "reinforce", "tpe"}
    assert not script.is_discrete("darts_1st") and not script.is_discrete("asap")
