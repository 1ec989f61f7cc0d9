"""Workers: the ask-run-tell loop, in this process or in ``tune.workers`` processes at once.

Every worker, on any machine, runs the same loop against the shared storage: before each trial it
counts the finished trials (complete or pruned — the only ones the budget counts), stops when the
budget or the time is spent, waits while the rest of the budget is already running elsewhere (one
of those may still fail and need replacing), and otherwise asks for a trial. Two workers can ask
at the same instant for the last trial of the budget; trial numbers order them, and the later one
is given back unrun (marked failed with ``surplus``, never shown or counted), so a study never
runs more finished trials than its budget.

``tune.workers=N`` starts N processes from a fork server (a clean interpreter that has imported
torch but run nothing: no worker inherits the command's threads or CUDA state, and none pays the
imports again), each with its share of the CPU threads and, on a machine with several GPUs, its
own GPU (worker i gets GPU i mod their number). Each worker dies the moment the command does, so
a killed study leaves no orphan training on; its running trials are retried when the command runs
again.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import UserError
from nas.tune.config import TuneConfig
from nas.tune.plan import StudyPlan
from nas.tune.results import progress_line, write_tables
from nas.tune.storage import heartbeats, open_storage, open_study
from nas.tune.strategy import make_pruner, make_sampler, stream_seed
from nas.tune.trial import Outcome, run_trial

log = logging.getLogger("nas.tune")
POLL_S = 1.0
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class Job:
    """What a worker needs (picklable: it crosses into spawned processes)."""

    cfg: TuneConfig
    study_dir: Path
    max_epochs: int  # the full fidelity of a trial (Hyperband's largest budget)
    deadline: float | None  # time.time() after which no trial starts
    worker: int = 0


def counts(study: optuna.Study) -> dict[str, int]:
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    return {state.name.lower(): sum(1 for t in trials if t.state == state) for state in TrialState}


def is_surplus(study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
    """Whether ``budget`` trials numbered before this one are finished, running or queued."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    ahead = [t for t in study.get_trials(deepcopy=False, states=live) if t.number < trial.number
             and not t.user_attrs.get("surplus")]
    return len(ahead) >= budget


def open_job_study(job: Job, storage: Any = None) -> tuple[optuna.Study, Any]:
    """The study with this worker's own sampler stream (``storage``: an already opened one)."""
    t = job.cfg.tune
    storage = storage or open_storage(t.storage, job.study_dir, t.heartbeat_s)
    study = open_study(storage, job.cfg.name, list(job.cfg.directions), optuna.samplers.RandomSampler(),
                       make_pruner(t, job.max_epochs))
    study.sampler = make_sampler(t, stream_seed(t.seed, job.worker, len(study.get_trials(deepcopy=False))))
    return study, storage


@contextmanager
def quiet_heartbeat() -> Iterator[None]:
    """Optuna warns that its heartbeat API is experimental and meant for ``Study.optimize``: this
    loop is what ``optimize`` would be, with its own heartbeat thread (``nas.tune.storage``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def work(job: Job, plan: StudyPlan | None = None, storage: Any = None, echo: Any = print) -> None:
    """Run trials until the budget (finished trials) or the time is spent."""
    plan = plan or StudyPlan.of(job.cfg)
    study, storage = open_job_study(job, storage)
    t = job.cfg.tune
    threads = plan.threads()
    failures: list[Outcome] = []
    while True:
        if job.deadline is not None and time.time() >= job.deadline:
            break
        if heartbeats(storage):
            with quiet_heartbeat():
                optuna.storages.fail_stale_trials(study)
        n = counts(study)
        if n["complete"] + n["pruned"] >= t.trials:
            break
        if n["complete"] + n["pruned"] + n["running"] >= t.trials and n["waiting"] == 0:
            time.sleep(POLL_S)  # the rest of the budget runs elsewhere; one may fail and need replacing
            continue
        with quiet_heartbeat():
            trial = study.ask()
        if is_surplus(study, trial, t.trials):
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        outcome = run_trial(study, trial, plan, job.study_dir, threads, storage)
        n = counts(study)
        echo(progress_line(outcome, study, plan, n["complete"] + n["pruned"], t.trials))
        write_tables(study, plan, job.study_dir)
        failures = failures + [outcome] if outcome.state == "failed" else []
        if len(failures) >= MAX_FAILURES_IN_A_ROW:
            raise UserError(f"{len(failures)} trials in a row failed (see trials.csv); the last: {failures[-1].note}")


def _die_with(command: int) -> None:
    """Kill this worker the moment the command that started it is gone: a killed study must leave
    no orphan training on (Linux: a pidfd of the command, else polling; plus ``PR_SET_PDEATHSIG``
    for the fork server's end)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        try:
            fd = os.pidfd_open(command)
            select.select([fd], [], [])  # readable once the process has exited
        except (AttributeError, OSError):
            while True:
                try:
                    os.kill(command, 0)
                except ProcessLookupError:
                    break
                time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="nas-tune-watch", daemon=True).start()


def gpu_of(worker: int) -> str | None:
    """On a machine with several GPUs, worker i trains on GPU i (mod their number); else None."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in visible.split(",")] if visible else [str(i) for i in range(torch.cuda.device_count())]
    return ids[worker % len(ids)]


def _worker_main(job: Job, command: int, errors: Any, gpu: str | None) -> None:
    """Entry of a worker process (forked by the fork server; ``command``: the study's pid)."""
    _die_with(command)
    if gpu is not None:  # before anything initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    threads = StudyPlan.of(job.cfg).threads()
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        work(job, echo=lambda line: print(line, flush=True))
    except UserError as exc:
        errors.put((job.worker, exc.exit_code, str(exc)))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(job: Job) -> None:
    """Run ``job.cfg.tune.workers`` worker processes to the end; a worker's error ends the command
    with that error once all have stopped."""
    # A fork server imports torch once and forks each worker from that clean state: no worker
    # inherits this process's threads or CUDA state, and none pays the imports again.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["nas.tune.worker"])
    errors = context.Queue()
    processes = []
    for index in range(job.cfg.tune.workers):
        worker_job = Job(job.cfg, job.study_dir, job.max_epochs, job.deadline, worker=index)
        process = context.Process(target=_worker_main, args=(worker_job, os.getpid(), errors, gpu_of(index)),
                                  name=f"nas-tune-worker-{index}")
        process.start()
        processes.append(process)
    interrupted = False
    try:
        for process in processes:
            while process.is_alive():
                try:
                    process.join()
                except KeyboardInterrupt:  # the workers got the signal too; let them stop cleanly
                    interrupted = True
                    for other in processes:
                        if other.is_alive() and other.pid is not None:
                            os.kill(other.pid, signal.SIGINT)
    finally:
        for process in processes:
            process.join()
    reported = []
    while True:
        try:
            reported.append(errors.get(timeout=0.1))
        except queue.Empty:
            break
    if reported:
        worker, code, message = sorted(reported, key=lambda r: -r[1])[0]
        error = UserError(message)
        error.exit_code = code
        raise error
    if interrupted:
        raise KeyboardInterrupt
    crashed = [p for p in processes if p.exitcode]
    if crashed:
        raise UserError(f"worker {crashed[0].name} stopped with exit code {crashed[0].exitcode}; run the same "
                        "command again to resume the study (its trial runs again)")
