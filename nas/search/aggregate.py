"""After a multirun (``nas-search -m seed=0,1,2``): one ``aggregate.json`` for the whole sweep.

It reports mean ± standard deviation over the runs, never only the best run: searched cells vary a
lot between seeds, and a "best of N" figure must be labelled as such. It is a Hydra callback, so it
runs once, after every job of the sweep has finished.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas.checkpoint import write_json
from nas.cli import SweepGuard
from nas.search.diagnostics import param_free_scalars

log = logging.getLogger("nas.search")


# Per-run figures reported as mean ± std: the final accuracy and the final collapse diagnostics.
FIGURES = ("final_val_acc", "collapse/param_free/normal", "collapse/param_free/reduce", "alpha/entropy/normal",
           "alpha/entropy/reduce", "hessian/eig_max")


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "note": "mean ± std over all runs of the sweep; max is a best-of-N figure",
    }


def final_param_free(summary: dict[str, Any]) -> dict[str, int]:
    """Parameter-free ops in the cells a run reports (after DARTS-PT selection, when it ran)."""
    return param_free_scalars(summary.get("genotype") or {})


def aggregate_runs(sweep_dir: str | Path) -> dict[str, Any]:
    """Mean and std over every run under ``sweep_dir`` of the final validation accuracy and of the
    last epoch's collapse diagnostics (how many parameter-free ops the derived cells hold, ...)."""
    sweep_dir = Path(sweep_dir)
    runs = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        last = (summary.get("diagnostics") or [{}])[-1]
        runs.append({"run": summary_path.parent.name, "seed": summary.get("seed"),
                     "final_val_acc": summary.get("final_val_acc"), "genotype": summary.get("genotype_text"),
                     "stop_reason": summary.get("stop_reason"),
                     **{k: v for k, v in last.items() if k in FIGURES},
                     **final_param_free(summary)})
    accs = [r["final_val_acc"] for r in runs if r["final_val_acc"] is not None]
    failed = [{"run": p.parent.name, "error": p.read_text().strip()} for p in sorted(sweep_dir.glob("*/error.txt"))]
    result: dict[str, Any] = {"sweep_dir": str(sweep_dir), "covers": [r["run"] for r in runs], "runs": runs,
                              "n": len(runs), "failed": failed}
    for figure in FIGURES:
        values = [r[figure] for r in runs if r.get(figure) is not None]
        if values:
            result[figure] = _spread(values)
    result["n_with_accuracy"] = len(accs)
    return result


class AggregateSeeds(SweepGuard):
    """Refuses a reused sweep directory at the start (``SweepGuard``); writes ``aggregate.json`` at the end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        result = aggregate_runs(sweep_dir)
        write_json(sweep_dir / "aggregate.json", result)
        if "final_val_acc" in result:
            acc = result["final_val_acc"]
            print(f"{acc['n']} runs: final val accuracy {acc['mean']:.4f} ± {acc['std']:.4f} "
                  f"(aggregate: {sweep_dir / 'aggregate.json'})")
        if "collapse/param_free/normal" in result:
            free = result["collapse/param_free/normal"]
            print(f"parameter-free ops in the normal cell: {free['mean']:.2f} ± {free['std']:.2f}")
        if result["failed"]:
            print(f"{len(result['failed'])} run(s) failed and are not in the aggregate: "
                  f"{', '.join(f['run'] for f in result['failed'])}")
