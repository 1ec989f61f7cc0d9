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

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nas.engine import write_json

log = logging.getLogger("nas.search")


def aggregate_runs(sweep_dir: str | Path) -> dict[str, Any]:
    """Mean and std of the final validation accuracy of every run under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    runs = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        runs.append({"run": summary_path.parent.name, "seed": summary.get("seed"),
                     "final_val_acc": summary.get("final_val_acc"), "genotype": summary.get("genotype_text")})
    accs = [r["final_val_acc"] for r in runs if r["final_val_acc"] is not None]
    result: dict[str, Any] = {"runs": runs, "n": len(accs)}
    if accs:
        result["final_val_acc"] = {
            "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs),
            "max": max(accs),
            "note": "mean ± std over all runs of the sweep; max is a best-of-N figure",
        }
    return result


class AggregateSeeds(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        result = aggregate_runs(sweep_dir)
        write_json(sweep_dir / "aggregate.json", result)
        if "final_val_acc" in result:
            acc = result["final_val_acc"]
            print(f"{result['n']} runs: final val accuracy {acc['mean']:.4f} ± {acc['std']:.4f} "
                  f"(aggregate: {sweep_dir / 'aggregate.json'})")
