"""Every registered search algorithm, through the same surface: a tiny search end to end, and a run
killed mid-epoch that resumes to exactly the alphas (a discrete search: the evaluations) of an
uninterrupted run. Every method runs on the engine's one loop, so one kill hook interrupts them all.
A method added to the registry is covered here without anyone writing a test."""

import json
from pathlib import Path

import pytest

from conftest import KillBefore, Killed
from nas.cli import config_dir
from nas.search.algorithms import algorithm_spec, discover
from nas.search.task import run_search

CONFIG_FILES = sorted(p.stem for p in (Path(config_dir("search")) / "algorithm").glob("*.yaml"))
RUN = ["epochs=2", "max_steps_per_epoch=3", "log.images=false", "checkpoint.every_steps=1"]
# Every algorithm on every space (tiny sizes): DARTS cells of 2 nodes, NAS-Bench-201 with 1 cell per
# stage; the discrete searches score NAS-Bench-201 cells by its table (queries cost nothing).
SPACES = {"darts": ["model.nodes=2"], "nb201": ["space=nb201", "model.layers=1"]}


def test_every_registered_algorithm_has_a_config_file():
    names = set()
    for stem in CONFIG_FILES:
        text = (Path(config_dir("search")) / "algorithm" / f"{stem}.yaml").read_text()
        names |= {name for name in discover() if f"{name}_schema" in text}
    assert names == set(discover())


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("option", CONFIG_FILES)
def test_tiny_search_end_to_end_and_bit_exact_resume(option, space, tmp_path, tiny_search_config):
    name = tiny_search_config(f"algorithm={option}").algorithm.name
    discrete = not algorithm_spec(name).cls.trains_supernet
    args = [f"algorithm={option}", *RUN, *SPACES[space]]
    if space == "nb201" and discrete and name != "random":
        args += ["algorithm.evaluator=table", "algorithm.budget.evaluations=30"]
    elif discrete and name != "random":  # a supernet evaluator trained for 2 epochs, then 10 scored cells
        args += ["algorithm.budget.evaluations=10"]
    reference = run_search(tiny_search_config(*args), tmp_path / "reference")
    genotype = json.loads((tmp_path / "reference" / "genotype.json").read_text())
    assert reference["genotype"] == {k: v for k, v in genotype.items() if k != "meta"}
    if space == "darts":
        assert all(op != "none" for op, _ in genotype["normal"] + genotype["reduce"])
    else:  # the benchmark's known answer of the derived cell is reported
        assert reference["benchmark"]["found"] and 1 <= reference["benchmark"]["rank"] <= 15_625
    if name == "random":  # one draw, no steps: nothing to interrupt
        assert reference["steps"] == 0 and reference["stop_reason"] == "random sample"
        return
    with pytest.raises(Killed):
        run_search(tiny_search_config(*args), tmp_path / "run", hooks=[KillBefore(4)])
    assert not (tmp_path / "run" / "summary.json").exists()
    resumed = run_search(tiny_search_config(*args, f"resume={tmp_path / 'run'}"), tmp_path / "elsewhere")
    assert resumed["steps"] == reference["steps"]
    if discrete:  # the same proposals, scores and repeats; seconds differ
        def replay(summary):
            return [(e["genotype"], e["score"], e["cached"]) for e in summary["evaluations"]]

        assert replay(resumed) == replay(reference) and resumed["genotype"] == reference["genotype"]
        return
    alphas = [json.loads((tmp_path / d / "genotype.json").read_text())["meta"]["alphas"] for d in ("reference", "run")]
    assert alphas[0] == alphas[1]
