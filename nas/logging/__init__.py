"""TensorBoard logging of a search, and the images it logs (usable on their own too)."""

from nas.logging.plots import alpha_heatmap, cell_diagram, edge_labels
from nas.logging.tensorboard import TBLogger

__all__ = ["TBLogger", "alpha_heatmap", "cell_diagram", "edge_labels"]
