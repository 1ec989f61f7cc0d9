"""``nas-tune`` as a user runs it (the real entry point, in this process): every experiment
composes, a tiny real retrain study runs end to end and resumes, and every bad input ends in one
line, exit code 2, and nothing touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tune_support import invoke

from conftest import compose_config
from nas.cli import config_dir
from nas.tune.commands import TRAIN
from nas.tune.config import register_tune_configs, to_tune_config
from nas.tune.objective import Objective
from nas.tune.plan import StudyPlan
from nas.tune.reporter import TrialReporter

# The experiment's retrain shrunk key by key (``base`` comes after the experiment's overrides). Each
# epoch evaluates the sample's 1000 test images: a batch of 100 does it in 10 forwards.
TINY = {"model.channels": 4, "model.layers": 3, "model.auxiliary": "false", "epochs": 1, "max_steps_per_epoch": 2,
        "data.limit": 200, "batch_size": 100}
TINY_RETRAIN = [f"+base.{k}={v}" for k, v in TINY.items()]
CURVE = ["command=test_tune_support:Curve", "objectives=[score]", "+space.x={type: float, low: 0.0, high: 1.0}",
         "tune.sampler=random"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (Path(config_dir("tune")) / "experiment").glob("*.yaml")))
def test_every_tune_experiment_composes_and_passes_its_checks(experiment):
    register_tune_configs()
    extra = ["base.data.root=/datasets/somewhere"] if experiment == "tune_retrain_cifar10" else []
    cfg = to_tune_config(compose_config("tune", [f"+experiment={experiment}", *extra]))
    plan = StudyPlan.of(cfg)
    assert cfg.name == experiment and plan.space
    if experiment != "tune_retrain_cifar10":  # its data is not here; the others are offline
        plan.preflight()


def test_a_tiny_real_retrain_study_runs_and_resumes(tmp_path, monkeypatch, capsys):
    """The experiment as a user runs it, shrunk: what it prints and writes; the same command again
    finds the study complete and runs nothing twice (a larger budget, and a kill, are resumed in
    ``test_tune.py`` and ``test_tune_parallel.py``)."""
    study_dir = tmp_path / "study"
    args = ["+experiment=tune_retrain_quick", *TINY_RETRAIN, "tune.trials=1", f"hydra.run.dir={study_dir}"]
    assert invoke(args, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "[1/1] trial 0 complete (1 epoch)  acc/top1 " in out
    assert "reproduce: nas-train +experiment=retrain_quick epochs=2 max_steps_per_epoch=30 log.images=false " in out
    best = json.loads((study_dir / "best.json").read_text())
    baseline = {"optim.lr": 0.05, "optim.weight_decay": 3e-4, "drop_path_prob": 0.2}
    assert best["queued"][0]["params"] == baseline and best["best"]["params"] == baseline
    assert best["best"]["reproduce"] == (
        "nas-train +experiment=retrain_quick epochs=2 max_steps_per_epoch=30 log.images=false model.channels=4 "
        "model.layers=3 model.auxiliary=false epochs=1 max_steps_per_epoch=2 data.limit=200 batch_size=100 "
        "optim.lr=0.05 optim.weight_decay=0.0003 drop_path_prob=0.2")
    assert f"queued trial 0: acc/top1 {best['best']['value']:.4f}" in out
    trial = study_dir / "trials" / "0000"
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["stop_reason"] == "epoch limit"
    assert best["best"]["value"] == summary["history"][-1]["acc/top1"] and summary["threads"] >= 1
    assert "epoch 1/1" in (trial / "train.log").read_text() and (trial / "trial.json").is_file()
    assert (study_dir / ".hydra" / "config.yaml").is_file() and (study_dir / "tune.log").is_file()
    for name in ("history", "intermediate", "importance"):
        assert (study_dir / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (study_dir / "tb" / "trial_0000").is_dir() and (study_dir / "trials.csv").read_text().count("\n") == 2

    assert invoke(args, monkeypatch) == 0  # the same command again: the study is complete
    out = capsys.readouterr().out
    assert "trial 0 complete" not in out and "1 trials finished (1 complete, 0 pruned)" in out
    assert json.loads((study_dir / "best.json").read_text())["best"] == best["best"]
    assert sorted(p.name for p in (study_dir / "trials").iterdir()) == ["0000"]


def test_a_pruned_real_retrain_stops_at_once_and_says_so(tmp_path):
    """The reporter hook in the real engine: a pruned trial ends right after the epoch."""

    class Trial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return True

    cfg = TRAIN.config(["+experiment=retrain_quick", *(f"{k}={v}" for k, v in TINY.items()), "epochs=3",
                        "log.progress=false", "log.images=false"])
    trial = Trial()
    reporter = TrialReporter(trial, Objective(("acc/top1",), ("maximize",)), TRAIN, "asha")
    summary = TRAIN.run(cfg, tmp_path / "run", [reporter])
    assert summary["epochs"] == 1 and summary["stop_reason"] == "pruned by the tuner (asha) after epoch 1"
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["stop_reason"] == summary["stop_reason"] and len(saved["history"]) == 1
    assert trial.reports == [(1, saved["history"][0]["acc/top1"])]


# (arguments, a fragment of the one line); every case also points at an existing study to show it stays untouched
TABLE = {
    "unknown key in the space": (["+experiment=tune_retrain_quick", "+space.optim.lrr={type: float, low: 0.1, high: 0.2}"],
                                 "space.optim.lrr: optim.lrr is not a key of nas-train's config"),
    "inverted bounds": (["+experiment=tune_retrain_quick", "space.optim.lr.low=0.5", "space.optim.lr.high=0.1"],
                        "space.optim.lr: low must be below high"),
    "log range including 0": (["+experiment=tune_retrain_quick", "space.optim.lr.low=0"],
                              "space.optim.lr: a log range must lie above 0"),
    "range beyond the command's limits": (["+experiment=tune_retrain_quick", "space.optim.lr.high=20"],
                                          "optim.lr=20.0 is not valid for nas-train: optim.lr must be in (0.0, 10.0]"),
    "unknown genotype": (["+experiment=tune_retrain_quick",
                          "+space.genotype={type: categorical, choices: [DARTS_V2, NO_SUCH_CELL]}"], "NO_SUCH_CELL"),
    "missing objective metric": (["+experiment=tune_retrain_quick", "objectives=[acc/top9]"],
                                 "objective metric 'acc/top9' is not recorded by nas-train"),
    "missing metric seen at the first epoch": ([*CURVE, "objectives=[extra/nothing]", "+base.mode=extra"],
                                               "objective metric 'extra/nothing' is not recorded by curve-cli"),
    "pruning on a final-only metric": (["+experiment=tune_retrain_quick", "objectives=[params]", "directions=[minimize]"],
                                       "pruning needs an objective reported every epoch"),
    "two objectives with a pruner": (["+experiment=tune_retrain_quick", "objectives=[acc/top1,params]",
                                      "directions=[maximize,minimize]"], "Optuna prunes only single-objective"),
    "one direction for two objectives": (["+experiment=tune_retrain_quick", "objectives=[acc/top1,params]",
                                          "tune.pruner=none"], "one direction per objective"),
    "required data root": (["+experiment=tune_retrain_cifar10"], "base.data.root must be given"),
    "unreachable storage": (["+experiment=tune_retrain_quick", "tune.storage=postgresql://nobody@127.0.0.1:1/nodb"],
                            "cannot open tune.storage=postgresql://nobody@127.0.0.1:1/nodb"),
    "bad storage": (["+experiment=tune_retrain_quick", "tune.storage=mongo"], "tune.storage must be journal"),
    "another study's directory": ([*CURVE, "name=other", "hydra.run.dir={root}/old_study"], "holds another study"),
    "a run's directory": (["+experiment=tune_retrain_quick", "hydra.run.dir={root}/old_run"],
                          "is not a study directory"),
    "unknown tune option": (["tune.trails=3"], "trails"),
    "unknown command": (["command=nowhere:Thing", "+space.x={type: int, low: 1, high: 2}"], "cannot import it"),
}


@pytest.fixture(scope="module")
def old_study(tmp_path_factory):
    """A finished study of the synthetic command, which no bad input may touch."""
    root = tmp_path_factory.mktemp("old")
    mp = pytest.MonkeyPatch()
    try:
        assert invoke([*CURVE, "tune.trials=2", f"hydra.run.dir={root / 'old_study'}"], mp) == 0
    finally:
        mp.undo()
    (root / "old_run").mkdir()
    (root / "old_run" / "summary.json").write_text('{"top1": 0.5}\n')
    return root


@pytest.mark.parametrize("case", list(TABLE))
def test_bad_input(case, old_study, tmp_path, monkeypatch, capsys):
    args, fragment = TABLE[case]
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{root}", str(old_study)) for a in args]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'new_study'}")
    before, before_here = snapshot(old_study), snapshot(tmp_path)
    capsys.readouterr()

    code = invoke(args, monkeypatch)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert snapshot(old_study) == before  # no other study touched
    if case != "missing metric seen at the first epoch":  # found only once a trial ran
        assert snapshot(tmp_path) == before_here and not (tmp_path / "new_study").exists()
