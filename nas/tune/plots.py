"""The study's plots as PNG files in ``<study dir>/plots/``, drawn by Optuna's matplotlib backend.

* ``history.png``: the objective of each complete trial and the best so far (the first objective
  of a two-objective study);
* ``intermediate.png``: every trial's per-epoch objective — the learning curves, the pruned ones
  ending where the pruner stopped them;
* ``importance.png``: how much each parameter explains the objective (``optuna.importance``);
* ``pareto.png`` (two objectives): every trial in objective space, the Pareto front highlighted.

A plot that cannot say anything yet (too few complete trials for importances, no per-epoch
values) is still written, as a figure that says why, so a study always has the same files.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.tune.plan import StudyPlan

MIN_TRIALS_FOR_IMPORTANCE = 3


def _placeholder(path: Path, title: str, message: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.axis("off")
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    figure.savefig(path, dpi=100)


def _save(path: Path, draw: Callable[[], Any]) -> None:
    import matplotlib.pyplot as plt

    axes = draw()
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(8, 5)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_plots(study: optuna.Study, plan: StudyPlan, folder: Path) -> dict[str, str]:
    """Draw every plot into ``folder``; returns {file name: what it shows or why it is empty}."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; never a window
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    metrics = plan.objective.metrics
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    first: Callable[[Any], float] | None = (lambda t: t.values[0]) if plan.objective.multi else None
    notes: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's plots are "experimental"; matplotlib's layout notes
        if complete:
            _save(folder / "history.png", lambda: optuna_plots.plot_optimization_history(
                study, target=first, target_name=metrics[0]))
            notes["history.png"] = f"{metrics[0]} of each complete trial and the best so far"
        else:
            _placeholder(folder / "history.png", "optimisation history", "no trial has completed yet")
            notes["history.png"] = "no trial has completed yet"
        curves = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
        if curves:
            def curves_plot() -> Any:
                axes = optuna_plots.plot_intermediate_values(study)
                axes.set_xlabel("epoch")  # Optuna's "step": the fidelity here
                axes.set_ylabel(metrics[0])
                return axes

            _save(folder / "intermediate.png", curves_plot)
            notes["intermediate.png"] = f"{metrics[0]} after each epoch of every trial (pruned ones end early)"
        else:
            why = ("two objectives: Optuna keeps per-epoch values of one objective only" if plan.objective.multi
                   else "no trial has reported a per-epoch value yet")
            _placeholder(folder / "intermediate.png", "intermediate values", why)
            notes["intermediate.png"] = why
        notes["importance.png"] = _importance(study, plan, folder / "importance.png", complete, first)
        if plan.objective.multi:
            if complete:
                _save(folder / "pareto.png", lambda: optuna_plots.plot_pareto_front(study, target_names=list(metrics)))
                notes["pareto.png"] = f"{metrics[0]} against {metrics[1]}; the front is highlighted"
            else:
                _placeholder(folder / "pareto.png", "Pareto front", "no trial has completed yet")
                notes["pareto.png"] = "no trial has completed yet"
    return notes


def _importance(study: optuna.Study, plan: StudyPlan, path: Path, complete: list[Any],
                first: Callable[[Any], float] | None) -> str:
    """The parameter importances, or a figure that says why there are none yet."""
    from optuna.visualization import matplotlib as optuna_plots

    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        why = (f"parameter importances need {MIN_TRIALS_FOR_IMPORTANCE} complete trials; "
               f"the study has {len(complete)}")
        _placeholder(path, "parameter importances", why)
        return why
    try:
        _save(path, lambda: optuna_plots.plot_param_importances(study, target=first,
                                                                target_name=plan.objective.first))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. every complete trial has the same parameters
        why = f"parameter importances could not be computed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        _placeholder(path, "parameter importances", why)
        return why
    return f"importance of each parameter for {plan.objective.first} (optuna.importance)"
