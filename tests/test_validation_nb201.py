"""The NAS-Bench-201 validation suite: the in-process strategies are the command's, and the table holds
what the docs print (best-by-val test accuracy per budget, the closed form beside random search)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import invoke_cli
from nas.validation.nb201 import best_so_far, tabular_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("strategy", ["evolution", "tpe"])
def test_a_driven_strategy_makes_the_commands_choices(strategy, tmp_path, monkeypatch):
    args = ["space=nb201", "data=sample", "data.limit=64", "batch_size=8", "log.progress=false", "log.images=false",
            f"algorithm={strategy}", "algorithm.evaluator=table", "algorithm.budget.evaluations=25", "seed=3",
            f"hydra.run.dir={tmp_path}"]
    assert invoke_cli("search", args, monkeypatch) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    best = [e["genotype"]["arch"] for e in summary["evaluations"]]
    curve = best_so_far(strategy, 3, 25, "cifar10")
    assert curve[-1] == summary["best"]["genotype_text"]
    assert curve[0] == best[0]


def test_the_tabular_table_and_its_harness_check():
    table = tabular_table("cifar10", ["random_search", "evolution"], range(4), [5, 20])
    rs = table["strategies"]["random_search"]
    assert set(rs) == {"5", "20"} and rs["5"]["n"] == 4
    assert table["optimum_test_acc"] == pytest.approx(94.373, abs=1e-3)
    assert table["random_search_expected"]["5"] < table["random_search_expected"]["20"] < table["optimum_test_acc"]
    assert set(table["random_search_check"]) == {"5", "20"}


def test_the_suite_command_writes_the_tabular_table(tmp_path):
    out = tmp_path / "nb201"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "validation.py"), "nb201", "--out", str(out),
                             "--skip-one-shot", "--tabular-seeds", "3", "--budgets", "3,6"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = json.loads((out / "table.json").read_text())
    assert set(table["tabular"]["strategies"]) == {"random_search", "evolution", "reinforce", "tpe"}
    assert table["tabular"]["strategies"]["tpe"]["6"]["n"] == 3
