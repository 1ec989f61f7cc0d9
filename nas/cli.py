"""Shared plumbing of the Hydra command-line entry points (``nas-search``, ``nas-train``, ``nas-tune``).

Each command has its own config directory (``configs/search``, ``configs/train``, ``configs/tune``:
its primary config, its experiments and groups) and shares ``configs/data`` and
``configs/hydra`` through Hydra's search path. The directories live at the top of the repository
for a source checkout or an editable install, inside the package (``nas/configs``) for a regular
install.

What a user sees: errors as one line on stderr with a non-zero exit status (2 for configuration
errors, ours and Hydra's own composition errors; 1 for the rest). A run writes ``.hydra/`` and its
log file only once it owns its run directory, so a refused run changes nothing. In a sweep, a
failing job is recorded (``error.txt`` in its directory) and the other jobs still run; the command
then exits non-zero.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from nas.errors import ConfigError, UserError

_PACKAGE_DIR = Path(__file__).resolve().parent
log = logging.getLogger("nas")


def config_root() -> Path:
    for candidate in (_PACKAGE_DIR / "configs", _PACKAGE_DIR.parent / "configs"):
        if (candidate / "search" / "search.yaml").is_file():
            return candidate
    raise RuntimeError(f"nas configs not found next to {_PACKAGE_DIR}; reinstall the package")


def config_dir(command: str = "search") -> str:
    """The config directory of one command (``search``, ``train`` or ``tune``)."""
    return str(config_root() / command)


def shared_configs_override() -> str:
    """The Hydra override that makes the shared groups (``data``, ``hydra/...``) visible to a command."""
    return f"hydra.searchpath=[file://{config_root()}]"


def with_overrides(argv: list[str], extra: list[str]) -> list[str]:
    """``argv`` with ``extra`` overrides placed next to the user's own: Hydra's argument parser takes
    the overrides as one run of positionals, so ``+experiment=x --cfg job`` breaks if anything is
    appended after the option."""
    first = next((i for i, arg in enumerate(argv[1:], 1) if "=" in arg and not arg.startswith("-")), len(argv))
    return [*argv[:first], *extra, *argv[first:]]


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def print_run_location(run_dir: str | Path) -> None:
    """Where a finished run lives (a resumed run continues in its own directory) and how to look."""
    run_dir = Path(run_dir)
    print(f"run directory: {run_dir}")
    print(f"TensorBoard:   tensorboard --logdir {run_dir / 'tb'}")


FAILED_JOBS: list[str] = []  # the sweep jobs of this process that failed (their one-line errors)


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def reports_user_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ``UserError`` raised by a Hydra task into one line on stderr and its exit code.

    It must wrap the task itself: Hydra prints a traceback for any exception leaving the task. In a
    sweep the error is recorded in the job's directory and the sweep goes on with the next job.
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wrapper.started = True  # type: ignore[attr-defined]
        try:
            return task(*args, **kwargs)
        except UserError as exc:
            if not in_sweep():
                fail(str(exc), exc.exit_code)
            job_dir = Path(HydraConfig.get().runtime.output_dir)
            print(f"error: job {job_dir.name}: {exc}", file=sys.stderr)
            FAILED_JOBS.append(f"{job_dir.name}: {exc}")
            if job_dir.is_dir() and not (job_dir / "summary.json").exists():
                (job_dir / "error.txt").write_text(f"{exc}\n")
            return None
        except KeyboardInterrupt:
            fail("interrupted", 130)

    wrapper.started = False  # type: ignore[attr-defined]
    return wrapper


class RunRecord:
    """What a command-line run writes about itself once it owns its run directory: ``.hydra/``
    (the config as composed, Hydra's config and the overrides) and its log file. Called with the
    run directory (``on_start`` of ``run_search``/``run_train``); ``close()`` at the end."""

    def __init__(self, cfg: DictConfig):
        self.task_cfg = OmegaConf.to_container(cfg, resolve=False)
        self.hydra_dir = Path(HydraConfig.get().runtime.output_dir)
        self.run_dir: Path | None = None
        self.handler: logging.Handler | None = None

    def __call__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        hydra_cfg = HydraConfig.get()
        folder = self.run_dir / ".hydra"
        if not folder.exists():  # a resumed run keeps the record of the run that made it
            folder.mkdir(parents=True)
            (folder / "config.yaml").write_text(OmegaConf.to_yaml(self.task_cfg))
            (folder / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_cfg}))
            (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(list(hydra_cfg.overrides.task)))
        self.handler = logging.FileHandler(self.run_dir / f"{hydra_cfg.job.name}.log")
        self.handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(self.handler)

    def close(self) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
            self.handler = None
        # The directory Hydra made stays empty when the run continued elsewhere (resume=) or was
        # refused before it started: it goes, so that nothing is left behind.
        if self.run_dir is None or self.run_dir.resolve() != self.hydra_dir.resolve():
            try:
                self.hydra_dir.rmdir()
            except OSError:
                pass


# The keys a resumed run may take from the command line besides resume= itself.
_WHERE = ("device", "threads", "log.progress")


def changed_on_command_line(cfg: DictConfig, config_name: str) -> dict[str, Any]:
    """The config values the command line's overrides set: the keys where ``cfg`` differs from the
    same config composed without them (a resumed run must agree with its saved config on these)."""
    from hydra import compose

    from nas.engine.rundir import flatten

    overrides = list(HydraConfig.get().overrides.task)
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "resume"] + [shared_configs_override()]
    try:
        bare = compose(config_name=config_name, overrides=kept)
    except Exception as exc:  # Hydra raises several types
        raise ConfigError(f"cannot compose the config for resume: {str(exc).splitlines()[0]}") from None
    given = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    base = flatten(OmegaConf.to_container(bare, resolve=True))  # type: ignore[arg-type]
    changed = {k: v for k, v in given.items() if base.get(k, object()) != v or k in _WHERE}
    changed.pop("resume", None)
    return changed


def run_command(cfg: DictConfig, command: str, to_config: Callable[[DictConfig], Any], run: Callable[..., dict],
                report: Callable[[Any, dict], Any]) -> Any:
    """The body of every command's Hydra task: validate the config, run it with the run directory
    Hydra chose (recorded once the run owns it), and let rank 0 report the summary."""
    from nas.distributed import launched_world

    config = to_config(cfg)
    changed = changed_on_command_line(cfg, command) if config.resume else None
    main = launched_world().is_main
    record = RunRecord(cfg) if main else None
    try:
        summary = run(config, Path(HydraConfig.get().runtime.output_dir), changed=changed, on_start=record)
    finally:
        if record is not None:
            record.close()
    return report(config, summary) if main else None


class SweepGuard(Callback):
    """Multirun: a sweep directory that already holds runs is refused before any job starts
    (a new sweep would otherwise mix its runs with the old ones)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            print(f"error: sweep directory {sweep_dir} already holds a sweep; choose a new hydra.sweep.dir",
                  file=sys.stderr)
            sys.exit(2)


_NOISE = ("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "reference_type=", "object_type=",
          "Config search path:", "provider=")


def one_line(hydra_error: str) -> str:
    """Hydra's multi-line composition error as one line (the hint lines and search path dropped;
    of a traceback, only the exception it ends with, e.g. a run directory Hydra could not create)."""
    parts = [line.strip() for line in hydra_error.splitlines()]
    parts = [p for p in parts if p and not p.startswith(_NOISE)]
    if any(p.startswith("Traceback") for p in parts):
        parts = parts[-1:]
    return " ".join(parts)


def run_hydra_main(hydra_main: Callable[[], Any], task: Callable[..., Any]) -> None:
    """Call a ``@hydra.main`` function so that Hydra's own errors read like ours.

    Until the task starts, stderr is held back: if Hydra then fails composing the config (an
    unknown key, a missing group option), its message is printed as one line and the exit code is
    2; otherwise what was held is passed on unchanged. After a sweep with failed jobs, the exit
    code is 1.
    """
    real_stderr, held = sys.stderr, io.StringIO()
    task.started = False  # type: ignore[attr-defined]  # a second call in one process starts afresh
    FAILED_JOBS.clear()

    class _Until(io.TextIOBase):
        def write(self, text: str) -> int:
            if getattr(task, "started", True):
                if held.tell():
                    real_stderr.write(held.getvalue())
                    held.seek(0)
                    held.truncate()
                return real_stderr.write(text)
            return held.write(text)

        def flush(self) -> None:
            real_stderr.flush()

    argv = list(sys.argv)
    extra = [shared_configs_override()]
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes a run directory: the other ranks learn its path from
        # rank 0 and must not leave a second directory (with a different timestamp) behind.
        extra += ["hydra.run.dir=.", "hydra/job_logging=disabled"]
    sys.argv = with_overrides(argv, extra)
    sys.stderr = _Until()
    try:
        hydra_main()
    except SystemExit as exc:
        if exc.code == 1 and not getattr(task, "started", True):
            message = one_line(held.getvalue()) or "invalid configuration"
            held.seek(0)
            held.truncate()
            sys.stderr = real_stderr
            fail(message, 2)
        raise
    finally:
        sys.argv = argv
        sys.stderr = real_stderr
        if held.tell():
            real_stderr.write(held.getvalue())
    if FAILED_JOBS:
        fail(f"{len(FAILED_JOBS)} job(s) of the sweep failed (each directory has error.txt): "
             + "; ".join(FAILED_JOBS), 1)
