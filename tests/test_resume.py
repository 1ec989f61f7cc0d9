"""Long runs: bit-exact resume after SIGKILL, clean stop on SIGTERM, the NaN guard, bad checkpoints."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY_SEARCH, run_cli
from nas.engine import NonFiniteLoss
from nas.errors import CheckpointError
from nas.search.bilevel import Bilevel
from nas.search.task import run_search

SLOW_TINY = [*TINY_SEARCH, "epochs=2", "max_steps_per_epoch=6", "log.images=false", "checkpoint.every_steps=1"]


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "nas.search", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_step(run_dir, step, proc, timeout=240):
    """Block until the run has checkpointed at least ``step`` steps; returns the checkpoint state."""
    deadline = time.time() + timeout
    path = run_dir / "checkpoints" / "last.pt"
    while time.time() < deadline:
        if path.exists():
            try:
                state = torch.load(path, weights_only=True)
            except Exception:  # being replaced right now
                state = None
            if state and state["global_step"] >= step:
                return state
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the run did not reach the step in time")


def alphas_of(run_dir):
    data = json.loads((run_dir / "genotype.json").read_text())
    return data["meta"]["alphas"], {k: data[k] for k in ("normal", "reduce")}


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference = run_cli(["nas.search", *SLOW_TINY, f"hydra.run.dir={tmp_path / 'ref'}"], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    proc = start([*SLOW_TINY, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    state = wait_for_step(tmp_path / "run", 2, proc)
    proc.kill()
    proc.communicate()
    assert 0 < state["global_step"] < 8  # 2 epochs of 4 steps (32 weight images, batch 8)

    resumed = run_cli(["nas.search", f"resume={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'resumed'}"],
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert alphas_of(tmp_path / "run") == alphas_of(tmp_path / "ref")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 8


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = start([*SLOW_TINY, "epochs=3", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    before = wait_for_step(tmp_path / "run", 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "resume=" in stderr and "Traceback" not in stderr
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert after["global_step"] > before["global_step"]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_search_config, monkeypatch):
    real_step = Bilevel.weight_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        metrics = real_step(*args, **kwargs)
        if calls["n"] == 3:  # the first step of the second epoch
            metrics["loss/train"] = torch.tensor(float("nan"))
        return metrics

    monkeypatch.setattr(Bilevel, "weight_step", poisoned)
    cfg = tiny_search_config("epochs=2", "log.images=false")
    with pytest.raises(NonFiniteLoss, match="at step 3") as info:
        run_search(cfg, tmp_path)
    assert "\n" not in str(info.value)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, tiny_search_config, damage):
    run_dir = tmp_path / "run"
    run_search(tiny_search_config("epochs=1", "log.images=false"), run_dir)
    path = run_dir / "checkpoints" / "last.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        run_search(tiny_search_config(f"resume={run_dir}"), tmp_path / "other")
    assert "\n" not in str(info.value)
