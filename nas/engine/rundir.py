"""One run, one directory: a run owns its directory for its whole life, and nothing else writes there.

A run takes an exclusive lock (``.lock``, ``flock``) before it writes anything, so a second run
started into the same directory, at the same moment or later, is refused at once and changes
nothing. A directory that already holds results (``summary.json``, ``genotype.json`` or a complete
checkpoint) is refused unless the run resumes it or is told to replace it (``overwrite=true``, which
clears the old run's files first, so no stale checkpoint or TensorBoard event survives beside the
new run's). Leftovers of a run that was killed before its first checkpoint was complete are not
results: a new run into that directory clears them and starts cleanly. Only what a run writes
(``ARTEFACTS``) is ever cleared: other files in the directory are the user's and stay.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from nas import checkpoint
from nas.errors import CheckpointError, ConfigError, UserError

log = logging.getLogger("nas")
LOCK_NAME = ".lock"
RESULT_NAMES = ("summary.json", "genotype.json")
# What a run writes into its directory; only these are ever cleared (never a file of the user's).
ARTEFACTS = (".hydra", "tb", "checkpoints", "summary.json", "genotype.json", "error.txt", "*.log")


def artefacts_in(run_dir: Path) -> list[Path]:
    return sorted({p for pattern in ARTEFACTS for p in run_dir.glob(pattern)})


def results_in(run_dir: Path) -> list[str]:
    """The results a directory holds: result files and complete (non-temporary) checkpoints."""
    found = [name for name in RESULT_NAMES if (run_dir / name).is_file()]
    folder = run_dir / "checkpoints"
    if folder.is_dir():
        found += [f"checkpoints/{p.name}" for p in sorted(folder.glob("*.pt"))]
    return found


def lock_directory(path: Path, what: str, owner: str, hint: str) -> int:
    """Create ``path`` and take the exclusive lock of its ``.lock`` file; the returned descriptor holds
    the lock until it is closed. One-line refusals: not a directory, not writable, locked by ``owner``
    (with the holder's pid, which ``write_holder`` records, and ``hint``)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path} is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot use {what} {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{what} {path} is in use by {owner} (pid {holder}); {hint}") from None
    return fd


def write_holder(fd: int) -> None:
    """Record this process as the holder of the lock ``fd`` (what a refused second command reports)."""
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())


class RunDirectory:
    """The directory of one run, locked for as long as the run lives (``with RunDirectory(...)``)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # data-parallel ranks above 0 write nothing and take no lock
        self._fd: int | None = None

    def acquire(self, overwrite: bool = False, resuming: bool = False) -> RunDirectory:
        """Lock the directory and make it this run's: refuse a live or finished run's directory."""
        if not self.enabled:
            return self
        found = results_in(self.path) if self.path.is_dir() else []
        if found and not (overwrite or resuming):  # refused before anything is created
            raise ConfigError(f"run directory {self.path} already holds results ({', '.join(found)}); "
                              "pass resume=<run dir> to continue it or overwrite=true to replace it")
        self._fd = fd = lock_directory(self.path, "run directory", "another run",
                                       "choose another hydra.run.dir or wait for it to finish")
        write_holder(fd)
        checkpoint.remove_temporary_files(self.path)
        if not resuming:
            leftovers = artefacts_in(self.path)
            if leftovers:
                why = "overwrite=true" if found else "no complete checkpoint or result in it"
                log.info("clearing %d entries of an earlier run in %s (%s)", len(leftovers), self.path, why)
                for p in leftovers:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def resume_point(resume: str, fmt: str, kind: str) -> tuple[Path, dict[str, Any], Path]:
    """(checkpoint file, its state, its run directory) for ``resume=`` (a file or a run directory).

    The state must be a ``kind`` checkpoint of format ``fmt``. The run directory is returned because
    a resumed run continues in its own directory: one run, one directory, however often resumed.
    """
    path = checkpoint.resolve(resume)
    state = checkpoint.load(path)
    if state.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {kind} checkpoint (format {state.get('format')!r})")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, state, run_dir


# What a resumed run may change: where it runs, how it reports, and (to continue) its length.
RESUMABLE_CHANGES = ("device", "threads", "log.progress", "epochs")


def resumed_config(cfg: Any, fmt: str, kind: str, from_dict: Any,
                   changed: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], Path]:
    """(saved config, checkpoint state, run directory) for ``cfg.resume``.

    A resumed run continues with its saved config. ``changed`` holds the values the user set on the
    command line (``None``: a library call, which changes only where the run runs); a value that
    differs from the saved one is refused unless the run can honour it (``RESUMABLE_CHANGES``). A
    finished run continues only for more epochs than it has done.
    """
    path, state, run_dir = resume_point(cfg.resume, fmt, kind)
    saved_plain = flatten(checkpoint_config(state))
    try:
        saved = from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds a config this version cannot use ({exc})") from None
    if changed is None:
        changed = {"device": cfg.device, "threads": cfg.threads, "log.progress": cfg.log.progress}
    refused = sorted(k for k, v in changed.items()
                     if k not in RESUMABLE_CHANGES and k != "resume" and saved_plain.get(k, v) != v)
    if refused:
        raise ConfigError(f"resume= continues {run_dir} with its saved config; it cannot change "
                          f"{', '.join(f'{k} ({saved_plain.get(k)!r} -> {changed[k]!r})' for k in refused)}")
    for key in RESUMABLE_CHANGES:
        if key in changed:
            set_dotted(saved, key, changed[key])
    done = int(state.get("epoch", 0))
    if saved.epochs < done:
        raise ConfigError(f"resume={run_dir}: epochs={saved.epochs} is fewer than the {done} epochs already done")
    if (run_dir / "summary.json").is_file():  # a finished run: continue only when asked for more
        if state.get("stop_reason"):
            raise ConfigError(f"run {run_dir} already ended ({state['stop_reason']}); there is nothing to continue")
        if saved.epochs <= done:
            raise ConfigError(f"run {run_dir} already finished its {done} epochs; pass epochs=<more than {done}> "
                              "to continue it")
    saved.resume = str(path)
    return saved, state, run_dir


def finished_wall_time(run_dir: Path) -> float:
    """The wall time ``summary.json`` reports for a finished run (0 when there is none): more than its
    last checkpoint holds, by the work done after that checkpoint (results, the summary itself)."""
    try:
        value = json.loads((run_dir / "summary.json").read_text()).get("wall_time_s")
    except (OSError, ValueError, AttributeError):
        return 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def checkpoint_config(state: dict[str, Any]) -> dict[str, Any]:
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError("the checkpoint holds no saved config: it is not a complete nas checkpoint")
    return config


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def set_dotted(obj: Any, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, leaf, value)


def check_writable(path: Path) -> None:
    """Fail with one line, not a traceback, when a results folder cannot be written."""
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write to {path}: permission denied")
