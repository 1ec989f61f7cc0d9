"""What a study tells its user in text: one line per finished trial, ``trials.csv`` and ``best.json``.

Both files are rewritten (atomically) after every trial by the worker that finished it, so a study
that is still running — or was killed — can be read at any time. ``best.json`` holds the best
trial (one objective) or the Pareto front (two), each with its parameters, values and the exact
``nas-train``/``nas-search`` command that reruns it at full fidelity; the finished-trial counts;
the epochs the study spent against what the same trials would have cost without pruning; and the
queued trials (e.g. the untuned defaults), to compare the best against.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.checkpoint import atomic_write_text, write_json
from nas.tune.plan import StudyPlan
from nas.tune.trial import Outcome

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def shown(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial but the surplus ones (given back unrun by a worker that asked too late)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (two); empty before a trial completes."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    return [study.best_trial]


def progress_line(outcome: Outcome, study: optuna.Study, plan: StudyPlan, finished: int, budget: int) -> str:
    """One line for a finished trial: verdict, epochs, values, parameters, time, the best so far."""
    params = " ".join(f"{k}={number(v)}" for k, v in outcome.params.items())
    if outcome.state == "complete":
        verdict = f"complete ({outcome.epochs} epoch{'s' if outcome.epochs != 1 else ''})"
        values = "  ".join(f"{m} {number(v)}" for m, v in zip(plan.objective.metrics, outcome.values or []))
    elif outcome.state == "pruned":
        verdict = f"pruned after {outcome.epochs}/{outcome.max_epochs} epochs"
        values = f"{plan.objective.first} {number(outcome.curve[-1][1])}" if outcome.curve else ""
    else:
        verdict, values = "failed", outcome.note
    line = f"[{finished}/{budget}] trial {outcome.number} {verdict}  {values}  {params}  {outcome.seconds:.1f} s"
    best = best_trials(study)
    if len(best) == 1 and not plan.objective.multi:
        line += f"  | best {number(best[0].value)} (trial {best[0].number})"
    elif best:
        line += f"  | Pareto front: {len(best)} trials"
    return line


def trial_rows(study: optuna.Study, plan: StudyPlan) -> tuple[list[str], list[dict[str, Any]]]:
    metrics = list(plan.objective.metrics)
    header = ["number", "state", *metrics, "epochs", "max_epochs", *plan.space, "stop_reason", "duration_s",
              "retry_of", "run_dir", "error"]
    rows = []
    for t in shown(study):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name.lower()}
        values = t.values if t.state == TrialState.COMPLETE else None
        if t.state == TrialState.PRUNED and t.intermediate_values:  # a pruned trial's last report
            values = [t.intermediate_values[max(t.intermediate_values)]]
        for i, metric in enumerate(metrics):
            row[metric] = values[i] if values and i < len(values) else ""
        row.update({k: t.params.get(k, "") for k in plan.space})
        row.update({
            "epochs": t.user_attrs.get("epochs", ""), "max_epochs": t.user_attrs.get("max_epochs", ""),
            "stop_reason": t.user_attrs.get("stop_reason", ""),
            "duration_s": round(t.duration.total_seconds(), 3) if t.duration else "",
            "retry_of": t.user_attrs.get("retry_of", ""), "run_dir": t.user_attrs.get("run_dir", ""),
            "error": t.user_attrs.get("error", ""),
        })
        rows.append(row)
    return header, rows


def describe_trial(t: FrozenTrial, plan: StudyPlan) -> dict[str, Any]:
    values = dict(zip(plan.objective.metrics, t.values or []))
    return {
        "trial": t.number,
        "params": dict(t.params),
        "values": values,
        **({"value": t.value} if not plan.objective.multi else {}),
        "epochs": t.user_attrs.get("epochs"),
        "run_dir": t.user_attrs.get("run_dir"),
        "reproduce": plan.reproduce(dict(t.params)),
    }


def summary(study: optuna.Study, plan: StudyPlan) -> dict[str, Any]:
    """The content of ``best.json``."""
    trials = shown(study)
    finished = [t for t in trials if t.state in FINISHED]
    spent = sum(int(t.user_attrs.get("epochs", 0)) for t in finished)
    full = sum(int(t.user_attrs.get("max_epochs", 0)) for t in finished)
    best = [describe_trial(t, plan) for t in best_trials(study)]
    retried = {t.user_attrs.get("retried_from") for t in trials}
    # the queued trials (the baseline), each once: a run that died is replaced by its retry
    queued = [t for t in trials if "enqueued" in t.user_attrs
              and not (t.state == TrialState.FAIL and t.number in retried)]
    result: dict[str, Any] = {
        "study": plan.cfg.name,
        "command": plan.command.cli,
        "objectives": [{"metric": m, "direction": d} for m, d in zip(plan.objective.metrics,
                                                                     plan.objective.directions)],
        "sampler": plan.cfg.tune.sampler,
        "pruner": plan.cfg.tune.pruner,
        "trials": {"budget": plan.cfg.tune.trials, "finished": len(finished),
                   **{s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}},
        "epochs": {"spent": spent, "without_pruning": full, "ratio": spent / full if full else None},
    }
    if plan.objective.multi:
        result["pareto_front"] = best
    else:
        result["best"] = best[0] if best else None
    result["queued"] = [{"trial": t.number, "state": t.state.name.lower(), "params": dict(t.params),
                         "values": dict(zip(plan.objective.metrics, t.values or [])) or None} for t in queued]
    return result


def write_tables(study: optuna.Study, plan: StudyPlan, study_dir: Path) -> dict[str, Any]:
    """``trials.csv`` and ``best.json`` from the storage as it is now; returns ``best.json``'s content."""
    header, rows = trial_rows(study, plan)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=header)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    atomic_write_text(study_dir / "trials.csv", text.getvalue())
    result = summary(study, plan)
    write_json(study_dir / "best.json", result)
    return result
