"""Shared plumbing of the Hydra command-line entry points (``nas-search``, ``nas-train``).

Hydra finds the YAML groups in ``configs/``: at the top of the repository for a source checkout or
an editable install, inside the package (``nas/configs``) for a regular install. User errors end
as one line on stderr with a non-zero exit status: 2 for configuration errors (ours, and Hydra's
own composition errors such as an unknown key), 1 for the rest.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import UserError

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> str:
    for candidate in (_PACKAGE_DIR / "configs", _PACKAGE_DIR.parent / "configs"):
        if (candidate / "search.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"nas configs not found next to {_PACKAGE_DIR}; reinstall the package")


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def print_run_location(run_dir: str | Path) -> None:
    """Where a finished run lives (a resumed run continues in its own directory) and how to look."""
    run_dir = Path(run_dir)
    print(f"run directory: {run_dir}")
    print(f"TensorBoard:   tensorboard --logdir {run_dir / 'tb'}")


def reports_user_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ``UserError`` raised by a Hydra task into one line on stderr and its exit code.

    It must wrap the task itself: Hydra prints a traceback for any exception leaving the task.
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wrapper.started = True  # type: ignore[attr-defined]
        try:
            return task(*args, **kwargs)
        except UserError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    wrapper.started = False  # type: ignore[attr-defined]
    return wrapper


_NOISE = ("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "reference_type=", "object_type=",
          "Config search path:", "provider=")


def one_line(hydra_error: str) -> str:
    """Hydra's multi-line composition error as one line (the hint lines and search path dropped)."""
    parts = [line.strip() for line in hydra_error.splitlines()]
    return " ".join(p for p in parts if p and not p.startswith(_NOISE))


def run_hydra_main(hydra_main: Callable[[], Any], task: Callable[..., Any]) -> None:
    """Call a ``@hydra.main`` function so that Hydra's own errors read like ours.

    Until the task starts, stderr is held back: if Hydra then fails composing the config (an
    unknown key, a missing group option), its message is printed as one line and the exit code is
    2; otherwise what was held is passed on unchanged.
    """
    real_stderr, held = sys.stderr, io.StringIO()
    task.started = False  # type: ignore[attr-defined]  # a second call in one process starts afresh

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

    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes a run directory: the other ranks learn its path from
        # rank 0 and must not leave a second directory (with a different timestamp) behind.
        sys.argv += ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
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
        sys.stderr = real_stderr
        if held.tell():
            real_stderr.write(held.getvalue())
