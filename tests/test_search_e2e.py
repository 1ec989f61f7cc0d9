"""A whole tiny search, read back the way a user reads it: files, checkpoint and TensorBoard."""

import json

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.genotype import load as load_genotype
from nas.ops import OPS
from nas.search.task import run_search


def test_tiny_search_writes_everything_a_user_reads(tmp_path, tiny_search_config):
    cfg = tiny_search_config("optim.alpha_lr=0.05")
    summary = run_search(cfg, tmp_path)

    genotype = json.loads((tmp_path / "genotype.json").read_text())
    assert set(genotype) == {"normal", "normal_concat", "reduce", "reduce_concat", "meta"}
    assert len(genotype["normal"]) == 8 and genotype["normal_concat"] == [2, 3, 4, 5]
    assert all(op != "none" for op, _ in genotype["normal"] + genotype["reduce"])
    meta = genotype["meta"]
    assert meta["epoch"] == 2 and meta["config"]["model"]["channels"] == 4
    alphas = torch.tensor(meta["alphas"]["normal"])
    assert alphas.shape == (14, 8)
    assert load_genotype(str(tmp_path / "genotype.json"), OPS).normal == [tuple(p) for p in genotype["normal"]]

    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("genotype", "epochs", "final_val_acc", "wall_time_s", "epoch_times_s"):
        assert key in on_disk
    assert on_disk["epochs"] == 2 and len(on_disk["epoch_times_s"]) == 2
    assert 0.0 <= on_disk["final_val_acc"] <= 1.0
    assert on_disk["genotype"] == {k: v for k, v in genotype.items() if k != "meta"}
    assert summary["final_val_acc"] == on_disk["final_val_acc"]

    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    torch.testing.assert_close(state["model"]["arch.alpha_normal"], alphas)

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    op_names = meta["space"]
    for kind in ("normal", "reduce"):
        for edge in range(14):
            for op in op_names:
                assert f"alpha/{kind}/edge{edge}/{op}" in tags["scalars"]
        assert f"alpha/{kind}" in tags["images"] and f"genotype/{kind}" in tags["images"]
    for tag in ("loss/train", "loss/val", "acc/train", "acc/val", "lr/weights"):
        assert tag in tags["scalars"]
    assert any(t.startswith("genotype") for t in tags["tensors"])
    series = [e.value for e in events.Scalars("alpha/normal/edge0/sep_conv_3x3")]
    assert len(series) >= 3 and len(set(series)) > 1, "alpha weights must change over the search"


def test_second_order_search_runs_end_to_end(tmp_path, tiny_search_config):
    summary = run_search(tiny_search_config("algorithm=darts_2nd", "epochs=1", "log.images=false"), tmp_path)
    assert summary["epochs"] == 1 and (tmp_path / "genotype.json").is_file()


def test_same_seed_same_alphas(tmp_path, tiny_search_config):
    cfg = tiny_search_config("epochs=1", "log.images=false")
    run_search(cfg, tmp_path / "a")
    run_search(cfg, tmp_path / "b")
    a = json.loads((tmp_path / "a" / "genotype.json").read_text())["meta"]["alphas"]
    b = json.loads((tmp_path / "b" / "genotype.json").read_text())["meta"]["alphas"]
    assert a == b


def test_recompute_gives_the_same_search(tmp_path, tiny_search_config):
    # Activation recomputation trades memory for time; the numbers must not change (2nd order too,
    # whose functional_call passes must store their cells instead).
    runs = {}
    for recompute in ("false", "true"):
        run_search(tiny_search_config("algorithm=darts_2nd", "epochs=1", "log.images=false", f"recompute={recompute}"),
                   tmp_path / recompute)
        runs[recompute] = json.loads((tmp_path / recompute / "genotype.json").read_text())["meta"]["alphas"]
    for kind in ("normal", "reduce"):
        torch.testing.assert_close(torch.tensor(runs["true"][kind]), torch.tensor(runs["false"][kind]),
                                   rtol=0, atol=1e-6)
    # BatchNorm running statistics are updated once per forward, not again when a cell is recomputed.
    states = {r: torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=True)["model"] for r in runs}
    for name, value in states["false"].items():
        if "running" in name:
            torch.testing.assert_close(states["true"][name], value, rtol=1e-4, atol=1e-5)
