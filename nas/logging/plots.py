"""Images of a search's state: op-weight heatmaps and derived-cell diagrams.

Both are drawn every epoch from the training loop, possibly from a background thread, so they use
``matplotlib.figure.Figure`` with an Agg canvas directly and never ``pyplot``: pyplot keeps a global
registry of figures (a leak if one is not closed) and a global backend the user may have chosen for
other work. Each function returns an RGB ``uint8`` array (H×W×3), the format TensorBoard's
``add_image(..., dataformats="HWC")`` takes, so callers never touch matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle

_DPI = 100
_INPUT_NAMES = ("c_{k-2}", "c_{k-1}")


def _to_numpy(values: Any, dtype: Any) -> np.ndarray:
    """Accept torch tensors (on any device, with grad) as well as arrays, without importing torch."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _state_name(index: int) -> str:
    """Name of a cell state: the two inputs, then the intermediate nodes by number."""
    return _INPUT_NAMES[index] if index < 2 else str(index - 2)


def _nodes_for_edges(edges: int) -> int | None:
    """Intermediate node count of a search cell with ``edges`` edges (node i has i + 2), or None."""
    nodes = 0
    while nodes * (nodes + 3) // 2 < edges:
        nodes += 1
    return nodes if nodes * (nodes + 3) // 2 == edges else None


def edge_labels(nodes: int) -> list[str]:
    """One label per search-cell edge, node-major (``c_{k-2}→0``, ``c_{k-1}→0``, ``0→1``, ...).

    The order is the row order of the alpha tensors, so a heatmap's rows can be read without
    recomputing the edge numbering.
    """
    return [f"{_state_name(src)}→{node}" for node in range(nodes) for src in range(node + 2)]


def alpha_heatmap(
    weights: Any,
    op_names: Sequence[str],
    alive: Any | None = None,
    title: str = "",
    vmax: float | None = None,
    rows: Sequence[str] | None = None,
) -> np.ndarray:
    """Heatmap of an (edges × ops) array of op weights, returned as an RGB ``uint8`` image.

    ``weights`` are the op weights (0..1). The colours diverge from the undecided value 1/|ops|
    (white): ops above it red, below it blue, the scale stretched to the largest live deviation
    (or to ``vmax``). Early in a search every weight sits near 1/|ops| and a 0..1 scale would paint
    them all the same; this one shows which ops are pulling ahead from the first epoch, and the
    written values keep images comparable across epochs.
    Ops pruned by ASAP (``alive`` False) are drawn as grey hatched cells with "×" and no value,
    so a pruned op is never mistaken for one whose weight merely went to zero.
    """
    w = _to_numpy(weights, np.float64)
    if w.ndim != 2 or w.shape[1] != len(op_names):
        raise ValueError(f"weights of shape {w.shape} do not match (edges, {len(op_names)} ops)")
    mask = np.ones(w.shape, dtype=bool) if alive is None else _to_numpy(alive, bool)
    if mask.shape != w.shape:
        raise ValueError(f"alive mask of shape {mask.shape} does not match weights of shape {w.shape}")
    edges, ops = w.shape
    nodes = _nodes_for_edges(edges)
    if rows is not None:  # the space's own edge labels
        labels = list(rows)
    else:
        labels = edge_labels(nodes) if nodes is not None else [f"edge {i}" for i in range(edges)]

    centre = 1.0 / ops
    live = w[mask] if mask.any() else np.array([centre])
    top = float(vmax) if vmax is not None else float(live.max())
    spread = max(top - centre, centre - float(live.min()), 1e-4)
    norm = TwoSlopeNorm(vcenter=centre, vmin=max(centre - spread, 0.0) - 1e-9, vmax=centre + spread)
    cmap = colormaps["RdBu_r"]

    # Margins are computed from the label lengths instead of by a layout engine: constrained and
    # tight layout measure every text artist and would double the render time.
    char = 0.6 * 8 / 72  # inches per character of an 8 pt DejaVu Sans label
    op_len = max((len(n) for n in op_names), default=1) * char
    cell_w, cell_h = 0.78, 0.3
    left = 0.2 + max(max(len(lb) for lb in labels) * char, op_len * 0.82 - cell_w / 2)
    bottom = 0.25 + op_len * 0.58
    top_m = 0.4 if title else 0.15
    right = 0.95
    fig_w, fig_h = left + cell_w * ops + right, bottom + cell_h * edges + top_m
    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, cell_w * ops / fig_w, cell_h * edges / fig_h))
    cax = fig.add_axes(((left + cell_w * ops + 0.12) / fig_w, bottom / fig_h, 0.16 / fig_w, cell_h * edges / fig_h))
    image = ax.imshow(np.ma.masked_array(w, ~mask), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    for e, o in zip(*np.nonzero(mask), strict=True):
        r, g, b, _ = cmap(norm(w[e, o]))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.45
        ax.text(o, e, f"{w[e, o]:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black",
                parse_math=False)
    pruned_e, pruned_o = np.nonzero(~mask)
    if len(pruned_e):
        # One collection each for the hatched cells and their crosses: per-cell artists cost ~1 ms each.
        ax.add_collection(PatchCollection(
            [Rectangle((o - 0.5, e - 0.5), 1, 1) for e, o in zip(pruned_e, pruned_o, strict=True)],
            facecolor="0.85", edgecolor="0.55", hatch="///", linewidth=0.5))
        ax.scatter(pruned_o, pruned_e, marker="x", s=30, color="0.25", linewidths=1.2, zorder=3)
    ax.hlines(np.arange(1, edges) - 0.5, -0.5, ops - 0.5, colors="white", linewidth=0.6)
    ax.vlines(np.arange(1, ops) - 0.5, -0.5, edges - 0.5, colors="white", linewidth=0.6)
    ax.set_xticks(range(ops), list(op_names), rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(edges), labels, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, cax=cax).ax.tick_params(labelsize=7)
    return _render(fig)


# Cell diagram geometry, in data units. The axes get an equal aspect and a figure sized to the data,
# so data distances are proportional to pixels and matplotlib's arc3 curves (computed in display
# space) are the Bezier curves computed here for collision tests and label placement.
_NODE_R = 0.3
_DX = 1.7  # horizontal distance between columns
_ZIG = 0.65  # intermediate nodes alternate above and below the axis so that skip edges miss them
_INCH_PER_UNIT = 1.15
_MAX_WIDTH_IN = 16.0
_LABEL_PT = 7.5
_RADS = (0.12, -0.12, 0.25, -0.25, 0.4, -0.4, 0.55, -0.55, 0.0)
_LABEL_TS = np.array([0.5, 0.42, 0.58, 0.35, 0.65, 0.28, 0.72, 0.22, 0.78])

Box = tuple[float, float, float, float]


def _bezier(p0: np.ndarray, p2: np.ndarray, rad: float, t: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` curve from p0 to p2 at parameters ``t``."""
    d = p2 - p0
    c = (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def _pick_rad(p0: np.ndarray, p2: np.ndarray, obstacles: np.ndarray, used: set[float]) -> float:
    """Curvature for an arrow that keeps clear of other nodes and of parallel arrows already drawn.

    Prefers gentle curves; when every candidate touches a node, takes the one that stays furthest away.
    """
    t = np.linspace(0.08, 0.92, 40)
    best, best_gap = _RADS[0], -math.inf
    for rad in _RADS:
        if rad in used:
            continue
        if not len(obstacles):
            return rad
        pts = _bezier(p0, p2, rad, t)
        gap = float(np.min(np.linalg.norm(pts[:, None, :] - obstacles[None, :, :], axis=-1)))
        if gap > 1.35 * _NODE_R:
            return rad
        if gap > best_gap:
            best, best_gap = rad, gap
    return best


def _overlap(a: Box, b: Box) -> float:
    """Overlap area of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _layout(nodes: int) -> np.ndarray:
    """Positions of the states: 2 inputs, ``nodes`` intermediate nodes, then the output."""
    pos = np.zeros((nodes + 3, 2))
    pos[0], pos[1] = (0.0, 1.0), (0.0, -1.0)
    for j in range(nodes):
        pos[j + 2] = (_DX * (j + 1), _ZIG if j % 2 == 0 else -_ZIG)
    pos[nodes + 2] = (_DX * (nodes + 1), 0.0)
    return pos


def _place_labels(arrows: list[tuple[int, int, float, str | None]], curves: list[np.ndarray], pos: np.ndarray,
                  unit_per_pt: float) -> list[tuple[float, float] | None]:
    """Greedy label positions along each arrow, avoiding nodes, earlier labels and other arrows.

    A label may sit on its own arrow (its white box hides the line under it) but should not cover
    another arrow, or it becomes ambiguous which arrow it names. Sizes are estimated from the font
    (DejaVu Sans is ~0.6 em per character) rather than measured, which would need an extra draw.
    """
    taken: list[Box] = [(x - _NODE_R, y - _NODE_R, x + _NODE_R, y + _NODE_R) for x, y in pos]
    h = 1.7 * _LABEL_PT * unit_per_pt
    placed: list[tuple[float, float] | None] = []
    for i, (src, dst, rad, label) in enumerate(arrows):
        if label is None:
            placed.append(None)
            continue
        w = (0.6 * len(label) + 0.6) * _LABEL_PT * unit_per_pt
        others = np.concatenate([c for j, c in enumerate(curves) if j != i]) if len(curves) > 1 else np.zeros((0, 2))
        best, best_cost = None, math.inf
        for x, y in _bezier(pos[src], pos[dst], rad, _LABEL_TS):
            box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            crossing = np.count_nonzero((np.abs(others[:, 0] - x) < w / 2) & (np.abs(others[:, 1] - y) < h / 2))
            cost = 10 * sum(_overlap(box, other) for other in taken) / (w * h) + crossing
            if cost < best_cost:
                best, best_cost = (x, y, box), cost
            if cost == 0:
                break
        x, y, box = best
        taken.append(box)
        placed.append((x, y))
    return placed


def cell_diagram(pairs: Sequence[tuple[str, int]], concat: Sequence[int], title: str = "") -> np.ndarray:
    """Drawing of one derived cell, returned as an RGB ``uint8`` image.

    Inputs ``c_{k-2}``, ``c_{k-1}`` are on the left, the intermediate nodes in the middle and the
    output ``c_{k}`` on the right; each (op, input) pair is an arrow labelled with its op, and dashed
    arrows join the concatenated states to the output. Works for any node count and any k
    (nodes = len(concat), k = len(pairs) // nodes). Arrows are curved to miss other nodes and to
    separate parallel arrows; labels are placed along their arrow so they cover neither each other,
    a node, nor another arrow where that can be helped.
    """
    nodes = len(concat)
    if nodes == 0 or not pairs or len(pairs) % nodes:
        raise ValueError(f"{len(pairs)} pairs cannot be split evenly over {nodes} concatenated nodes")
    k = len(pairs) // nodes
    out = nodes + 2
    pos = _layout(nodes)

    wanted: list[tuple[int, int, str | None]] = []
    for position, (op, src) in enumerate(pairs):
        node = position // k
        if not 0 <= src < node + 2:
            raise ValueError(f"node {node} takes input {src}, but only inputs 0..{node + 1} exist")
        wanted.append((src, node + 2, op))
    for state in concat:
        if not 0 <= state < out:
            raise ValueError(f"concat refers to state {state}, but only states 0..{out - 1} exist")
        wanted.append((state, out, None))
    names = [_state_name(s) for s in range(out)] + ["c_{k}"]
    return _draw(pos, wanted, names, {0: "#a6cee3", 1: "#a6cee3", out: "#b2df8a"}, title)


def dag_diagram(nodes: int, edges: Sequence[tuple[int, int, str]], names: Sequence[str], title: str = "") -> np.ndarray:
    """Drawing of a cell whose ``nodes`` states form a DAG (NAS-Bench-201's 4-node cell): the first
    state on the left, the last on the right, one labelled arrow per (src, dst, op) edge."""
    pos = np.zeros((nodes, 2))
    for j in range(nodes):
        pos[j] = (_DX * j, 0.0 if j in (0, nodes - 1) else (_ZIG if j % 2 else -_ZIG))
    return _draw(pos, list(edges), list(names), {0: "#a6cee3", nodes - 1: "#b2df8a"}, title)


def _draw(pos: np.ndarray, wanted: Sequence[tuple[int, int, str | None]], names: Sequence[str],
          colours: dict[int, str], title: str) -> np.ndarray:
    """Render states at ``pos`` and arrows (src, dst, label or None for a dashed one)."""
    arrows: list[tuple[int, int, float, str | None]] = []
    used: dict[tuple[int, int], set[float]] = {}
    for src, dst, label in wanted:
        others = np.array([pos[s] for s in range(len(pos)) if s not in (src, dst)])
        rad = _pick_rad(pos[src], pos[dst], others, used.setdefault((src, dst), set()))
        used[(src, dst)].add(rad)
        arrows.append((src, dst, rad, label))

    # Scale: fixed inches per unit, shrunk for very wide cells so the image stays a sane size.
    inch_per_unit = min(_INCH_PER_UNIT, _MAX_WIDTH_IN / (pos[:, 0].max() + 1.5))
    unit_per_pt = 1 / 72 / inch_per_unit
    t = np.linspace(0.0, 1.0, 41)
    curves = [_bezier(pos[s], pos[d], rad, t) for s, d, rad, _ in arrows]
    labels = _place_labels(arrows, curves, pos, unit_per_pt)

    # Limits from everything drawn, so deep curves and labels are never clipped.
    pad = 0.15
    pts = np.concatenate([*curves, pos - _NODE_R, pos + _NODE_R])
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    for (_, _, _, label), xy in zip(arrows, labels, strict=True):
        if label is not None and xy is not None:
            half = np.array([(0.6 * len(label) + 0.6) * _LABEL_PT, 1.7 * _LABEL_PT]) * unit_per_pt / 2 + pad
            lo, hi = np.minimum(lo, np.array(xy) - half), np.maximum(hi, np.array(xy) + half)
    width_in, plot_h_in = (hi - lo) * inch_per_unit
    title_in = 0.35 if title else 0.0
    height_in = plot_h_in + title_in
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, plot_h_in / height_in))
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10, y=1.0 - 0.08 / height_in, va="top")

    circles = []
    for s, xy in enumerate(pos):
        circle = Circle(tuple(xy), _NODE_R, facecolor=colours.get(s, "#fdf6b2"), edgecolor="0.2", linewidth=1.0,
                        zorder=3)
        ax.add_patch(circle)
        circles.append(circle)
        name = names[s]
        ax.text(*xy, f"${name}$" if "_" in name else name, ha="center", va="center", fontsize=10, zorder=4)
    for (src, dst, rad, label), xy in zip(arrows, labels, strict=True):
        style = {"color": "0.15", "linewidth": 1.1} if label is not None else {
            "color": "0.45", "linewidth": 1.0, "linestyle": "--"}
        ax.add_patch(FancyArrowPatch(tuple(pos[src]), tuple(pos[dst]), arrowstyle="-|>", mutation_scale=11,
                                     connectionstyle=f"arc3,rad={rad}", patchA=circles[src], patchB=circles[dst],
                                     shrinkA=1, shrinkB=1, zorder=2, **style))
        if label is not None and xy is not None:
            ax.text(*xy, label, ha="center", va="center", fontsize=_LABEL_PT, zorder=5, parse_math=False,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.75", "linewidth": 0.5})
    return _render(fig)
