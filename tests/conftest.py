"""Shared test helpers: compose the real Hydra configs and shrink them to CPU-second sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from nas.cli import config_dir, shared_configs_override
from nas.engine import Hook
from nas.search.config import SearchConfig, register_configs, to_search_config

# Under pytest-xdist (the default: -n 2 in pyproject.toml) each worker, and every command a test
# starts, takes one core's worth of threads; two workers on two cores then never oversubscribe.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)

# A search that takes about a second: 16 px sample images, C=4, 3 cells, 2 steps per epoch.
TINY_SEARCH = [
    "+experiment=quickstart", "data.limit=64", "data.image_size=16", "batch_size=8", "model.channels=4",
    "model.layers=3", "epochs=2", "max_steps_per_epoch=2", "log.every_steps=1", "log.progress=false",
    "diagnostics.hessian_every=0",
]


def compose_config(config_name: str, overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config Hydra would compose for the command ``config_name`` (search, train, tune) with
    these command-line overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(config_name), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*overrides, shared_configs_override()],
                       return_hydra_config=return_hydra_config)


def compose_search(overrides: list[str]) -> SearchConfig:
    register_configs()
    return to_search_config(compose_config("search", overrides))


@pytest.fixture
def tiny_search_config():
    def make(*extra: str) -> SearchConfig:
        return compose_search(TINY_SEARCH + list(extra))

    return make


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a console entry point as a user would (``python -m`` keeps it independent of PATH)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from a second thread, and on shared cores a busy one makes torch's
    pool wait for it (10-100× slower); the suite's setting is restored after. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ENTRY_POINTS = {"search": "nas.search.cli", "train": "nas.train.cli", "rank": "nas.rank.cli", "tune": "nas.tune.cli"}


def invoke_cli(command: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``nas-<command> <args>`` through its real entry point in this process, as a user runs it; returns
    the exit status (faster than a subprocess, and monkeypatches reach inside)."""
    import importlib

    main = importlib.import_module(ENTRY_POINTS[command]).main
    monkeypatch.setattr(sys, "argv", [f"nas-{command}", *args])
    GlobalHydra.instance().clear()
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        GlobalHydra.instance().clear()
    return 0


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The one line a refused command printed to stderr (asserted: exactly one, starting ``error: ``)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def darts_sampler(op_names, nodes: int, k: int = 2, max_skip: int | None = None):
    """Uniform draws of DARTS cells over ``op_names`` with ``nodes`` nodes (``nas.spaces.Sampler``)."""
    from types import SimpleNamespace

    from nas.spaces import DartsSpace, Rules, Sampler

    return Sampler(DartsSpace(op_names), SimpleNamespace(nodes=nodes), Rules(k=k, max_skip=max_skip))


class Killed(Exception):
    """What a SIGKILL leaves behind: the run stops mid-epoch with only its last checkpoint on disk."""


class KillBefore(Hook):
    """An engine hook that kills the run (raises ``Killed``) before step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def before_step(self, engine):
        if engine.counters.global_step == self.step:
            raise Killed
