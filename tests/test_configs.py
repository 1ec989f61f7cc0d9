"""Every file of every config group composes into a valid config, for each command that uses it."""

from pathlib import Path

import pytest

from conftest import compose_config
from nas.cli import config_dir, config_root
from nas.search.config import register_configs, to_search_config
from nas.train.config import register_train_configs, to_train_config

COMMANDS = {"search": (register_configs, to_search_config), "train": (register_train_configs, to_train_config)}


def options(command: str) -> list[tuple[str, str]]:
    """(group, option) for every YAML file a command can select: its own groups and the shared data/."""
    own = Path(config_dir(command))
    found = [(p.parent.name, p.stem) for p in sorted(own.glob("*/*.yaml"))]
    found += [("data", p.stem) for p in sorted((config_root() / "data").glob("*.yaml"))]
    return found


CASES = [(command, group, option) for command in COMMANDS for group, option in options(command)]


@pytest.mark.parametrize(("command", "group", "option"), CASES, ids=[f"{c}:{g}={o}" for c, g, o in CASES])
def test_every_config_file_composes(command, group, option):
    register, validate = COMMANDS[command]
    register()
    select = f"+{group}={option}" if group == "experiment" else f"{group}={option}"
    extra = ["data.image_size=224"] if (group, option) == ("model", "imagenet") else []  # its aux head's minimum
    cfg = validate(compose_config(command, [select, "data.root=/datasets/somewhere", *extra]))
    if group == "data":
        assert cfg.data.name in ("sample", "cifar10", "cifar100", "imagefolder", "npz")
    if group == "algorithm":
        assert cfg.algorithm.name  # the algorithm's own config dataclass, typed by its schema


def test_search_and_retrain_experiments_live_apart():
    search = {p.stem for p in (Path(config_dir("search")) / "experiment").glob("*.yaml")}
    train = {p.stem for p in (Path(config_dir("train")) / "experiment").glob("*.yaml")}
    assert {"quickstart", "darts_cifar10"} <= search and {"retrain_quick", "retrain_cifar10"} <= train
    assert not search & train
