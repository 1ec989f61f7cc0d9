"""One study, one directory: the study directory is owned like a run owns its run directory.

The command that runs a study takes an exclusive lock (``.lock``, ``flock``) on its directory for
as long as it lives, so a second command on the same directory is refused at once. ``study.json``
records the study's definition (``StudyPlan.identity``); a directory that holds another study, or
anything that is not a study's, is refused and left as it is, unless it is the same study being
resumed. A refusal leaves no trace: a directory created for a study that was then refused (by
Hydra, or here) is removed again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from nas.checkpoint import write_json
from nas.engine.rundir import LOCK_NAME, lock_directory, write_holder
from nas.errors import ConfigError

DEFINITION_FILE = "study.json"
# What a study writes into its directory; anything else makes it not a study's directory.
OURS = {LOCK_NAME, DEFINITION_FILE, ".hydra", "tune.log", "journal.log", "journal.log.lock", "study.db", "trials",
        "plots", "tb", "trials.csv", "best.json"}


class StudyDirectory:
    """``with StudyDirectory(path).acquire(identity) as d:`` — the directory is this study's."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self.resuming = False
        self._was_empty = False

    def acquire(self, identity: dict[str, Any]) -> StudyDirectory:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"study directory {self.path} is not a directory")
        self._was_empty = not self.path.exists() or not any(self.path.iterdir())
        if self.path.is_dir():
            self._check(identity)  # before the lock file exists: a refused directory stays exactly as it was
        fd = lock_directory(self.path, "study directory", "another nas-tune",
                            "wait for it, or add workers with tune.workers")
        self._fd = fd
        try:
            self.resuming = self._check(identity)
        except ConfigError:
            self.release(refused=True)
            raise
        write_holder(fd)
        return self

    def _check(self, identity: dict[str, Any]) -> bool:
        """True when the directory holds this study (a resume); refuse another study's or a stranger's."""
        saved_file = self.path / DEFINITION_FILE
        if saved_file.is_file():
            try:
                saved = json.loads(saved_file.read_text()).get("definition")
            except (OSError, ValueError, AttributeError):
                raise ConfigError(f"study directory {self.path} has an unreadable {DEFINITION_FILE}; "
                                  "choose another directory") from None
            if saved != identity:
                changed = sorted(k for k in set(saved or {}) | set(identity)
                                 if (saved or {}).get(k) != identity.get(k))
                raise ConfigError(f"study directory {self.path} holds another study (it differs in "
                                  f"{', '.join(changed)}); choose another name= or hydra.run.dir=")
            return True
        strangers = sorted(p.name for p in self.path.iterdir() if p.name not in OURS)
        if strangers:
            raise ConfigError(f"{self.path} is not a study directory (it holds {', '.join(strangers[:5])}); "
                              "choose another name= or hydra.run.dir=")
        return False

    def record(self, identity: dict[str, Any], facts: dict[str, Any]) -> None:
        """Write ``study.json`` once the study is open (it then marks the directory as this study's)."""
        if not (self.path / DEFINITION_FILE).is_file():
            write_json(self.path / DEFINITION_FILE, {"definition": identity, **facts})

    def release(self, refused: bool = False) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if refused and self._was_empty:  # it was empty before: all of it is this refused command's
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StudyDirectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
