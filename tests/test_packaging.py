"""The configs travel with the package: a regular install must find them as an editable one does."""

from pathlib import Path

import pytest

from nas.cli import config_dir, config_root

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_group_is_packaged():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    groups = sorted(str(p.relative_to(ROOT / "configs")).replace("/", ".") for p in (ROOT / "configs").rglob("*")
                    if p.is_dir() and any(p.glob("*.yaml")))
    for group in groups:
        assert f"nas.configs.{group}" in project["packages"], f"configs/{group} is not installed"
        assert project["package-data"][f"nas.configs.{group}"] == ["*.yaml"]
    assert "nas.data" in project["packages"] and "*.npz" in project["package-data"]["nas.data"]


def test_config_dirs_are_found_from_the_package():
    search, train = Path(config_dir("search")), Path(config_dir("train"))
    assert (search / "search.yaml").is_file() and (train / "train.yaml").is_file()
    assert {"space", "algorithm", "experiment"} <= {p.name for p in search.iterdir()}
    assert {"model", "experiment"} <= {p.name for p in train.iterdir()}
    assert {"data", "hydra"} <= {p.name for p in config_root().iterdir()}  # shared by every command
