"""Where a study's trials live, and how trials interrupted by a kill are run again.

``tune.storage=journal`` (the default) keeps the study in one Optuna journal file in the study
directory (``journal.log``), ``sqlite`` in one SQLite file there (``study.db``). Several worker
processes on one machine append to the journal under an ``flock`` (``JournalFlock``): the kernel
drops it when its holder dies, so a worker killed while writing never leaves the others waiting
for a stale lock file (Optuna's own symlink lock would hold them for its 30 s grace period). Any SQLAlchemy URL (``postgresql://user@host/db``)
puts it in a database that workers on several machines share: each machine runs the same command,
and its own study directory receives the reports.

A trial that was running when its process died must be run again, once. With an embedded storage
the study directory's lock tells: the command that holds it is the only one using the file, so
every trial still marked running belongs to a dead process and is retried at start-up. A database
is shared by machines that know nothing of each other, so there each running trial beats every
``tune.heartbeat_s`` seconds and one silent for three beats is retried by whichever worker notices
first. A retry is a new trial with the same parameters (``retry_of`` names the original); the dead
trial is marked failed, and only finished trials (complete or pruned) count toward the budget,
so nothing is lost or counted twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError

JOURNAL_FILE = "journal.log"
SQLITE_FILE = "study.db"
DEFINITION_ATTR = "nas_tune"  # study user attribute: the definition the study was created with


def embedded(spec: str) -> bool:
    return "://" not in spec


def masked(spec: str) -> str:
    """A storage spec safe to print or save: a URL's password replaced by ***."""
    if embedded(spec):
        return spec
    try:
        from sqlalchemy.engine import make_url

        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: mask what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", spec)


def with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 means psycopg 3 by it,
    and many installs have psycopg2 (``pip install psycopg2-binary``) instead."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


class JournalFlock:
    """The journal's write lock as an ``flock`` on ``journal.log.lock`` (Optuna's lock interface:
    ``acquire``/``release``). Each acquire opens its own descriptor, so threads of one process
    exclude each other as well as processes do."""

    def __init__(self, journal: Path):
        self.path = Path(str(journal) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def retry(study: optuna.Study, number: int, params: dict[str, Any], user_attrs: dict[str, Any]) -> None:
    """Queue a new trial with the parameters of trial ``number``, which died while it ran
    (``retry_of`` names the first trial of the chain, ``retried_from`` the one that died). A queued
    trial's marker (``enqueued``: the baseline) moves to its retry, so the baseline still has a value."""
    attrs: dict[str, Any] = {"retry_of": user_attrs.get("retry_of", number), "retried_from": number}
    if "enqueued" in user_attrs:
        attrs["enqueued"] = user_attrs["enqueued"]
    study.enqueue_trial(dict(params), user_attrs=attrs)


def retry_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial whose heartbeat stopped (database storages)."""
    retry(study, trial.number, trial.params, trial.user_attrs)


def retry_running(study: optuna.Study) -> list[int]:
    """Under the study directory's lock (embedded storage): every running trial is a dead
    process's; mark it failed and queue its retry. Returns the retried trial numbers."""
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        retry(study, trial.number, trial.params, trial.user_attrs)
        retried.append(trial.number)
    return retried


def open_storage(spec: str, study_dir: Path, heartbeat_s: int) -> optuna.storages.BaseStorage:
    """The storage ``tune.storage`` names; an unreachable or malformed one is a one-line error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if spec == "journal":
                from optuna.storages.journal import JournalFileBackend, JournalStorage

                journal = study_dir / JOURNAL_FILE
                return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFlock(journal)))  # type: ignore[arg-type]
            if spec == "sqlite":
                return optuna.storages.RDBStorage(f"sqlite:///{(study_dir / SQLITE_FILE).resolve()}",
                                                  engine_kwargs={"connect_args": {"timeout": 60}})
            connect = {"timeout": 60} if spec.startswith("sqlite") else {"connect_timeout": 10}
            return optuna.storages.RDBStorage(
                with_driver(spec), engine_kwargs={"connect_args": connect}, heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s, heartbeat_stale_trial_callback=retry_stale)
    except Exception as exc:  # SQLAlchemy and the drivers raise many types; all mean the same here
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = re.sub(r"^\([\w.]+\)\s*", "", lines[0]) if lines else type(exc).__name__
        raise ConfigError(f"cannot open tune.storage={masked(spec)}: {reason}") from None


def open_study(storage: optuna.storages.BaseStorage, name: str, directions: list[str],
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
               definition: dict[str, Any] | None = None) -> optuna.Study:
    """Create or load the study ``name``. With ``definition``, a study of that name must have been
    created with the same definition (a different study is refused, never touched); a new one
    records it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
    except ValueError as exc:
        raise ConfigError(f"study '{name}' in the storage does not fit this one: {exc}") from None
    if definition is not None:
        saved = study.user_attrs.get(DEFINITION_ATTR)
        if saved is None and study.get_trials(deepcopy=False):
            raise ConfigError(f"the storage holds a study '{name}' that nas-tune did not create; choose another name=")
        if saved is not None and saved != definition:
            changed = sorted(k for k in set(saved) | set(definition) if saved.get(k) != definition.get(k))
            raise ConfigError(f"the storage holds another study named '{name}' (it differs in {', '.join(changed)}); "
                              "choose another name= or run that study's own command")
        if saved is None:
            study.set_user_attr(DEFINITION_ATTR, definition)
    return study


class Heartbeat:
    """While a trial runs on a database storage, beat every interval (``with Heartbeat(...)``)."""

    def __init__(self, storage: Any, trial: optuna.Trial):
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.storage, self.interval = storage, interval
        self.trial_id = trial._trial_id  # Optuna's heartbeat API is keyed by the storage's trial id
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.thread = threading.Thread(target=self._beat, name="nas-tune-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()


def heartbeats(storage: Any) -> bool:
    """Whether the storage detects dead trials by heartbeat (database URLs)."""
    return bool(getattr(storage, "get_heartbeat_interval", lambda: None)())
