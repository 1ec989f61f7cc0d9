"""``nas-train``: the Hydra command line of the retrain (``python -m nas.train`` works too)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from nas.cli import config_dir, print_run_location, reports_user_errors, run_command, run_hydra_main
from nas.train.config import TrainConfig, register_train_configs, to_train_config

register_train_configs()


def report(config: TrainConfig, summary: dict[str, Any]) -> float | None:
    if config.profile_only:
        print(f"run directory: {summary['run_dir']}")
        return None
    print(f"\ntest top-1 {summary['top1']:.4f}   top-5 {summary['top5']:.4f}   (best top-1 {summary['best_top1']:.4f} "
          f"at epoch {summary['best_epoch']})")
    print(f"params {summary['params']:,}   MACs {summary['macs'] / 1e6:.2f} M   "
          f"{summary['images_per_s']:.1f} images/s   wall time {summary['wall_time_s']:.1f} s")
    print_run_location(summary["run_dir"])
    return summary["top1"]


@reports_user_errors
def train_task(cfg: DictConfig) -> float | None:
    from nas.train.task import run_train  # heavy imports after the config is known to be valid

    return run_command(cfg, "train", to_train_config, run_train, report)


@hydra.main(version_base="1.3", config_path=config_dir("train"), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return train_task(cfg)


def main() -> None:
    run_hydra_main(_hydra_main, train_task)


if __name__ == "__main__":
    main()
