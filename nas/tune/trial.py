"""One trial: the parameters Optuna suggests, one run of the tuned command with them, the verdict.

The trial runs in this process through the engine, into ``<study dir>/trials/<number>/`` — a run
directory like any other (``summary.json``, ``tb/``, checkpoints, the command's log) plus
``trial.json`` (its number, parameters and command line). Its verdict:

* complete: the run reached its last epoch; the objective values come from its summary;
* pruned: the pruner stopped it (the reporter hook ended the run; ``summary.json`` says when), or
  its loss diverged (a learning rate too high is an answer, not an error, and it counts toward the
  budget like any other pruned trial);
* failed: the combination of parameters is not a valid config, or the run failed in a way the
  user can read (a one-line error, kept in the trial's attributes and the CSV).

A missing objective metric stops the whole study (every trial would fail the same way). A signal
(Ctrl-C, SIGTERM) stops the trial after its current step; it is marked failed and queued to run
again, so the next command resumes the study without losing it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.engine import Interrupted, NonFiniteLoss
from nas.errors import UserError
from nas.tune.config import ParamSpec
from nas.tune.objective import MissingMetric
from nas.tune.plan import StudyPlan
from nas.tune.reporter import TrialReporter
from nas.tune.storage import Heartbeat, retry

log = logging.getLogger("nas.tune")


class StudyInterrupted(UserError):
    """A signal stopped a trial: the study stops; running the command again resumes it."""


@dataclass
class Outcome:
    """What a finished trial left, for the progress line."""

    number: int
    state: str  # complete | pruned | failed
    params: dict[str, Any]
    values: list[float] | None = None
    epochs: int = 0
    max_epochs: int = 0
    note: str = ""
    seconds: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """The trial's parameters (a queued trial — the baseline, a retry — gets its fixed ones)."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            params[key] = trial.suggest_categorical(key, list(spec.choices or []))
        elif spec.type == "int":
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1),  # type: ignore[arg-type]
                                            log=spec.log)
        else:
            params[key] = trial.suggest_float(key, float(spec.low), float(spec.high), step=spec.step,  # type: ignore[arg-type]
                                              log=spec.log)
    return params


@contextmanager
def trial_logging(job: str) -> Iterator[Any]:
    """While a trial runs its log goes to its own ``<run dir>/<job>.log``; the handlers already
    there (the console, the study's ``tune.log``) keep only warnings, so the tuner's output stays
    one line per trial. Yields the ``on_start`` callback that opens the trial's log file."""
    root, nas_log = logging.getLogger(), logging.getLogger("nas")
    saved = [(h, h.level) for h in root.handlers]
    saved_level = nas_log.level
    opened: list[logging.Handler] = []

    def on_start(run_dir: Path) -> None:
        handler = logging.FileHandler(Path(run_dir) / f"{job}.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(handler)
        opened.append(handler)

    for handler, _ in saved:
        handler.setLevel(max(handler.level, logging.WARNING))
    if nas_log.getEffectiveLevel() > logging.INFO:
        nas_log.setLevel(logging.INFO)
    try:
        yield on_start
    finally:
        for handler in opened:
            root.removeHandler(handler)
            handler.close()
        for handler, level in saved:
            handler.setLevel(level)
        nas_log.setLevel(saved_level)


def run_trial(study: optuna.Study, trial: optuna.Trial, plan: StudyPlan, study_dir: Path,
              threads: int | None, storage: Any) -> Outcome:
    """Run ``trial`` to its verdict and tell the study; returns what it left."""
    start = time.time()
    params = suggest(trial, plan.space)
    run_dir = study_dir / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    overrides = plan.overrides(params, threads)
    outcome = Outcome(trial.number, "failed", params)

    def fail(note: str) -> Outcome:
        trial.set_user_attr("error", note)
        study.tell(trial, state=TrialState.FAIL)
        outcome.note, outcome.seconds = note, time.time() - start
        return outcome

    try:
        cfg = plan.command.config(overrides)
    except UserError as exc:
        return fail(f"invalid config: {exc}")
    outcome.max_epochs = plan.command.epochs(cfg)
    trial.set_user_attr("max_epochs", outcome.max_epochs)
    reporter = TrialReporter(trial, plan.objective, plan.command, plan.cfg.tune.pruner)

    with trial_logging(plan.command.name) as open_log, Heartbeat(storage, trial):
        def on_start(directory: Path) -> None:
            (Path(directory) / "trial.json").write_text(json.dumps({
                "study": plan.cfg.name, "trial": trial.number, "params": params, "overrides": overrides,
                "reproduce": plan.reproduce(params), "retry_of": trial.user_attrs.get("retry_of"),
                "pid": os.getpid()}, indent=2) + "\n")
            open_log(directory)

        try:
            summary = plan.command.run(cfg, run_dir, [reporter], on_start)
        except NonFiniteLoss as exc:
            epochs = reporter.reported[-1][0] if reporter.reported else 0
            trial.set_user_attr("epochs", epochs)
            trial.set_user_attr("stop_reason", f"diverged: {exc}")
            study.tell(trial, state=TrialState.PRUNED)
            outcome.state, outcome.epochs, outcome.note = "pruned", epochs, "diverged (non-finite loss)"
            outcome.seconds, outcome.curve = time.time() - start, reporter.reported
            return outcome
        except MissingMetric as exc:
            fail(str(exc))
            raise
        except Interrupted as exc:
            study.tell(trial, state=TrialState.FAIL)
            retry(study, trial.number, params, trial.user_attrs)
            raise _interrupted(exc, trial.number) from None
        except UserError as exc:
            return fail(str(exc))
        except BaseException:  # a bug, or KeyboardInterrupt outside the engine's steps: run it again next time
            study.tell(trial, state=TrialState.FAIL)
            retry(study, trial.number, params, trial.user_attrs)
            raise

    outcome.epochs, outcome.curve = int(summary.get("epochs", 0)), reporter.reported
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("stop_reason", summary.get("stop_reason"))
    trial.set_user_attr("wall_time_s", summary.get("wall_time_s"))
    if reporter.reason:
        study.tell(trial, state=TrialState.PRUNED)
        outcome.state, outcome.note = "pruned", reporter.reason
    else:
        try:
            values = plan.objective.values(plan.command, summary)
        except MissingMetric as exc:
            fail(str(exc))
            raise
        study.tell(trial, values)
        outcome.state, outcome.values = "complete", values
    outcome.seconds = time.time() - start
    return outcome


def _interrupted(exc: Interrupted, number: int) -> StudyInterrupted:
    error = StudyInterrupted(f"{str(exc).split(';')[0]} in trial {number}, which will run again; run the same "
                             "command to resume the study")
    error.exit_code = exc.exit_code
    return error
