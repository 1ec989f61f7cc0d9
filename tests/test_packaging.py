"""The configs travel with the package: a regular install must find them as an editable one does."""

from pathlib import Path

import pytest

from nas.cli import config_dir

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_group_is_packaged():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    groups = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())
    groups = sorted(str(p.relative_to(ROOT / "configs")).replace("/", ".") for p in (ROOT / "configs").rglob("*")
                    if p.is_dir() and any(p.glob("*.yaml")))
    for group in groups:
        assert f"nas.configs.{group}" in project["packages"], f"configs/{group} is not installed"
        assert project["package-data"][f"nas.configs.{group}"] == ["*.yaml"]
    assert "nas.data" in project["packages"] and "*.npz" in project["package-data"]["nas.data"]


def test_config_dir_is_found_from_the_package():
    found = Path(config_dir())
    assert (found / "search.yaml").is_file()
    assert {"data", "space", "model", "algorithm", "experiment"} <= {p.name for p in found.iterdir()}
