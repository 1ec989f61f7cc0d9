"""The generated bad-input table: every field of every command's config (and of every registered
algorithm's) is walked with values below, at and beyond its declared limits. A value outside them
must end as one ``error:`` line with exit code 2 and an untouched run directory; a value at them
must pass the field's check. A field added later is covered without anyone writing a test, and a
field without declared limits fails ``test_every_field_declares_its_limits``."""

from __future__ import annotations

import copy
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict, read_write

from conftest import compose_config
from nas.cli import config_dir
from nas.config import within
from nas.search.algorithms import algorithm_spec, discover
from nas.search.cli import search_task
from nas.search.config import SearchConfig, register_configs
from nas.train.cli import train_task
from nas.train.config import TrainConfig, register_train_configs

ALGORITHM_FILES = sorted(p.stem for p in (Path(config_dir("search")) / "algorithm").glob("*.yaml"))


def leaves(schema: Any, prefix: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """(dotted key, declared limits, whether it holds integers) of every leaf field of a config dataclass."""
    out = []
    for f in fields(schema):
        value = getattr(schema, f.name)
        if is_dataclass(value):
            out += leaves(value, f"{prefix}{f.name}.")
        elif not (f.name == "algorithm" and value is None):
            integer = str(f.type).replace(" ", "").split("|")[0] in ("int", "list[int]")
            out.append((f"{prefix}{f.name}", dict(f.metadata.get("limits", {})), integer))
    return out


def bad_values(limits: dict[str, Any], integer: bool) -> list[Any]:
    """Values just outside each declared bound (the bound itself for an open one), or not a choice."""
    if "choices" in limits:
        return ["no_such_choice"] if all(isinstance(c, str) for c in limits["choices"]) else [max(limits["choices"]) + 1]
    if "pattern" in limits:
        return ["no_such_device"]
    step = 1 if integer else 0.5
    bad = []
    if "ge" in limits:
        bad.append(limits["ge"] - step)
    if "gt" in limits:
        bad.append(limits["gt"])
    if "le" in limits:
        bad.append(limits["le"] + (step if integer else max(abs(limits["le"]), 1.0)))
    if "lt" in limits:
        bad.append(limits["lt"])
    return [[v, v] if limits.get("each") else v for v in bad]


def edge_values(limits: dict[str, Any]) -> list[Any]:
    """The closed bounds themselves: values at the limit, which must be accepted."""
    return [limits[k] for k in ("ge", "le") if k in limits]


def cases() -> list[tuple[str, list[str], str, Any]]:
    """(command, selecting overrides, key, bad value) for every field."""
    table = []
    for key, limits, integer in leaves(TrainConfig()):
        table += [("train", [], key, v) for v in bad_values(limits, integer)]
    for key, limits, integer in leaves(SearchConfig(algorithm=None)):
        table += [("search", [], key, v) for v in bad_values(limits, integer)]
    for option in ALGORITHM_FILES:
        name = compose_search_algorithm(option)
        for key, limits, integer in leaves(algorithm_spec(name).config(), "algorithm."):
            if key != "algorithm.name":
                table += [("search", [f"algorithm={option}"], key, v) for v in bad_values(limits, integer)]
    return table


def compose_search_algorithm(option: str) -> str:
    text = (Path(config_dir("search")) / "algorithm" / f"{option}.yaml").read_text()
    return next(name for name in discover() if f"{name}_schema" in text)


BASE = {"search": ["+experiment=quickstart", "log.progress=false"],
        "train": ["+experiment=retrain_quick", "log.progress=false"]}
TASKS = {"search": search_task, "train": train_task}
CASES = cases()


@pytest.fixture(scope="module")
def composed():
    """Per (command, algorithm file): Hydra's config and the task config, composed once."""
    register_configs()
    register_train_configs()
    cache: dict[tuple, Any] = {}

    def get(command: str, select: list[str]):
        key = (command, tuple(select))
        if key not in cache:
            full = compose_config(command, [*BASE[command], *select], return_hydra_config=True)
            task = copy.deepcopy(full)
            with read_write(task), open_dict(task):
                del task["hydra"]
            cache[key] = (full, task)
        full, task = cache[key]
        return copy.deepcopy(full), copy.deepcopy(task)

    return get


def set_value(cfg: Any, key: str, value: Any) -> None:
    OmegaConf.update(cfg, key, value, merge=False)


@pytest.mark.parametrize(("command", "select", "key", "value"), CASES,
                         ids=[f"{c}:{' '.join(s)}:{k}={v}" for c, s, k, v in CASES])
def test_a_value_beyond_its_limits_is_one_line_exit_2_and_nothing_written(command, select, key, value, composed,
                                                                          tmp_path, capsys):
    hydra_cfg, task_cfg = composed(command, select)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("the user's file\n")
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(hydra_cfg)
    with pytest.raises(SystemExit) as exit_info:
        try:
            set_value(task_cfg, key, value)
        except Exception as exc:  # the type check of a structured config: Hydra's exit 2 path
            pytest.fail(f"{key}={value} was refused by OmegaConf before the task: {exc}")
        TASKS[command](task_cfg)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and key.split(".")[-1] in lines[0], lines
    assert sorted(p.name for p in run_dir.iterdir()) == ["keep.txt"]  # nothing written, nothing lost


def test_values_at_their_limits_are_accepted():
    checked = 0
    for schema in [TrainConfig(), SearchConfig(algorithm=None), *(s.config() for s in discover().values())]:
        for key, limits, _ in leaves(schema):
            for value in edge_values(limits):
                assert within(value, limits), f"{key}={value} is at its limit and must pass"
                checked += 1
    assert checked > 40


def test_every_field_declares_its_limits():
    schemas = [TrainConfig(), SearchConfig(algorithm=None), *(s.config() for s in discover().values())]
    missing = [key for schema in schemas for key, limits, _ in leaves(schema) if not limits]
    assert not missing, f"fields without declared limits (nas.config.option): {missing}"


def test_the_table_covers_every_field():
    covered = {(c, k) for c, _, k, _ in CASES}
    for schema, command in ((TrainConfig(), "train"), (SearchConfig(algorithm=None), "search")):
        for key, limits, _ in leaves(schema):
            if "free" not in limits:
                assert (command, key) in covered, key
    assert len(CASES) > 150 and not any(isinstance(v, float) and math.isnan(v) for *_, v in CASES)
