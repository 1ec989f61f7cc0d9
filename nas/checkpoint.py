"""Checkpoints and result files, written so that a crash never leaves a half-written file.

Every write goes to a temporary file in the same directory and is renamed over the target: on
POSIX the rename is atomic, so readers see either the old file or the new one. Checkpoints are
plain dicts of tensors and Python scalars so that ``torch.load(weights_only=True)`` can read them
(no pickled code runs when a checkpoint is opened).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.errors import CheckpointError

_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then put back
os.umask(_UMASK)


def _atomic_write(path: str | Path, write: Callable[[str], None], keep_previous: Path | None = None) -> None:
    """Write through a temporary file renamed over ``path``; with ``keep_previous``, the old file is
    renamed there first (a reader then finds the new file, or at worst the previous one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; results are as readable as any file
        write(tmp)
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    _atomic_write(path, write)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """A result file (``summary.json``, ...) written atomically; NaN is refused, never written."""
    try:
        text = json.dumps(payload, indent=2, default=float, allow_nan=False)
    except ValueError:
        raise ValueError(f"refusing to write a non-finite number into {path}") from None
    atomic_write_text(path, text + "\n")


def remove_temporary_files(folder: str | Path) -> None:
    """Delete the temporary files of writes that a killed process never finished (``.<name>.*.tmp``)."""
    folder = Path(folder)
    for tmp in [*folder.glob(".*.tmp"), *folder.glob("checkpoints/.*.tmp")]:
        tmp.unlink(missing_ok=True)


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict."""
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def save_rotating(folder: str | Path, state: dict[str, Any], keep: int = 2) -> Path:
    """Save ``folder/last.pt``, keeping the one before it as ``previous.pt`` (``keep=2``)."""
    folder = Path(folder)
    last = folder / "last.pt"
    _atomic_write(last, lambda tmp: torch.save(state, tmp), keep_previous=folder / "previous.pt" if keep > 1 else None)
    return last


def resolve(path: str | Path) -> Path:
    """The checkpoint file meant by ``path``: a file, a run directory or its ``checkpoints/``."""
    path = Path(path).expanduser()
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        for name in ("last.pt", "previous.pt"):  # previous.pt: a crash between the two renames
            if (folder / name).is_file():
                return folder / name
        return folder / "last.pt"
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a bad file is a one-line ``CheckpointError``."""
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # a class or function, not data
            raise CheckpointError(f"checkpoint {path} was refused: it holds objects other than tensors and plain "
                                  "data (code could run on loading it), so it was not loaded") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, RecursionError, MemoryError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first_line(exc)})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by nas")
    return state


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
