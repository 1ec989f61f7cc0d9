"""``nas-rank``: the Hydra command line of a ranking (``python -m nas.rank`` works too)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from nas.cli import config_dir, reports_user_errors, run_command, run_hydra_main
from nas.rank.config import RankConfig, register_rank_configs, to_rank_config

register_rank_configs()


def report(config: RankConfig, summary: dict[str, Any]) -> None:
    from nas.rank.table import describe

    print(f"\n{len(summary['genotypes'])} genotypes, {len(summary['evaluators'])} evaluators, "
          f"{summary['wall_time_s']:.1f} s\n")
    print(describe(summary))
    print(f"\ntable: {summary['table']['csv']}  (and scores.json, summary.json)")


@reports_user_errors
def rank_task(cfg: DictConfig) -> None:
    from nas.rank.run import run_rank  # heavy imports after the config is known to be valid

    run_command(cfg, "rank", to_rank_config, run_rank, report)


@hydra.main(version_base="1.3", config_path=config_dir("rank"), config_name="rank")
def _hydra_main(cfg: DictConfig) -> None:
    rank_task(cfg)


def main() -> None:
    run_hydra_main(_hydra_main, rank_task)


if __name__ == "__main__":
    main()
