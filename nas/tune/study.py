"""A study from start (or resume) to reports: ``run_study(cfg, study_dir)``.

The order is what makes a refused study leave no trace: everything that can be checked without
touching anything is checked first (``StudyPlan.preflight``); a database storage is opened before
the study directory is taken (an unreachable one changes nothing); the directory is then locked
and must be free or hold this very study; only when the study is open is ``study.json`` written.

Then, once per study, the queued trials (``tune.enqueue``, e.g. the untuned defaults) are added;
on every start with an embedded storage, trials left running by a killed command are retried
(``nas.tune.storage``); the workers run; and the reports are drawn: ``trials.csv`` and
``best.json`` (also after every trial), plots and TensorBoard HParams. ``run_study`` is a plain
function (``nas-tune`` only calls it), so notebooks and tests tune without a command line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from nas.tune.config import TuneConfig, flatten
from nas.tune.hparams import write_hparams
from nas.tune.plan import StudyPlan
from nas.tune.plots import write_plots
from nas.tune.results import write_tables
from nas.tune.storage import embedded, open_storage, open_study, retry_running
from nas.tune.studydir import StudyDirectory
from nas.tune.worker import Job, run_workers, work

log = logging.getLogger("nas.tune")


def run_study(cfg: TuneConfig, study_dir: str | Path, on_start: Callable[[Path], None] | None = None,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run or resume the study ``cfg`` in ``study_dir``; returns ``best.json``'s content plus
    ``plots`` (file → what it shows) and ``study_dir``. ``on_start(study_dir)`` runs once the
    directory is this study's; ``echo`` receives the progress lines."""
    study_dir = Path(study_dir)
    started = time.time()
    plan = StudyPlan.of(cfg)
    base_cfg = plan.preflight()
    t = cfg.tune
    identity = plan.identity()
    storage = None if embedded(t.storage) else open_storage(t.storage, study_dir, t.heartbeat_s)
    directory = StudyDirectory(study_dir).acquire(identity)
    with directory:
        try:
            if storage is None:
                storage = open_storage(t.storage, study_dir, t.heartbeat_s)
            # The storage's own copy of the definition leaves out the storage URL: machines that
            # reach one database under different host names still join the same study.
            study = open_study(storage, cfg.name, list(cfg.directions), optuna.samplers.RandomSampler(),
                               optuna.pruners.NopPruner(), definition={k: v for k, v in identity.items()
                                                                       if k != "storage"})
        except Exception:
            directory.release(refused=not directory.resuming)
            raise
        directory.record(identity, {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "optuna": optuna.__version__})
        if on_start is not None:
            on_start(study_dir)
        if study.user_attrs.get("enqueued") is None:  # once per study, whichever command creates it
            study.set_user_attr("enqueued", len(t.enqueue))
            for i, params in enumerate(t.enqueue):
                study.enqueue_trial(flatten(params), user_attrs={"enqueued": i}, skip_if_exists=True)
        if embedded(t.storage):
            retried = retry_running(study)
            if retried:
                echo(f"retrying trial(s) {', '.join(map(str, retried))}, which a killed command left running")
        job = Job(cfg, study_dir, plan.command.epochs(base_cfg), started + t.time_s if t.time_s else None)
        log.info("study %s: %s %s, %d trial(s), %d worker(s), storage %s", cfg.name, plan.command.cli,
                 " ".join(plan.base), t.trials, t.workers, identity["storage"])
        if t.workers == 1:
            work(job, plan, storage, echo)
        else:
            run_workers(job)
        result = write_tables(study, plan, study_dir)
        result["plots"] = write_plots(study, plan, study_dir / "plots")
        write_hparams(study, plan, study_dir / "tb")
        result["study_dir"] = str(study_dir)
        result["wall_time_s"] = time.time() - started
        return result
