"""Cells: the search cell of mixed edges and the discrete cell built from a genotype."""

from nas.cells.discrete import DiscreteCell as DiscreteCell  # re-exported
from nas.cells.mixed import MixedEdge, channel_shuffle
from nas.cells.search_cell import SearchCell, edge_inputs, num_edges

__all__ = ["MixedEdge", "channel_shuffle", "SearchCell", "edge_inputs", "num_edges"]
