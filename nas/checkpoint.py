"""Checkpoints and result files, written so that a crash never leaves a half-written file.

Every write goes to a temporary file in the same directory and is renamed over the target: on
POSIX the rename is atomic, so readers see either the old file or the new one. Checkpoints are
plain dicts of tensors and Python scalars so that ``torch.load(weights_only=True)`` can read them
(no pickled code runs when a checkpoint is opened).
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.errors import CheckpointError


def _atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
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


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict."""
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a bad file is a one-line ``CheckpointError``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({reason})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by nas")
    return state
