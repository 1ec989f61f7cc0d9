"""``nas-search``: the Hydra command line of the search (``python -m nas.search`` works too)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from nas.cli import config_dir, print_run_location, reports_user_errors, run_command, run_hydra_main
from nas.search.config import SearchConfig, register_configs, to_search_config

register_configs()


def report(config: SearchConfig, summary: dict[str, Any]) -> float | None:
    print(f"\nderived genotype: {summary['genotype_text']}")
    if "evaluations" in summary:  # a discrete search (evolution, reinforce, random_search)
        best = summary["best"]["score"]
        print(f"best {summary['evaluator']} score {'n/a' if best is None else f'{best:.4g}'} of "
              f"{summary['evaluations_done']} evaluations   wall time: {summary['wall_time_s']:.1f} s; "
              f"retrain it with nas-train genotype={summary['run_dir']}")
    elif summary["final_val_acc"] is None:  # algorithm=random trains nothing
        print(f"sampled at random (seed {summary['seed']}): retrain it with nas-train genotype={summary['run_dir']}")
    else:
        print(f"final val accuracy: {summary['final_val_acc']:.4f}   wall time: {summary['wall_time_s']:.1f} s")
    known = summary.get("benchmark")
    if known and known.get("found"):  # the table's known answer, reported (the search never read test_acc)
        print(f"benchmark ({known['dataset'] or known['table']}): val {known['val_acc']:.2f} %  "
              f"test {known['test_acc']:.2f} %  rank {known['rank']:,} of {known['cells']:,} by test accuracy "
              f"(optimum {known['optimum_test_acc']:.2f} %, mean cell {known['mean_test_acc']:.2f} %)")
    if summary["stop_reason"] != "epoch limit":
        print(f"stopped: {summary['stop_reason']}")
    print_run_location(summary["run_dir"])
    # last, in the form of Katib's DARTS example: one line a Katib metrics filter can collect
    print(f"Best-Genotype={''.join(summary['genotype_text'].split())}")
    return summary["final_val_acc"]


@reports_user_errors
def search_task(cfg: DictConfig) -> float | None:
    from nas.search.task import run_search  # heavy imports after the config is known to be valid

    return run_command(cfg, "search", to_search_config, run_search, report)


@hydra.main(version_base="1.3", config_path=config_dir("search"), config_name="search")
def _hydra_main(cfg: DictConfig) -> float | None:
    return search_task(cfg)


def main() -> None:
    run_hydra_main(_hydra_main, search_task)


if __name__ == "__main__":
    main()
