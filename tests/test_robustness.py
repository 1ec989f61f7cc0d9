"""Robustness, as a user (or a scheduler) meets it: nothing non-finite is ever saved, a run directory
belongs to the one run that made it, resume= continues a run without rewriting its past, sweeps
survive a failing job, and a SIGTERM to the whole process group still ends in a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_SEARCH, invoke_cli, one_error_line, run_cli
from nas.engine import Hook, NonFiniteLoss, RunDirectory
from nas.search.task import run_search

QUICK = [*TINY_SEARCH, "epochs=1", "log.images=false", "model.nodes=2"]


invoke = partial(invoke_cli, "search")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- the NaN guard ------------------------------------------------------------------------------
class PoisonBatchNorm(Hook):
    """After ``step`` steps one BatchNorm's running variance becomes infinite, as a diverging run's
    does: train-mode losses stay finite, so only a check of the state itself can catch it."""

    def __init__(self, step: int):
        self.step = step

    def after_step(self, engine, metrics):
        if engine.counters.global_step == self.step:
            norm = next(m for m in engine.task.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            norm.running_var.fill_(float("inf"))


def test_a_non_finite_state_is_never_saved(tmp_path, tiny_search_config):
    cfg = tiny_search_config(*QUICK[len(TINY_SEARCH):], "epochs=2", "checkpoint.every_steps=1")
    with pytest.raises(NonFiniteLoss, match=r"running_var became non-finite by step 3.*checkpoints/last.pt") as info:
        run_search(cfg, tmp_path, hooks=[PoisonBatchNorm(3)])
    assert "\n" not in str(info.value)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] == 2  # the last finite one, untouched
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not (tmp_path / "summary.json").exists()
    # epoch 1 (steps 1-2) ended finite and wrote its cell; the poisoned epoch 2 wrote nothing
    meta = json.loads((tmp_path / "genotype.json").read_text())["meta"]
    assert meta["epoch"] == 1 and np.isfinite(np.array(meta["alphas"]["normal"])).all()


def test_a_diverging_run_exits_non_zero_and_writes_no_nan(tmp_path, monkeypatch, capsys):
    code = invoke([*QUICK, "optim.w_lr=10", "optim.w_weight_decay=1", "optim.grad_clip=1e9", "optim.w_momentum=0.99",
                   "data.limit=128", "max_steps_per_epoch=6", "epochs=2",
                   f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch)
    line = one_error_line(capsys)
    assert code == 1 and "non-finite" in line or "became nan" in line or "became inf" in line, line
    summary = tmp_path / "run" / "summary.json"
    assert not summary.exists() or "NaN" not in summary.read_text()
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.pt"):
        state = torch.load(ckpt, weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), ckpt


# --- one run, one directory ------------------------------------------------------------------------
def test_a_directory_in_use_is_refused_at_once_and_left_alone(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    with RunDirectory(run_dir).acquire():  # another run holds it
        (run_dir / "search.log").write_text("the other run's log\n")
        before = snapshot(run_dir)
        assert invoke([*QUICK, f"hydra.run.dir={run_dir}"], monkeypatch) == 2
        assert "in use by another run" in one_error_line(capsys)
        assert snapshot(run_dir) == before  # no .hydra/, no log line, nothing


def test_overwrite_clears_the_old_runs_files_and_keeps_the_users(tmp_path, tiny_search_config):
    run_search(tiny_search_config(*QUICK[len(TINY_SEARCH):], "epochs=2"), tmp_path)
    assert (tmp_path / "checkpoints" / "previous.pt").exists()
    (tmp_path / "notes.txt").write_text("mine\n")
    old_events = set((tmp_path / "tb").iterdir())
    run_search(tiny_search_config(*QUICK[len(TINY_SEARCH):], "overwrite=true"), tmp_path)
    assert not (tmp_path / "checkpoints" / "previous.pt").exists()  # the new run wrote one checkpoint
    assert not old_events & set((tmp_path / "tb").iterdir())
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_run_killed_in_its_first_checkpoint_write_restarts_cleanly(tmp_path, tiny_search_config):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "tb").mkdir()
    summary = run_search(tiny_search_config(*QUICK[len(TINY_SEARCH):]), tmp_path)
    assert summary["epochs"] == 1
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_resume_refuses_what_it_cannot_honour_and_appends_when_asked_for_more(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    assert invoke([*QUICK, f"hydra.run.dir={run_dir}"], monkeypatch) == 0
    capsys.readouterr()
    first = json.loads((run_dir / "summary.json").read_text())
    before = snapshot(run_dir)

    assert invoke([f"resume={run_dir}", "model.channels=6", f"hydra.run.dir={tmp_path / 'x'}"], monkeypatch) == 2
    assert "cannot change model.channels (4 -> 6)" in one_error_line(capsys)
    assert invoke([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'y'}"], monkeypatch) == 2
    assert "already finished its 1 epochs" in one_error_line(capsys)
    assert snapshot(run_dir) == before and not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    assert invoke([f"resume={run_dir}", "epochs=2", f"hydra.run.dir={tmp_path / 'z'}"], monkeypatch) == 0
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["epochs"] == 2 and second["history"][0] == first["history"][0]  # appended, not rewritten
    assert second["wall_time_s"] > first["wall_time_s"] and second["epoch_times_s"][0] == first["epoch_times_s"][0]


def test_a_checkpoints_folder_that_disappears_mid_run_is_one_line(tmp_path, tiny_search_config):
    class ReplaceFolder(Hook):
        def after_epoch(self, engine, metrics):
            folder = tmp_path / "checkpoints"
            if folder.is_dir():
                for p in folder.iterdir():
                    p.unlink()
                folder.rmdir()
            folder.write_text("not a folder any more\n")

    from nas.errors import UserError

    with pytest.raises(UserError, match="cannot write a checkpoint") as info:
        run_search(tiny_search_config(*QUICK[len(TINY_SEARCH):], "epochs=2"), tmp_path, hooks=[ReplaceFolder()])
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob(".*.tmp"))


# --- sweeps ------------------------------------------------------------------------------------------
def test_a_failing_sweep_job_is_recorded_and_the_others_run(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["nas.search", "-m", *QUICK, "data.image_size=16,4096", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "1 job(s) of the sweep failed" in result.stderr.splitlines()[-1]
    aggregate = json.loads((sweep / "aggregate.json").read_text())
    assert aggregate["covers"] == ["0_seed0"] and [f["run"] for f in aggregate["failed"]] == ["1_seed0"]
    assert "data.image_size" in (sweep / "1_seed0" / "error.txt").read_text()
    again = run_cli(["nas.search", "-m", *QUICK, "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert again.returncode == 2 and "already holds a sweep" in again.stderr


# --- signals as schedulers send them -----------------------------------------------------------------
def test_sigterm_to_the_process_group_with_loader_workers_ends_in_a_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / "images" / split / cls).mkdir(parents=True)
            for i in range(16):
                pixels = torch.randint(0, 256, (24, 24, 3), generator=generator, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "images" / split / cls / f"{i}.png")
    args = ["+experiment=transfer_imagenet", f"data.root={tmp_path / 'images'}", "data.image_size=16",
            "model=cifar", "model.auxiliary=false", "model.channels=4", "model.layers=3", "batch_size=4", "epochs=20",
            "data.workers=2", "checkpoint.every_steps=1", "log.progress=false", "log.images=false",
            f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.train", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, workers included, as SLURM and docker do
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert lines and "stopped by SIGTERM" in lines[-1] and "resume=" in lines[-1] and "Traceback" not in stderr
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] >= 1


# --- images in modes the transforms do not expect ------------------------------------------------------
@pytest.mark.parametrize("mode", ["I;16", "P", "CMYK", "L"])
def test_images_in_other_modes_become_correct_rgb(tmp_path, mode):
    from nas.data.datasets import rgb_image

    grey = 3000  # of 65535 in a 16-bit image: dark, not white
    if mode == "I;16":
        img = Image.fromarray(np.full((4, 4), grey, dtype=np.uint16))  # mode I;16
        expected = round(grey * 255 / 65535)
    else:
        rgb = Image.new("RGB", (4, 4), (12, 12, 12))
        img = rgb.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)
        expected = 12
    path = tmp_path / f"image.{'tiff' if mode == 'CMYK' else 'png'}"
    img.save(path)
    with Image.open(path) as opened:
        rgb = rgb_image(opened)
    assert rgb.mode == "RGB" and abs(rgb.getpixel((1, 1))[0] - expected) <= 1
