"""nas-rank end to end: genotypes from a folder, a list and random samples, scored by several evaluators
into a JSON and CSV table with Kendall's tau and Spearman's rho of every pair; bad values are one line
and exit code 2, with nothing written."""

from __future__ import annotations

import csv
import json
import random
from functools import partial

import pytest

from conftest import darts_sampler, invoke_cli, one_error_line
from nas.evaluate.correlation import kendall_tau, spearman_rho
from nas.genotype import save_json
from nas.ops import SPACES
from nas.rank.genotypes import random_cells

TINY = ["data.limit=48", "data.image_size=16", "batch_size=8", "model.channels=4", "model.layers=3", "model.nodes=2",
        "max_steps_per_epoch=2", "genotypes.random=0", "train.epochs=1", "train.eval_batches=2",
        "supernet.epochs=1", "supernet.calibration_batches=2", "supernet.eval_batches=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


invoke = partial(invoke_cli, "rank")


def test_rank_a_folder_a_list_and_random_cells_with_four_evaluators(tmp_path, monkeypatch, capsys):
    space, rng = darts_sampler(SPACES["darts"], 2, 2), random.Random(5)
    for name in ("run_a", "sweep/run_b"):
        save_json(tmp_path / "runs" / name / "genotype.json", space.sample(rng), {"note": "a search's result"})
    save_json(tmp_path / "cell.json", space.sample(rng))
    text = space.sample(rng).to_text()
    run_dir = tmp_path / "rank"
    args = [*TINY, f"genotypes.folder={tmp_path / 'runs'}", f'genotypes.names=["{tmp_path / "cell.json"}","{text}"]',
            "genotypes.random=2", "evaluators=[train,supernet,naswot,synflow]", f"hydra.run.dir={run_dir}"]
    assert invoke(args, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "Kendall tau" in out and "train ~ naswot" in out and str(run_dir / "scores.csv") in out

    summary = json.loads((run_dir / "summary.json").read_text())
    names = ["run_a", "sweep/run_b", str(tmp_path / "cell.json"), "text1", "random0", "random1"]
    assert summary["genotypes"] == names
    assert [e["evaluator"] for e in summary["evaluators"]] == ["train", "supernet", "naswot", "synflow"]
    assert summary["evaluators"][1]["setup_images"] == 2 * 8  # the supernet trained once: 1 epoch of 2 steps
    assert all(e["seconds_per_genotype"] > 0 and e["images_per_genotype"] > 0 for e in summary["evaluators"])

    table = json.loads((run_dir / "scores.json").read_text())
    assert [row["name"] for row in table["rows"]] == names
    assert table["rows"][4]["genotype"] == random_cells(2, SPACES["darts"], 2, 2, None, 0)[0][1].to_dict()
    pairs = {(p["a"], p["b"]): p for p in summary["correlations"]}
    assert len(pairs) == 6  # every pair of the four evaluators
    for (a, b), p in pairs.items():
        x = [row["scores"][a] for row in table["rows"]]
        y = [row["scores"][b] for row in table["rows"]]
        if None not in x + y and len(set(x)) > 1 and len(set(y)) > 1:
            assert p["kendall_tau"] == pytest.approx(kendall_tau(x, y))
            assert p["spearman_rho"] == pytest.approx(spearman_rho(x, y))
        assert p["n"] == 6

    with open(run_dir / "scores.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:5] == ["name", "train", "supernet", "naswot", "synflow"]
    assert [r[0] for r in rows[1:]] == names and rows[4][-1] == text
    assert float(rows[1][3]) == pytest.approx(table["rows"][0]["scores"]["naswot"])
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "rank.log").is_file()


def test_random_cells_depend_on_the_seed_and_their_index_only():
    five, three = random_cells(5, SPACES["darts"], 4, 2, None, 7), random_cells(3, SPACES["darts"], 4, 2, None, 7)
    assert five[:3] == three and len({g.to_text() for _, g in five}) == 5
    assert random_cells(3, SPACES["darts"], 4, 2, None, 8) != three


BAD = [
    (["genotypes.random=3", "evaluators=[train,magic]"], "evaluators"),
    (["genotypes.random=3", "evaluators=[naswot,zero_cost]"], "evaluators lists naswot twice"),
    ([], "genotypes: give"),
    (["genotypes.random=1"], "at least 2 genotypes"),
    (["genotypes.random=-1"], "genotypes.random must be"),
    (["genotypes.folder=/no/such/folder"], "is not a directory"),
    (["genotypes.names=[NO_SUCH_CELL,DARTS_V2]"], "NO_SUCH_CELL"),
    (["genotypes.names=[DARTS_V1,DARTS_V2]", "evaluators=[supernet]"], "cannot be scored by the supernet"),
    (["genotypes.random=3", "train.epochs=0"], "train.epochs"),
    (["genotypes.random=3", "zero_cost.proxy=fisher"], "zero_cost.proxy"),
    (["genotypes.random=3", "genotypes.k=3"], "genotypes.k"),
    (["genotypes.random=3", "modle.channels=4"], "modle"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[b[1] for b in BAD])
def test_bad_values_are_one_line_and_exit_2_with_nothing_written(args, fragment, tmp_path, monkeypatch, capsys):
    assert invoke([*TINY, *args, f"hydra.run.dir={tmp_path / 'rank'}"], monkeypatch) == 2
    assert fragment in one_error_line(capsys)
    assert not (tmp_path / "rank").exists() or not any((tmp_path / "rank").iterdir())


def test_a_directory_with_results_is_refused_unless_overwritten(tmp_path, monkeypatch, capsys):
    (tmp_path / "rank").mkdir()
    (tmp_path / "rank" / "summary.json").write_text("{}\n")
    args = [*TINY, "genotypes.random=2", "evaluators=[naswot]", f"hydra.run.dir={tmp_path / 'rank'}"]
    assert invoke(args, monkeypatch) == 2
    assert "overwrite=true" in capsys.readouterr().err
    assert invoke([*args, "overwrite=true"], monkeypatch) == 0
    assert json.loads((tmp_path / "rank" / "summary.json").read_text())["genotypes"] == ["random0", "random1"]
