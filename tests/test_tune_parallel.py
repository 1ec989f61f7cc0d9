"""Several trials at once: two worker processes on one SQLite file and on a real PostgreSQL server
(started here, stopped at the end) record every trial once; a two-worker study on the journal file
whose command is killed with SIGKILL resumes with nothing lost or counted twice."""

from __future__ import annotations

import csv
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState
from test_tune_support import invoke

from nas.tune.config import TuneConfig, to_tune_config
from nas.tune.storage import open_storage, open_study
from nas.tune.study import run_study

TESTS = Path(__file__).resolve().parent
SPACE = ["command=test_tune_support:Curve", "objectives=[score]", "+space.x={type: float, low: 0.0, high: 1.0}"]


def postgres_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or where Debian's postgresql package puts them."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on a Unix socket; yields its URL. As root, the server runs as
    an unprivileged user (PostgreSQL refuses root): ``postgres`` when it exists, else ``nobody``."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; .ci/run installs them")
    root = Path(tempfile.mkdtemp(prefix="nas-tune-pg-"))  # not under pytest's tmp: the server's user must reach it
    as_user: list[str] = []
    if os.geteuid() == 0:
        name = next((n for n in ("postgres", "nobody") if _user_exists(n)), None)
        if name is None or shutil.which("runuser") is None:
            shutil.rmtree(root)
            pytest.skip("running as root without a user to run PostgreSQL as (postgres or nobody) and runuser")
        user = pwd.getpwnam(name)
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", name, "--"]
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                        "-o", f"-k {root} -p {port} -c listen_addresses=''", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "server.log").read_text() if (root / "server.log").is_file() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\n{getattr(exc, 'stderr', b'')!r}\n{log}")
    try:
        yield f"postgresql://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def make(storage: str, **tune) -> TuneConfig:
    cfg = {"name": "parallel", "command": "test_tune_support:Curve", "objectives": ["score"], "base": {"sleep": 0.02},
           "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
           "tune": {"sampler": "tpe", "pruner": "asha", "trials": 8, "workers": 2, "storage": storage,
                    "startup_trials": 2, "reduction_factor": 2, **tune}}
    return to_tune_config(OmegaConf.merge(OmegaConf.structured(TuneConfig), cfg))


def stored_trials(cfg: TuneConfig, study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(cfg.tune.storage, study_dir, cfg.tune.heartbeat_s)
    study = open_study(storage, cfg.name, list(cfg.directions), optuna.samplers.RandomSampler(),
                       optuna.pruners.NopPruner())
    return study.get_trials(deepcopy=False)


# The journal (the default storage) runs with two workers in the SIGKILL test below.
@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_two_workers_record_every_trial_once(storage, tmp_path, request):
    spec = request.getfixturevalue("postgres") if storage == "postgres" else storage
    cfg = make(spec)
    lines: list[str] = []
    result = run_study(cfg, tmp_path / "study", echo=lines.append)

    trials = [t for t in stored_trials(cfg, tmp_path / "study") if not t.user_attrs.get("surplus")]
    assert [t.number for t in trials] == sorted({t.number for t in trials})  # each trial once
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) and len(trials) == 8
    assert result["trials"]["finished"] == 8
    with open(tmp_path / "study" / "trials.csv") as fh:
        assert [int(r["number"]) for r in csv.DictReader(fh)] == [t.number for t in trials]
    run_dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(run_dirs)) == 8 and all((d / "summary.json").is_file() for d in run_dirs)
    pids = {json.loads((d / "trial.json").read_text())["pid"] for d in run_dirs}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes shared the trials


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_killed_study_resumes_without_losing_or_counting_a_trial_twice(tmp_path, monkeypatch, capsys):
    study_dir = tmp_path / "study"
    args = [*SPACE, "+base.sleep=0.15", "tune.sampler=random", "tune.pruner=none", "tune.trials=6", "tune.workers=2",
            "name=killed", f"hydra.run.dir={study_dir}"]
    command = [sys.executable, "-m", "nas.tune", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # kill once 2 trials finished and another is halfway
            finished = len(list(study_dir.glob("trials/*/summary.json")))
            running = [d for d in study_dir.glob("trials/*") if not (d / "summary.json").exists()]
            if finished >= 2 and running:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the study never got going")
        process.send_signal(signal.SIGKILL)  # the command only: its workers must die with it
        process.wait(timeout=30)
        workers = {json.loads(p.read_text())["pid"] for p in study_dir.glob("trials/*/trial.json")}
        deadline = time.time() + 30
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its command"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group this test started
        except ProcessLookupError:
            pass
    started = sorted(int(d.name) for d in study_dir.glob("trials/*"))

    capsys.readouterr()
    assert invoke(args, monkeypatch) == 0  # the same command again (in this process, to save a start)
    assert "retrying trial(s)" in capsys.readouterr().out

    trials = stored_trials(to_tune_config(OmegaConf.merge(OmegaConf.structured(TuneConfig), {
        "name": "killed", "command": "test_tune_support:Curve", "objectives": ["score"],
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}})), study_dir)
    by_number = {t.number: t for t in trials}
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6  # the budget, exactly
    for number in started:  # every trial that started before the kill finished, or was run again
        trial = by_number[number]
        if trial.state == TrialState.FAIL:
            retries = [t for t in trials if t.user_attrs.get("retried_from") == number]
            assert len(retries) == 1 and retries[0].params == trial.params
            assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert any(t.state == TrialState.FAIL for t in trials)  # something was running when the command died
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
