"""Retraining: the discrete cell, the two evaluation networks and their published sizes, the
augmentations, the loop on the embedded sample and on an ImageFolder tree, and the command line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY_SEARCH, compose_config, compose_search, run_cli
from nas import checkpoint
from nas.cells import DiscreteCell
from nas.cells.discrete import drop_path
from nas.data.folder import build_folder_data
from nas.data.transforms import cutout
from nas.engine import Hook, Interrupted
from nas.errors import CheckpointError, ConfigError, DataError, GenotypeError
from nas.genotype import PUBLISHED, Genotype
from nas.search.task import run_search
from nas.spaces.darts_networks import build_network, check_image_size
from nas.train.config import TrainConfig, register_train_configs, to_train_config
from nas.train.profile import count_macs, count_parameters
from nas.train.task import CHECKPOINT_FORMAT, drop_path_prob, run_train

DARTS_V2 = PUBLISHED["DARTS_V2"]
# A retrain of a few seconds: the sample at 32 px, C=8, 5 cells, no aux head, few steps.
TINY_TRAIN = [
    "+experiment=retrain_quick", "model.channels=8", "model.layers=5", "model.auxiliary=false", "batch_size=32",
    "epochs=1", "max_steps_per_epoch=4", "log.progress=false", "log.images=false", "threads=2",
]


def compose_train(overrides: list[str]) -> TrainConfig:
    register_train_configs()
    return to_train_config(compose_config("train", overrides))


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- networks and their published sizes ----------------------------------------------------------
def test_darts_v2_cifar_sizes():
    model = build_network("cifar", DARTS_V2, channels=36, layers=20, num_classes=10, auxiliary=True)
    assert count_parameters(model) == (3_349_342, 476_426)  # MACs: see the profile_only CLI test


def test_darts_v2_imagenet_sizes_and_macs():
    model = build_network("imagenet", DARTS_V2, channels=48, layers=14, num_classes=1000, auxiliary=True)
    assert count_parameters(model) == (4_718_752, 1_260_776)
    assert round(count_macs(model, 224) / 1e6, 2) == 529.91
    assert model.training  # counting MACs leaves the mode as it was


@pytest.mark.parametrize("name", ["cifar", "imagenet"])
def test_aux_logits_in_training_only(name):
    size = 32 if name == "cifar" else 224
    model = build_network(name, DARTS_V2, channels=8, layers=5, num_classes=3, auxiliary=True)
    x = torch.randn(2, 3, size, size)
    logits, aux = model(x, drop_path_prob=0.3)
    assert logits.shape == aux.shape == (2, 3)
    model.eval()
    logits, aux = model(x, drop_path_prob=0.3)
    assert logits.shape == (2, 3) and aux is None
    no_aux = build_network(name, DARTS_V2, channels=8, layers=5, num_classes=3, auxiliary=False)
    assert no_aux(x)[1] is None and count_parameters(no_aux)[1] == 0


def test_image_size_check_names_the_minimum():
    check_image_size("cifar", 20, True, 32)
    check_image_size("imagenet", 14, True, 224)
    check_image_size("imagenet", 14, False, 32)
    with pytest.raises(ConfigError, match=r"auxiliary head.*data.image_size>=193 \(or 17 px with model.auxiliary"):
        check_image_size("imagenet", 14, True, 64)
    with pytest.raises(ConfigError, match=r"data.image_size>=29"):
        check_image_size("cifar", 20, True, 16)
    for size in (193, 17):  # the named minimum does fit
        model = build_network("imagenet", DARTS_V2, 8, 14, 2, auxiliary=size == 193)
        assert model(torch.randn(2, 3, size, size))[0].shape == (2, 2)


# --- the discrete cell ---------------------------------------------------------------------------
def test_cell_supports_any_k_and_node_count():
    # Normal: 3 nodes with 3 parents each, 'none' and both pools included; reduce: 2 nodes, 1 parent.
    normal = [("sep_conv_3x3", 0), ("skip_connect", 1), ("none", 0),
              ("max_pool_3x3", 2), ("dil_conv_3x3", 1), ("skip_connect", 0),
              ("avg_pool_3x3", 3), ("sep_conv_5x5", 2), ("skip_connect", 1)]
    reduce = [("skip_connect", 1), ("skip_connect", 2)]
    genotype = Genotype(normal, [2, 3, 4], reduce, [2, 3])
    normal_cell = DiscreteCell(genotype, 6, 5, 4, reduction=False, reduction_prev=False)
    reduce_cell = DiscreteCell(genotype, 6, 5, 4, reduction=True, reduction_prev=True)
    assert (normal_cell.k, normal_cell.nodes, normal_cell.multiplier) == (3, 3, 3)
    assert (reduce_cell.k, reduce_cell.nodes, reduce_cell.multiplier) == (1, 2, 2)
    assert normal_cell(torch.randn(2, 6, 8, 8), torch.randn(2, 5, 8, 8)).shape == (2, 12, 8, 8)
    assert reduce_cell(torch.randn(2, 6, 16, 16), torch.randn(2, 5, 8, 8)).shape == (2, 8, 4, 4)
    # Drop path spares exactly the identities: skip_connect at stride 1; at stride 2 it is a conv.
    assert normal_cell.droppable == [True, False, True, True, True, False, True, True, False]
    assert reduce_cell.droppable == [True, False]


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    out = drop_path(x, 0.25)
    per_sample = out.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (per_sample == 0).all(1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert drop_path(x, 0.0) is x


def test_drop_path_acts_in_training_mode_only():
    cell = DiscreteCell(DARTS_V2, 4, 4, 4, reduction=False, reduction_prev=False)
    s0, s1 = torch.randn(8, 4, 6, 6), torch.randn(8, 4, 6, 6)
    cell.eval()
    torch.testing.assert_close(cell(s0, s1, 0.9), cell(s0, s1, 0.0))
    cell.train()
    torch.manual_seed(0)
    dropped = cell(s0, s1, 0.9)
    torch.manual_seed(0)
    assert not torch.allclose(dropped, cell(s0, s1, 0.0))


def test_drop_path_ramps_linearly_over_the_epochs():
    assert drop_path_prob(0.2, 0, 600) == 0.0
    assert drop_path_prob(0.2, 300, 600) == pytest.approx(0.1)
    assert drop_path_prob(0.2, 599, 600) == pytest.approx(0.2 * 599 / 600)
    assert drop_path_prob(0.2, 600, 600) == pytest.approx(0.2)


# --- augmentation --------------------------------------------------------------------------------
def test_cutout_is_batched_seeded_and_bounded():
    x = torch.ones(64, 3, 32, 32)
    a = cutout(x, 16, torch.Generator().manual_seed(1))
    b = cutout(x, 16, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(x, torch.ones_like(x))
    zeros = (a == 0).all(1).flatten(1).sum(1)  # cut pixels per image, the same in every channel
    assert zeros.max() == 256 and zeros.min() >= 64  # a centre in a corner still cuts a quarter
    assert not torch.equal(a, cutout(x, 16, torch.Generator().manual_seed(2)))
    assert cutout(x, 0) is x
    assert cutout(torch.ones(3, 8, 8), 4, torch.Generator().manual_seed(0)).shape == (3, 8, 8)


# --- configs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("experiment", ["retrain_cifar10", "transfer_imagenet", "retrain_quick"])
def test_every_experiment_composes(experiment):
    cfg = compose_train([f"+experiment={experiment}", "data.root=/datasets/somewhere"])
    expected = {"retrain_cifar10": ("cifar", 600, "cosine", 16), "transfer_imagenet": ("imagenet", 250, "exponential", 0),
                "retrain_quick": ("cifar", cfg.epochs, "cosine", 16)}[experiment]
    assert (cfg.model.name, cfg.epochs, cfg.optim.schedule, cfg.augment.cutout) == expected


@pytest.mark.parametrize(("override", "message"), [
    ("epochs=-1", "epochs must be in [1, 100000], got -1"),
    ("model.name=resnet", "model.name must be one of cifar, imagenet, nb201, got resnet"),
    ("data.image_size=16", "data.image_size>=29"),
    ("drop_path_prob=1.0", "drop_path_prob must be in [0.0, 1.0), got 1.0"),
    ("optim.schedule=step", "optim.schedule must be one of cosine, exponential, got step"),
    ("augment.color_jitter=[0.4]", "augment.color_jitter must be"),
])
def test_bad_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        compose_train([override])
    assert message in str(info.value) and "\n" not in str(info.value)


# --- the loop --------------------------------------------------------------------------------------
def test_searched_genotype_retrains_above_chance(tmp_path):
    run_search(compose_search(TINY_SEARCH + ["epochs=1", "log.images=false"]), tmp_path / "search")
    source = tmp_path / "search"  # a search run directory holding genotype.json
    cfg = compose_train(TINY_TRAIN + [f"genotype={source}", "model.layers=3", "max_steps_per_epoch=60",
                                      "optim.lr=0.1", "augment.cutout=0", "drop_path_prob=0"])
    run_dir = tmp_path / "train"
    summary = run_train(cfg, run_dir)
    assert summary["top1"] > 0.15, summary["history"]  # chance: 0.10 on the sample's 1000 test images
    assert summary["epochs"] == 1 and summary["steps"] == 60
    assert summary["images_per_s"] > 0 and summary["params"] > 0 and summary["macs"] > 0
    assert json.loads((run_dir / "summary.json").read_text())["top1"] == summary["top1"]
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["format"] == CHECKPOINT_FORMAT and state["epoch"] == 1
    assert list((run_dir / "tb").iterdir())
    with pytest.raises(ConfigError, match="overwrite=true"):
        run_train(cfg, run_dir)


def test_checkpoint_of_another_kind_is_refused_before_any_work(tmp_path):
    checkpoint.save(tmp_path / "search.pt", {"format": "nas-search/1"})
    with pytest.raises(CheckpointError, match="not a retrain checkpoint"):
        run_train(compose_train(TINY_TRAIN + [f"resume={tmp_path / 'search.pt'}"]), tmp_path / "run")


def test_interrupted_run_resumes_exactly_where_it_stopped(tmp_path):
    # Cutout, drop path and a mid-epoch stop: every random stream must replay after the resume.
    tiny = TINY_TRAIN + ["model.channels=4", "model.layers=3", "max_steps_per_epoch=3", "data.limit=96", "epochs=2",
                         "drop_path_prob=0.3"]
    reference = run_train(compose_train(tiny), tmp_path / "reference")
    assert [h["drop_path"] for h in reference["history"]] == [0.0, pytest.approx(0.3 / 2)]  # the linear ramp

    class SigtermDuringStep4(Hook):
        def before_step(self, engine):
            if engine.counters.global_step == 3:  # the step about to run is the 4th: the first of epoch 2
                engine.signals.received = signal.SIGTERM

    with pytest.raises(Interrupted, match="stopped by SIGTERM after step 4"):
        run_train(compose_train(tiny), tmp_path / "run", hooks=[SigtermDuringStep4()])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["format"]) == (1, 1, CHECKPOINT_FORMAT)

    # Only where it runs comes from the new command line; the run continues in its own directory.
    resumed = run_train(compose_train(["threads=2", "log.progress=false", f"resume={tmp_path / 'run'}"]),
                        tmp_path / "elsewhere")
    assert resumed["run_dir"] == str(tmp_path / "run") and not (tmp_path / "elsewhere").exists()
    untimed = [[{k: v for k, v in h.items() if k != "time/epoch_s"} for h in s["history"]] for s in (reference, resumed)]
    assert untimed[0] == untimed[1] and resumed["steps"] == 6
    weights = [torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)["model"]
               for d in ("reference", "run")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def make_image_tree(root: Path, splits: tuple[str, ...] = ("train", "val"), per_class: int = 3) -> Path:
    generator = torch.Generator().manual_seed(0)
    for split in splits:
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=generator, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / cls / f"{i}.jpg")
    return root


@pytest.mark.parametrize("workers", [0, 1])
def test_imagefolder_trains_through_the_streaming_loader(tmp_path, workers):
    root = make_image_tree(tmp_path / "images")
    cfg = compose_train(["+experiment=transfer_imagenet", f"data.root={root}", "data.image_size=32",
                         "model.auxiliary=false", "model.channels=8", "model.layers=3", "batch_size=4", "epochs=1",
                         f"data.workers={workers}", "log.progress=false", "log.images=false", "threads=2"])
    summary = run_train(cfg, tmp_path / "run")
    assert summary["steps"] == 1 and summary["num_classes"] == 2
    assert 0.0 <= summary["top1"] <= 1.0 and summary["top5"] == 1.0  # 2 classes: the top 2 hold every label


def test_folder_batches_replay_whatever_the_start_and_the_workers(tmp_path):
    root = make_image_tree(tmp_path / "images")
    epochs = {}
    for workers in (0, 1):
        train, _, classes = build_folder_data(str(root), 16, batch_size=2, seed=3, workers=workers)
        assert classes == ["cat", "dog"] and len(train) == 3
        full = [(x.clone(), y.clone()) for x, y in train.batches(1)]
        tail = list(train.batches(1, start=1))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[1:], tail, strict=True))
        epochs[workers] = full
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], epochs[1], strict=True))
    other = [x for x, _ in build_folder_data(str(root), 16, batch_size=2, seed=3, workers=0)[0].batches(2)]
    assert not all(torch.equal(a[0], b) for a, b in zip(epochs[0], other, strict=True))


def test_imagefolder_errors(tmp_path):
    base = ["+experiment=transfer_imagenet", "data.image_size=32", "model.auxiliary=false", "model.channels=8",
            "model.layers=3", "batch_size=2", "epochs=1", "log.progress=false", "log.images=false"]
    with pytest.raises(DataError, match="image folder not found"):
        run_train(compose_train(base + [f"data.root={tmp_path / 'missing'}"]), tmp_path / "r1")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(DataError, match="no images found"):
        run_train(compose_train(base + [f"data.root={tmp_path / 'empty'}"]), tmp_path / "r2")
    root = make_image_tree(tmp_path / "broken", per_class=2)
    (root / "val" / "cat" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"^cannot read image .*0\.jpg"):
        run_train(compose_train(base + [f"data.root={root}", "data.workers=1"]), tmp_path / "r3")


def test_profile_only_reads_no_data(tmp_path):
    cfg = compose_train(["data=imagefolder", f"data.root={tmp_path / 'nowhere'}", "profile_only=true",
                         "model.channels=8", "model.layers=5", "model.num_classes=7"])
    summary = run_train(cfg, tmp_path)
    assert summary["num_classes"] == 7 and summary["profile_only"] is True
    assert json.loads((tmp_path / "summary.json").read_text())["params"] == summary["params"]


@pytest.mark.parametrize("text", [
    "Genotype(normal=[('sep_conv_9x9', 0)], normal_concat=[2], reduce=[('skip_connect', 1)], reduce_concat=[2])",
    "not a genotype",
])
def test_bad_genotype_files_are_genotype_errors(tmp_path, text):
    path = tmp_path / "genotype.txt"
    path.write_text(text)
    with pytest.raises(GenotypeError):
        run_train(compose_train(TINY_TRAIN + [f"genotype={path}", "profile_only=true"]), tmp_path)


def test_genotype_text_file_is_accepted(tmp_path):
    path = tmp_path / "genotype.txt"
    path.write_text(PUBLISHED["DARTS_V1"].to_text())
    summary = run_train(compose_train(TINY_TRAIN + [f"genotype={path}", "profile_only=true"]), tmp_path)
    assert summary["genotype"] == PUBLISHED["DARTS_V1"].to_dict()


# --- the command line --------------------------------------------------------------------------------
def test_cli_profile_only_prints_the_published_sizes(tmp_path):
    result = run_cli(["nas.train", "genotype=DARTS_V2", "profile_only=true", f"hydra.run.dir={tmp_path}"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "params 3,349,342   aux head params 476,426   MACs 528.36 M" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["params"], summary["aux_params"]) == (3_349_342, 476_426)


# (name, parameters without the aux head at C=36, 20 cells, 10 classes; the paper's figure in millions)
PUBLISHED_SIZES = [("DARTS_V1", 3_169_414, None), ("DARTS_V2", 3_349_342, 3.3), ("PC_DARTS", 3_634_678, 3.6),
                   ("PDARTS", 3_433_798, 3.4), ("GDAS_V1", 3_368_782, 3.4), ("DRNAS", 4_099_294, 4.1)]


@pytest.mark.parametrize(("name", "params", "paper"), PUBLISHED_SIZES, ids=[n for n, _, _ in PUBLISHED_SIZES])
def test_published_cells_have_the_papers_sizes(name, params, paper):
    model = build_network("cifar", PUBLISHED[name], channels=36, layers=20, num_classes=10, auxiliary=False)
    assert count_parameters(model)[0] == params
    if paper is not None:  # to the precision the paper gives (0.1 M)
        assert round(params / 1e6, 1) == paper
