"""The logging layer is checked by reading its event files back the way TensorBoard does."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.genotype import PUBLISHED, Genotype
from nas.logging import TBLogger, alpha_heatmap, cell_diagram, edge_labels
from nas.ops import DARTS_PRIMITIVES
from nas.spaces import DartsSpace

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
DARTS = PUBLISHED["DARTS_V2"]
# Three nodes, three parents each (k = 3), with a parallel pair (node 1 takes input 1 twice).
K3 = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0),
            ("dil_conv_5x5", 2), ("sep_conv_5x5", 1), ("avg_pool_3x3", 1),
            ("skip_connect", 3), ("sep_conv_3x3", 2), ("dil_conv_3x3", 0)],
    normal_concat=[2, 3, 4],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 0),
            ("skip_connect", 2), ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
            ("skip_connect", 3), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4],
)


def op_weights(edges: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(edges, len(OPS), generator=g), dim=-1)


def assert_image(image: np.ndarray) -> None:
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 100 and image.shape[1] > 100
    packed = image.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    colours = np.unique(packed)
    assert len(colours) > 10, "image is (nearly) blank"


def test_edge_labels_follow_the_node_major_edge_order():
    labels = edge_labels(4)
    assert len(labels) == 14 and len(set(labels)) == 14
    assert labels[:5] == ["c_{k-2}→0", "c_{k-1}→0", "c_{k-2}→1", "c_{k-1}→1", "0→1"]
    assert labels[-1] == "2→3"
    assert len(edge_labels(3)) == 9


@pytest.fixture(scope="module")
def full_heatmap() -> np.ndarray:
    return alpha_heatmap(op_weights(14), OPS, title="normal")


def test_heatmap_is_an_rgb_image(full_heatmap):
    assert_image(full_heatmap)


def test_heatmap_of_a_three_node_cell_from_numpy():
    assert_image(alpha_heatmap(op_weights(9).numpy(), OPS))


def test_heatmap_rejects_mismatched_op_names():
    with pytest.raises(ValueError):
        alpha_heatmap(op_weights(14), OPS[:-1])
    with pytest.raises(ValueError):
        alpha_heatmap(op_weights(14), OPS, alive=torch.ones(13, len(OPS), dtype=torch.bool))


def test_heatmap_shows_pruned_ops(full_heatmap):
    alive = torch.ones(14, len(OPS), dtype=torch.bool)
    alive[::2, :3] = False
    pruned = alpha_heatmap(op_weights(14), OPS, alive, title="normal")
    assert full_heatmap.shape == pruned.shape
    assert (full_heatmap != pruned).any(axis=-1).mean() > 0.01


@pytest.mark.parametrize(("genotype", "kind"), [(DARTS, "normal"), (K3, "normal"), (K3, "reduce")],
                         ids=["darts_v2-normal", "k3-normal", "k3-reduce"])
def test_cell_diagram_is_an_rgb_image(genotype, kind):
    assert_image(cell_diagram(getattr(genotype, kind), getattr(genotype, f"{kind}_concat"), title=kind))


def test_cell_diagram_rejects_inputs_that_do_not_exist():
    with pytest.raises(ValueError):
        cell_diagram([("skip_connect", 3), ("skip_connect", 0)], [2])


@pytest.fixture(scope="module")
def event_log(tmp_path_factory) -> tuple[EventAccumulator, Path]:
    log_dir = tmp_path_factory.mktemp("tb")
    weights = {"normal": op_weights(14, 0), "reduce": op_weights(14, 1)}
    alive = {"normal": torch.ones(14, len(OPS), dtype=torch.bool), "reduce": torch.ones(14, len(OPS), dtype=torch.bool)}
    alive["reduce"][0, 0] = False
    with TBLogger(log_dir) as tb:
        tb.scalars({"train/loss": 1.5, "val/acc": torch.tensor(0.25)}, step=3)
        tb.alphas(weights, OPS, step=3, alive=alive)
        tb.alpha_images(weights, OPS, step=3, alive=alive)
        tb.genotype(DARTS, DartsSpace(DARTS_PRIMITIVES).images(DARTS), step=3)
        tb.text("note", "hello", step=3)
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, log_dir


def test_logger_writes_scalars(event_log):
    acc, _ = event_log
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/acc"} <= tags
    assert acc.Scalars("val/acc")[0].value == pytest.approx(0.25)
    assert acc.Scalars("train/loss")[0].step == 3


def test_logger_writes_one_scalar_per_live_alpha(event_log):
    acc, _ = event_log
    tags = set(acc.Tags()["scalars"])
    expected = {f"alpha/normal/edge{e}/{op}" for e in range(14) for op in OPS}
    assert expected <= tags
    value = acc.Scalars("alpha/normal/edge5/sep_conv_3x3")[0].value
    assert value == pytest.approx(op_weights(14, 0)[5, OPS.index("sep_conv_3x3")].item(), rel=1e-6)
    # The pruned op is left out, not logged as 0.
    assert "alpha/reduce/edge0/none" not in tags
    assert "alpha/reduce/edge0/max_pool_3x3" in tags
    assert sum(t.startswith("alpha/") for t in tags) == 2 * 14 * len(OPS) - 1


def test_logger_writes_images_and_genotype_text(event_log):
    acc, _ = event_log
    assert {"alpha/normal", "alpha/reduce", "genotype/normal", "genotype/reduce"} <= set(acc.Tags()["images"])
    for tag in ("alpha/normal", "genotype/reduce"):
        event = acc.Images(tag)[0]
        assert event.step == 3
        assert_image(np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB")))
    tensors = set(acc.Tags()["tensors"])
    assert {"genotype/text_summary", "note/text_summary"} <= tensors
    text = acc.Tensors("genotype/text_summary")[0].tensor_proto.string_val[0].decode()
    assert DARTS.to_text() in text and text.startswith("```")


def test_disabled_logger_creates_nothing(tmp_path):
    log_dir = tmp_path / "tb"
    with TBLogger(log_dir, enabled=False) as tb:
        tb.scalars({"loss": 1.0}, step=0)
        tb.alphas({"normal": op_weights(14)}, OPS, step=0)
        tb.alpha_images({"normal": op_weights(14)}, OPS, step=0)
        tb.genotype(DARTS, {}, step=0)
        tb.text("x", "y", step=0)
        tb.flush()
    assert not log_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_close_is_idempotent_and_later_calls_are_ignored(tmp_path):
    tb = TBLogger(tmp_path)
    tb.close()
    tb.close()
    tb.scalars({"loss": 1.0}, step=0)
    assert not tb.active
