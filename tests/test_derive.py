import pytest
import torch

from nas.errors import ConfigError
from nas.ops import SPACES
from nas.spaces.darts_derive import derive_cell, derive_genotype

OPS = SPACES["darts"]  # none, max, avg, skip, sep3, sep5, dil3, dil5
IDX = {name: i for i, name in enumerate(OPS)}


def weights_for(choices: dict[int, tuple[str, float]], edges: int = 14) -> torch.Tensor:
    """Every edge uniform-ish and weak, except the given edges whose op gets the given weight."""
    w = torch.full((edges, len(OPS)), 0.05)
    for edge, (op, value) in choices.items():
        w[edge, IDX[op]] = value
    return w


def test_top2_edges_per_node_and_argmax_op():
    # node 0: edges 0,1; node 1: edges 2,3,4; node 2: 5..8; node 3: 9..13
    w = weights_for({0: ("sep_conv_3x3", 0.6), 1: ("skip_connect", 0.4),
                     2: ("dil_conv_3x3", 0.3), 4: ("max_pool_3x3", 0.7),
                     6: ("sep_conv_5x5", 0.5), 8: ("avg_pool_3x3", 0.45),
                     9: ("dil_conv_5x5", 0.2), 13: ("sep_conv_3x3", 0.9)})
    pairs = derive_cell(w, OPS, nodes=4, k=2)
    assert pairs == [("sep_conv_3x3", 0), ("skip_connect", 1),
                     ("max_pool_3x3", 2), ("dil_conv_3x3", 0),
                     ("sep_conv_5x5", 1), ("avg_pool_3x3", 3),
                     ("sep_conv_3x3", 4), ("dil_conv_5x5", 0)]


def test_none_never_chosen_and_does_not_make_an_edge_strong():
    w = weights_for({2: ("none", 0.99), 3: ("sep_conv_3x3", 0.3), 4: ("skip_connect", 0.2)})
    pairs = derive_cell(w, OPS, nodes=4, k=2)
    assert pairs[2:4] == [("sep_conv_3x3", 1), ("skip_connect", 2)]
    assert all(op != "none" for op, _ in pairs)


def test_ties_break_to_earlier_input_and_earlier_op():
    w = torch.full((14, len(OPS)), 0.125)
    pairs = derive_cell(w, OPS, nodes=4, k=2)
    # every non-none op ties: the first non-none op of the space, the two earliest inputs
    assert pairs == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4


def test_k1_keeps_one_parent_per_node():
    w = weights_for({1: ("sep_conv_3x3", 0.6), 3: ("sep_conv_3x3", 0.6), 7: ("skip_connect", 0.5),
                     12: ("dil_conv_3x3", 0.5)})
    g = derive_genotype({"normal": w, "reduce": w}, OPS, nodes=4, k=1)
    assert g.normal == [("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 2), ("dil_conv_3x3", 3)]
    assert g.normal_concat == [2, 3, 4, 5] and g.k == 1


@pytest.mark.parametrize("k", [0, 3, -1])
def test_k_out_of_range_is_a_clear_config_error(k):
    with pytest.raises(ConfigError, match="derive.k"):
        derive_cell(torch.zeros(14, len(OPS)), OPS, nodes=4, k=k)


def test_pruned_ops_with_zero_weight_are_not_chosen():
    w = weights_for({0: ("sep_conv_3x3", 0.6)})
    w[0] = 0.0
    w[0, IDX["dil_conv_5x5"]] = 1.0  # the only op alive on edge 0
    pairs = derive_cell(w, OPS, nodes=4, k=2)
    assert pairs[0] == ("dil_conv_5x5", 0)
