"""The tuner on a synthetic command (``test_tune_support.Curve``: score after epoch e = x·e + y), in
this process: which trials ASHA prunes and when, the epochs it saves, resuming, retrying trials a
dead process left running, the budget, every output file, two objectives, and each sampler and
pruner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.tune.config import TuneConfig, to_tune_config
from nas.tune.plan import hydra_value
from nas.tune.storage import open_storage, open_study
from nas.tune.study import run_study
from nas.tune.worker import is_surplus, quiet_heartbeat

CURVE = "test_tune_support:Curve"


def make(**changes) -> TuneConfig:
    """A study of the synthetic command; ``changes`` are top-level keys, ``tune`` a mapping."""
    cfg = {"name": "curve", "command": CURVE, "objectives": ["score"], "directions": ["maximize"],
           "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "tune": {"sampler": "random"}}
    tune = {**cfg["tune"], **changes.pop("tune", {})}
    cfg.update(changes, tune=tune)
    return to_tune_config(OmegaConf.merge(OmegaConf.structured(TuneConfig), cfg))


def read_csv(study_dir: Path) -> list[dict[str, str]]:
    with open(study_dir / "trials.csv") as fh:
        return list(csv.DictReader(fh))


def load(study_dir: Path, cfg: TuneConfig) -> optuna.Study:
    storage = open_storage(cfg.tune.storage, study_dir, cfg.tune.heartbeat_s)
    return open_study(storage, cfg.name, list(cfg.directions), optuna.samplers.RandomSampler(),
                      optuna.pruners.NopPruner())


def test_asha_prunes_the_right_trials_at_the_right_rungs(tmp_path):
    # x in this order, 4 epochs, rungs at epochs 1 and 2 (min 1, eta 2). Optuna's ASHA promotes a
    # trial at a rung when it is in the top 1/eta of the trials that reached it (the first ones,
    # with fewer than eta competitors, only if they are the best so far):
    #   0.5: first everywhere -> complete (4 epochs)
    #   0.9: best at rung 1 and 2 -> complete (4)
    #   0.1: rung 1 among {.5, .9, .1}: not the best -> pruned after epoch 1
    #   0.7: rung 1 among 4: top 2 -> promoted; rung 2 among {1.0, 1.8, 1.4}: not the best -> pruned after 2
    #   0.3: rung 1 among 5: top 2 are .9 and .7 -> pruned after epoch 1
    xs = [0.5, 0.9, 0.1, 0.7, 0.3]
    cfg = make(tune={"pruner": "asha", "min_epochs": 1, "reduction_factor": 2, "trials": 5,
                     "enqueue": [{"x": x} for x in xs]})
    result = run_study(cfg, tmp_path / "study", echo=lambda line: None)

    rows = read_csv(tmp_path / "study")
    assert [float(r["x"]) for r in rows] == xs
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "pruned", "pruned"]
    assert [int(r["epochs"]) for r in rows] == [4, 4, 1, 2, 1]
    for row in rows:  # each trial's run directory says how it ended
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert summary["epochs"] == int(row["epochs"])
        if row["state"] == "pruned":
            assert summary["stop_reason"] == f"pruned by the tuner (asha) after epoch {row['epochs']}"
        else:
            assert summary["stop_reason"] == "epoch limit"
    assert result["epochs"] == {"spent": 12, "without_pruning": 20, "ratio": 0.6}
    assert result["best"]["trial"] == 1 and result["best"]["value"] == pytest.approx(3.6)
    assert result["trials"]["complete"] == 2 and result["trials"]["pruned"] == 3
    study = load(tmp_path / "study", cfg)
    assert study.trials[3].intermediate_values == pytest.approx({1: 0.7, 2: 1.4})  # the learning curve to the cut


def test_outputs_exist_and_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines: list[str] = []
    cfg = make(space={"x": {"type": "float", "low": 0.0, "high": 1.0},
                      "y": {"type": "int", "low": 0, "high": 3},
                      "mode": {"type": "categorical", "choices": ["plain", "extra"]}},
               tune={"sampler": "tpe", "pruner": "hyperband", "trials": 8, "startup_trials": 3})
    study_dir = tmp_path / "study"
    result = run_study(cfg, study_dir, echo=lines.append)

    assert len(lines) == 8 and all(line.startswith(f"[{i + 1}/8] trial ") for i, line in enumerate(lines))
    rows = read_csv(study_dir)
    assert len(rows) == 8 and {r["state"] for r in rows} <= {"complete", "pruned"}
    best = json.loads((study_dir / "best.json").read_text())
    assert best == json.loads(json.dumps({k: v for k, v in result.items()
                                          if k not in ("plots", "study_dir", "wall_time_s")}))
    complete = [r for r in rows if r["state"] == "complete"]
    top = max(complete, key=lambda r: float(r["score"]))
    assert best["best"]["trial"] == int(top["number"]) and best["best"]["value"] == pytest.approx(float(top["score"]))
    params = best["best"]["params"]
    assert best["best"]["reproduce"] == (f"curve-cli x={params['x']!r} y={params['y']} mode={params['mode']}")
    assert best["epochs"]["spent"] == sum(int(r["epochs"]) for r in rows)
    for name in ("history", "intermediate", "importance"):
        png = (study_dir / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 1000
    definition = json.loads((study_dir / "study.json").read_text())["definition"]
    assert definition["space"]["y"] == {"type": "int", "low": 0, "high": 3}
    sessions = sorted(p.name for p in (study_dir / "tb").iterdir() if p.is_dir())
    assert sessions == [f"trial_{int(r['number']):04d}" for r in rows]
    events = EventAccumulator(str(study_dir / "tb" / sessions[0]))
    events.Reload()
    assert "objective/score" in events.Tags()["scalars"]


def test_two_objectives_give_a_pareto_front(tmp_path):
    cfg = make(space={"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 1.0}},
               objectives=["score", "size"], directions=["maximize", "minimize"],
               tune={"sampler": "nsga2", "pruner": "none", "trials": 10})
    result = run_study(cfg, tmp_path / "study", echo=lambda line: None)

    points = [(float(r["score"]), float(r["size"]), int(r["number"])) for r in read_csv(tmp_path / "study")]
    front = sorted(n for s, z, n in points
                   if not any(s2 >= s and z2 <= z and (s2, z2) != (s, z) for s2, z2, _ in points))
    assert [p["trial"] for p in result["pareto_front"]] == front and front
    assert set(result["pareto_front"][0]["values"]) == {"score", "size"}
    assert (tmp_path / "study" / "plots" / "pareto.png").stat().st_size > 1000


@pytest.mark.parametrize(("sampler", "pruner", "storage"), [("cmaes", "median", "journal"), ("tpe", "asha", "sqlite"),
                                                       ("random", "none", "journal")])
def test_each_sampler_pruner_and_embedded_storage_runs(tmp_path, sampler, pruner, storage):
    cfg = make(space={"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 1.0}},
               tune={"sampler": sampler, "pruner": pruner, "trials": 6, "startup_trials": 2, "storage": storage})
    result = run_study(cfg, tmp_path / "study", echo=lambda line: None)
    assert result["trials"]["finished"] == 6 and result["best"] is not None
    assert (tmp_path / "study" / {"journal": "journal.log", "sqlite": "study.db"}[storage]).stat().st_size > 0


def test_a_diverging_trial_is_pruned_and_counts(tmp_path):
    cfg = make(base={"nan_at": 2}, tune={"trials": 2})
    result = run_study(cfg, tmp_path / "study", echo=lambda line: None)
    rows = read_csv(tmp_path / "study")
    assert [r["state"] for r in rows] == ["pruned", "pruned"]
    assert all(r["stop_reason"].startswith("diverged") and r["epochs"] == "1" for r in rows)
    assert result["best"] is None


def test_resume_continues_the_same_study_and_refuses_another(tmp_path):
    study_dir = tmp_path / "study"
    run_study(make(tune={"trials": 3}), study_dir, echo=lambda line: None)
    result = run_study(make(tune={"trials": 5, "sampler": "tpe"}), study_dir, echo=lambda line: None)  # a bigger budget
    rows = read_csv(study_dir)
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4] and result["trials"]["finished"] == 5

    before = {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()}
    other = make(space={"x": {"type": "float", "low": 0.0, "high": 2.0}}, tune={"trials": 6})
    with pytest.raises(ConfigError, match="holds another study .*differs in space"):
        run_study(other, study_dir, echo=lambda line: None)
    assert {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()} == before


def test_trials_a_dead_command_left_running_are_retried_once(tmp_path):
    study_dir = tmp_path / "study"
    queued = [{"x": 0.2}, {"x": 0.3}]  # two queued trials; the second dies while it runs
    cfg = make(tune={"trials": 3, "enqueue": queued})
    run_study(make(tune={"trials": 1, "enqueue": queued}), study_dir, echo=lambda line: None)
    study = load(study_dir, cfg)  # as if a command had died in the middle of trial 1
    dead = study.ask()
    assert dead.number == 1 and dead.suggest_float("x", 0.0, 1.0) == 0.3

    lines: list[str] = []
    result = run_study(cfg, study_dir, echo=lines.append)
    assert lines[0].startswith("retrying trial(s) 1")
    states = {t.number: t for t in load(study_dir, cfg).trials}
    assert states[1].state == TrialState.FAIL
    retries = [t for t in states.values() if t.user_attrs.get("retry_of") == 1]
    assert len(retries) == 1 and retries[0].params == {"x": 0.3}
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert result["trials"]["finished"] == 3  # the dead trial is not counted; its retry is
    assert [r["number"] for r in read_csv(study_dir)] == ["0", "1", "2", "3"]
    # the queued trials each once, the dead one replaced by its retry
    assert [(q["trial"], q["params"]) for q in result["queued"]] == [(0, {"x": 0.2}), (2, {"x": 0.3})]


def test_a_trial_asked_beyond_the_budget_is_surplus(tmp_path):
    study = optuna.create_study()
    first, second, third = study.ask(), study.ask(), study.ask()
    study.tell(first, 1.0)
    assert not is_surplus(study, second, budget=2)
    assert is_surplus(study, third, budget=2)  # trials 0 (finished) and 1 (running) fill the budget


@pytest.mark.parametrize("value", [0.001, 1e-05, 3, True, None, "DARTS_V2", "runs/search/darts/2026-01-01_10-00-00",
                                   "two words", "it's", "123", "null", [1, "a b"], "x=y"])
def test_override_values_read_back_unchanged(value):
    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}").value()
    assert parsed == value


def test_heartbeat_storages_run_without_optuna_warnings(tmp_path):
    """A database storage beats for its running trials; the loop that does so is no misuse, so
    the user's console shows no warning about it."""
    import warnings

    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, heartbeat_s=5)
    study = open_study(storage, "beats", ["maximize"], optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_heartbeat():
            optuna.storages.fail_stale_trials(study)
            study.ask()
