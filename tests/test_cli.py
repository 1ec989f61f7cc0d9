"""The command line as a user meets it: exit codes, one-line errors, outputs left intact."""

import json

import pytest

from conftest import TINY_SEARCH, compose_search, run_cli
from nas.errors import ConfigError

BAD_VALUES = [
    (["space.ops=[sep_conv_3x3,sep_conv_9x9]"], "unknown op 'sep_conv_9x9'"),
    (["epochs=-1"], "epochs must be in [1, 100000], got -1"),
    (["derive.k=0"], "derive.k must be in [1, 2], got 0"),
    (["derive.k=3"], "derive.k must be in [1, 2], got 3"),
    (["data.train_portion=1.5"], "data.train_portion must be in (0.0, 1.0), got 1.5"),
    (["algorithm=asap", "algorithm.beta=1.5"], "algorithm.beta must be in (0.0, 1.0], got 1.5"),
    (["algorithm=asap", "algorithm.threshold=1.0"], "algorithm.threshold must be in [0.0, 1.0), got 1.0"),
    (["algorithm=asap", "algorithm.t0=0"], "algorithm.t0 must be in (0.0, 1000.0], got 0.0"),
    (["data=imagefolder"], "data=imagefolder needs data.root"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES)
def test_bad_config_values_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        compose_search(TINY_SEARCH + overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_config_value_exits_2_with_one_line_on_stderr(tmp_path):
    overrides, message = BAD_VALUES[0]
    result = run_cli(["nas.search", *TINY_SEARCH, *overrides, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_missing_cifar10_points_at_the_quickstart(tmp_path):
    result = run_cli(["nas.search", "data=cifar10", f"data.root={tmp_path / 'nowhere'}", "epochs=1",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 1
    assert "+experiment=quickstart" in result.stderr and "Traceback" not in result.stderr


def test_search_cli_writes_run_dir_and_refuses_to_overwrite_it(tmp_path):
    run_dir = tmp_path / "run"
    args = ["nas.search", *TINY_SEARCH, "epochs=1", "log.images=false", f"hydra.run.dir={run_dir}"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "derived genotype: Genotype(normal=" in first.stdout
    assert f"tensorboard --logdir {run_dir / 'tb'}" in first.stdout
    summary = (run_dir / "summary.json").read_text()
    assert json.loads(summary)["epochs"] == 1

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    assert (run_dir / "summary.json").read_text() == summary


def test_multirun_writes_one_run_dir_per_seed(tmp_path):
    result = run_cli(["nas.search", "-m", *TINY_SEARCH, "epochs=1", "log.images=false", "seed=0,1",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if (p / "summary.json").is_file())
    assert runs == ["0_seed0", "1_seed1"]
    aggregate = json.loads((tmp_path / "sweep" / "aggregate.json").read_text())
    assert aggregate["n"] == 2 and [r["seed"] for r in aggregate["runs"]] == [0, 1]
    assert "mean" in aggregate["final_val_acc"] and "std" in aggregate["final_val_acc"]
    assert "± " in result.stdout


@pytest.mark.parametrize("config_name", ["search", "train"])
def test_slurm_cluster_config_selects_the_submitit_launcher(config_name):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    from conftest import compose_config
    from nas.search.config import register_configs
    from nas.train.config import register_train_configs

    register_configs()
    register_train_configs()
    cfg = compose_config(config_name, ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=3"],
                         return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min == 1440 and cfg.seed == 3
