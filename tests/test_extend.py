"""Extending a finished run: ``resume=<run> epochs=<more>`` trains the extra epochs and ends, for both
commands, into a new ``hydra.run.dir`` or the run's own; killed while extending and resumed again, it
ends exactly as an uninterrupted extension (issue 27: a reported hang, which every case below bounds
with a timeout so that a hang fails the test instead of stalling the suite)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import TINY_SEARCH, KillBefore, Killed, run_cli
from nas.search.task import run_search

SEARCH = [*TINY_SEARCH, "log.images=false", "model.nodes=2"]  # 2 epochs of 2 steps
TRAIN = ["+experiment=retrain_quick", "epochs=1", "max_steps_per_epoch=2", "model.channels=4", "model.layers=3",
         "model.auxiliary=false", "data.limit=64", "batch_size=8", "log.progress=false", "log.images=false"]
BOUND = 180  # seconds: a tiny extension takes a few


def finished(module: str, args: list[str], run_dir, cwd) -> None:
    done = run_cli([module, *args, f"hydra.run.dir={run_dir}"], cwd=cwd, timeout=BOUND)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("elsewhere", [True, False])
def test_a_finished_search_extended_trains_the_extra_epochs_and_ends(tmp_path, elsewhere):
    finished("nas.search", SEARCH, tmp_path / "run", tmp_path)
    extra = [f"hydra.run.dir={tmp_path / 'new'}"] if elsewhere else []
    result = run_cli(["nas.search", f"resume={tmp_path / 'run'}", "epochs=4", *extra], cwd=tmp_path, timeout=BOUND)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["epochs"], summary["steps"], len(summary["history"])) == (4, 8, 4)
    assert f"run directory: {tmp_path / 'run'}" in result.stdout  # a run continues in its own directory
    assert not (tmp_path / "new").exists()


def test_a_finished_retrain_extended_trains_the_extra_epochs_and_ends(tmp_path):
    finished("nas.train", TRAIN, tmp_path / "run", tmp_path)
    result = run_cli(["nas.train", f"resume={tmp_path / 'run'}", "epochs=3"], cwd=tmp_path, timeout=BOUND)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["epochs"], summary["steps"]) == (3, 6)


def test_an_extension_killed_and_resumed_equals_the_uninterrupted_extension(tmp_path, tiny_search_config):
    run_search(tiny_search_config("log.images=false", "model.nodes=2"), tmp_path / "done")
    for name in ("whole", "cut"):
        shutil.copytree(tmp_path / "done", tmp_path / name)

    def extend(name: str, hooks=()):
        cfg = tiny_search_config("log.images=false", "model.nodes=2", f"resume={tmp_path / name}", "epochs=4")
        return run_search(cfg, tmp_path / "unused", hooks=hooks, changed={"epochs": 4})

    whole = extend("whole")
    with pytest.raises(Killed):
        extend("cut", hooks=[KillBefore(6)])  # in epoch 4, after one of its steps
    cut = extend("cut")
    assert (cut["epochs"], cut["steps"]) == (whole["epochs"], whole["steps"]) == (4, 8)
    genotypes = [json.loads((tmp_path / n / "genotype.json").read_text()) for n in ("whole", "cut")]
    assert genotypes[0]["meta"]["alphas"] == genotypes[1]["meta"]["alphas"]
    assert {k: v for k, v in genotypes[0].items() if k != "meta"} == {k: v for k, v in genotypes[1].items() if k != "meta"}
