"""TensorBoard's HParams view over all finished trials: ``<study dir>/tb/``.

One HParams session per finished trial (``tb/trial_<number>``): its parameters, its verdict
(complete or pruned), the objective values (a pruned trial's last reported value) and the epochs it
ran. The folder is rewritten from the storage each time, so a resumed study shows every trial
once. Each trial's own learning curves are in its run directory's ``tb/``:
``tensorboard --logdir <study dir>`` shows both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nas.tune.plan import StudyPlan
from nas.tune.results import shown


def write_hparams(study: optuna.Study, plan: StudyPlan, folder: Path) -> int:
    """Write the sessions; returns how many."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(folder, ignore_errors=True)
    written = 0
    with SummaryWriter(log_dir=str(folder)) as writer:
        for t in shown(study):
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            if t.state == TrialState.COMPLETE:
                values = list(t.values)
            elif t.intermediate_values:
                values = [t.intermediate_values[max(t.intermediate_values)]]
            else:
                values = []
            metrics = {f"objective/{m}": v for m, v in zip(plan.objective.metrics, values)}
            metrics["trial/epochs"] = float(t.user_attrs.get("epochs", 0))
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in t.params.items()}
            hparams["state"] = t.state.name.lower()
            writer.add_hparams(hparams, metrics, run_name=f"trial_{t.number:04d}")
            written += 1
    return written
