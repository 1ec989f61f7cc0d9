"""``nas-tune``: the Hydra command line of a tuning study (``python -m nas.tune`` works too).

Hydra's own Optuna sweeper cannot prune (hydra#1710): a sweep job is a whole run, with no way to
report an epoch or be stopped after one. So tuning is a command of its own whose trials run in
process through the engine. The study directory is Hydra's run directory, ``runs/tune/<name>``
by default, the same for every session of a study: running the same command again resumes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.cli import RunRecord, config_dir, in_sweep, reports_user_errors, run_hydra_main
from nas.errors import ConfigError
from nas.tune.config import register_tune_configs, to_tune_config

register_tune_configs()


def report(result: dict[str, Any]) -> float | None:
    """The end of a study in a few lines: counts, epochs, the best trial and how to rerun it."""
    n, epochs = result["trials"], result["epochs"]
    ratio = f" ({epochs['ratio']:.0%} of the {epochs['without_pruning']} without pruning)" if epochs["ratio"] else ""
    print(f"\nstudy {result['study']}: {n['finished']} trials finished ({n['complete']} complete, {n['pruned']} pruned"
          f"{', ' + str(n['fail']) + ' failed' if n['fail'] else ''}), {epochs['spent']} epochs{ratio}, "
          f"{result['wall_time_s']:.0f} s")
    best = result.get("best")
    if best is not None:
        (metric, value), = best["values"].items()
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        print(f"best {metric} {value:.4f} (trial {best['trial']}): {params}")
        print(f"reproduce: {best['reproduce']}")
    for queued in result.get("queued", []):  # e.g. the untuned defaults: what the best is measured against
        values = "  ".join(f"{m} {v:.4f}" for m, v in (queued["values"] or {}).items()) or queued["state"]
        print(f"queued trial {queued['trial']}: {values}")
    for point in result.get("pareto_front", []):
        values = "  ".join(f"{m} {v:.4g}" for m, v in point["values"].items())
        print(f"Pareto trial {point['trial']}: {values}   {point['reproduce']}")
    if best is None and not result.get("pareto_front"):
        print("no trial completed yet")
    study_dir = Path(result["study_dir"])
    print(f"study directory: {study_dir}   (trials.csv, best.json, plots/)")
    print(f"TensorBoard:     tensorboard --logdir {study_dir}")
    return best["value"] if best is not None else None


@reports_user_errors
def tune_task(cfg: DictConfig) -> float | None:
    from nas.tune.study import run_study  # heavy imports after the config is known to be valid

    if in_sweep():
        raise ConfigError("nas-tune runs one study per command (no -m); parallel trials: tune.workers=N")
    record = RunRecord(cfg)  # first: its close() removes Hydra's empty directory when the study is refused
    try:
        config = to_tune_config(cfg)
        result = run_study(config, Path(HydraConfig.get().runtime.output_dir), on_start=record,
                           echo=lambda line: print(line, flush=True))
    finally:
        record.close()
    return report(result)


@hydra.main(version_base="1.3", config_path=config_dir("tune"), config_name="tune")
def _hydra_main(cfg: DictConfig) -> float | None:
    return tune_task(cfg)


def main() -> None:
    run_hydra_main(_hydra_main, tune_task)


if __name__ == "__main__":
    main()
