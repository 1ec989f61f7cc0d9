"""TensorBoard logging of a search: scalars, op weights, and the derived cells as images and text.

``TBLogger`` is the one object the training loop talks to. It can be constructed disabled (on
non-zero DDP ranks, or when the user turns logging off) and then does nothing at all: no directory,
no event file, no matplotlib rendering, so callers never need ``if rank == 0`` around each call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.logging.plots import alpha_heatmap

if TYPE_CHECKING:
    from torch import Tensor


def _rows(values: Any) -> list[list[Any]]:
    """A 2-D tensor or array as nested Python lists, in one device-to-host copy."""
    if hasattr(values, "detach"):
        return values.detach().cpu().tolist()
    return np.asarray(values).tolist()


class TBLogger:
    """Thin wrapper over ``SummaryWriter`` that knows this package's tags and images.

    Tags:
      * ``alpha/<kind>/edge<i>/<op>``: op weight of op ``op`` on edge ``i`` of cell ``kind``.
      * ``alpha/<kind>``: heatmap image of all op weights of a cell kind.
      * ``genotype/normal``, ``genotype/reduce``: diagram images of the derived cells.
      * ``genotype``: the genotype's ``Genotype(...)`` text (stored by TensorBoard as
        ``genotype/text_summary``).
    """

    def __init__(self, log_dir: str | Path, enabled: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self._writer: Any = None
        if enabled:
            # Imported here so that a disabled logger does not pay for (or need) the tensorboard import.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    @property
    def active(self) -> bool:
        """True while the logger writes: enabled and not closed."""
        return self._writer is not None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """One scalar per entry; values may be floats or 0-d tensors."""
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), step)

    def alphas(
        self,
        weights: Mapping[str, Tensor],
        op_names: Sequence[str],
        step: int,
        alive: Mapping[str, Tensor] | None = None,
    ) -> None:
        """One scalar per op weight, tag ``alpha/<kind>/edge<i>/<op>``.

        Pruned ops (``alive`` False) are not logged at all: logging 0 would draw a curve that looks
        like an op whose weight decayed, whereas a missing point shows where the op was removed.
        """
        if self._writer is None:
            return
        for kind, w in weights.items():
            rows = _rows(w)
            mask = _rows(alive[kind]) if alive is not None and kind in alive else None
            for e, row in enumerate(rows):
                if len(row) != len(op_names):
                    raise ValueError(f"alpha '{kind}' has {len(row)} ops per edge but {len(op_names)} op names")
                for o, (op, value) in enumerate(zip(op_names, row, strict=True)):
                    if mask is None or mask[e][o]:
                        self._writer.add_scalar(f"alpha/{kind}/edge{e}/{op}", value, step)

    def alpha_images(
        self,
        weights: Mapping[str, Tensor],
        op_names: Sequence[str],
        step: int,
        alive: Mapping[str, Tensor] | None = None,
        labels: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Heatmap image ``alpha/<kind>`` per cell kind (pruned ops drawn hatched)."""
        if self._writer is None:
            return
        for kind, w in weights.items():
            mask = alive.get(kind) if alive is not None else None
            image = alpha_heatmap(w, op_names, mask, title=f"{kind} op weights, step {step}",
                                  rows=None if labels is None else labels.get(kind))
            self._writer.add_image(f"alpha/{kind}", image, step, dataformats="HWC")

    def genotype(self, genotype: Any, images: Mapping[str, np.ndarray], step: int) -> None:
        """The derived cells drawn by their space (``genotype/<kind>``) and the genotype's text under ``genotype``."""
        if self._writer is None:
            return
        for kind, image in images.items():
            self._writer.add_image(f"genotype/{kind}", image, step, dataformats="HWC")
        # TensorBoard renders text as markdown; a code block keeps the underscores and brackets intact.
        self.text("genotype", f"```\n{genotype.to_text()}\n```", step)

    def edge_charts(self, labels: Mapping[str, Sequence[str]]) -> None:
        """A custom-scalars layout: per cell kind, one multi-line chart per edge holding all its ops'
        weights (``alpha/<kind>/edge<i>/*``), titled by the edge (``src→dst``), instead of one chart
        per op weight."""
        if self._writer is None:
            return
        layout = {f"op weights: {kind}": {f"edge {e}: {label}": ["Multiline", [f"alpha/{kind}/edge{e}/"]]
                                          for e, label in enumerate(edges)}
                  for kind, edges in labels.items()}
        self._writer.add_custom_scalars(layout)

    def text(self, tag: str, text: str, step: int) -> None:
        """Text summary (rendered as markdown by TensorBoard, stored as ``<tag>/text_summary``)."""
        if self._writer is None:
            return
        self._writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; later calls are no-ops, so closing twice is safe."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TBLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
