"""scripts/bench_train.py: one JSON object per configuration, one-line errors; tiny sizes, no timing checks."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"
# C=4, 3 cells, 32 px: the smallest CIFAR network that keeps the auxiliary head; a step takes well under a second.
TINY = ["--batch-size", "2", "--steps", "1", "--warmup", "0", "--threads", "1", "--layers", "3", "--channels", "4",
        "--image-size", "32"]


def bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def load_script():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_json_object_per_configuration():
    result = bench("--model", "cifar", *TINY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    for key in ("model", "genotype", "batch_size", "image_size", "device", "amp", "compile", "channels_last",
                "step_s", "step_s_iqr", "images_per_s", "peak_mem_mib", "params", "torch", "threads"):
        assert key in row, key
    assert row["model"] == "cifar" and row["genotype"] == "DARTS_V2"
    assert (row["batch_size"], row["image_size"], row["channels"], row["layers"]) == (2, 32, 4, 3)
    assert row["device"] == "cpu" and row["amp"] == "none" and row["compile"] is False
    assert row["channels_last"] is True and row["threads"] == 1
    assert row["params"] > 0 and row["aux_params"] > 0
    assert row["step_s"] > 0 and row["images_per_s"] > 0 and row["peak_mem_mib"] > 0
    assert row["torch"] == torch.__version__


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error():
    result = bench("--model", "cifar", "--device", "cuda", *TINY)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "CUDA" in result.stderr


def test_too_small_image_is_a_one_line_error_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:  # checked in the parent, before any child starts
        load_script().main(["--model", "imagenet", "--image-size", "64", "--steps", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image-size>=193" in err[0]


def test_a_failing_child_fails_the_parent_with_one_line(monkeypatch, capsys):
    module = load_script()
    crash = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback (most recent call last):\n  ...\n"
                                                                "RuntimeError: out of memory\n")
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: crash)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--model", "cifar", *TINY])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar" in err[0] and "RuntimeError: out of memory" in err[0]
