"""Seamless blending of overlapping window predictions, panel by panel, strip by strip.

Memory is bounded on any scene size: each panel (:mod:`s2pipe.prediction.windows`) is
predicted top to bottom one window row (strip) at a time. :class:`StripAccumulator`
holds ``num_classes x tile x panel width`` float32; after a window row is added, its rows
above the next window row are final and handed out. The columns a panel shares with the
next one (``overlap`` px wide) are not final yet: their weighted sums are kept
(:class:`Seam`: ``(num_classes + 1) x height x overlap`` float32, 25 MB for a full
10980 px scene) and added into the next panel, so the map is the one a single
scene-wide panel gives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from s2pipe.model.normalization import Normalization
from s2pipe.prediction.batches import batches, prefetch
from s2pipe.prediction.windows import Panel, WindowGrid, ramp_weights
from s2pipe.sentinel2.scene import Scene

log = logging.getLogger(__name__)


class StripAccumulator:
    """Weighted class-probability sums for one window row of one panel.

    ``add(x0, probs)`` adds a window's (classes, tile, tile) probabilities at scene column
    ``x0``; ``final_rows()`` gives the finished rows of the window row as probabilities
    and ``advance()`` shifts the overlap up for the next window row.
    """

    def __init__(self, grid: WindowGrid, num_classes: int, panel: Panel) -> None:
        self.grid = grid
        self.panel = panel
        self.weights = ramp_weights(grid.tile, grid.overlap)
        shape = (num_classes, grid.tile, self.panel.width)
        self.sums = np.zeros(shape, dtype=np.float32)
        self.wsum = np.zeros(shape[1:], dtype=np.float32)
        self.valid = np.zeros(shape[1:], dtype=bool)
        self._tmp = np.empty((num_classes, grid.tile, grid.tile), dtype=np.float32)
        log.debug("strip accumulator %s float32 = %.1f MB", shape, self.sums.nbytes / 1e6)

    @property
    def nbytes(self) -> int:
        return self.sums.nbytes + self.wsum.nbytes

    def add(self, x0: int, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one window's probabilities (and its (tile, tile) mask of valid pixels)."""
        t = self.grid.tile
        px = x0 - self.panel.x0
        np.multiply(probs, self.weights, out=self._tmp)
        self.sums[:, :, px:px + t] += self._tmp
        self.wsum[:, px:px + t] += self.weights
        self.valid[:, px:px + t] = True if valid is None else valid

    def add_seam(self, seam: Seam, row: int, n: int, width: int) -> None:
        """Add the first ``width`` columns of ``seam``'s rows ``row .. row + n - 1`` (what
        the panel on the left left unfinished) at this panel's left edge."""
        self.sums[:, :n, :width] += seam.sums[:, row:row + n, :width]
        self.wsum[:n, :width] += seam.wsum[row:row + n, :width]
        self.valid[:n, :width] |= seam.valid[row:row + n, :width]

    def take_seam(self, seam: Seam, row: int, n: int) -> None:
        """Keep the unnormalised first ``n`` rows of the columns the next panel shares
        (from ``panel.final_stop`` on) as ``seam``'s rows ``row .. row + n - 1``."""
        px = self.panel.final_stop - self.panel.x0
        w = self.panel.width - px
        seam.sums[:, row:row + n, :w] = self.sums[:, :n, px:]
        seam.wsum[row:row + n, :w] = self.wsum[:n, px:]
        seam.valid[row:row + n, :w] = self.valid[:n, px:]

    def final_rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` rows, finished: probabilities normalised in place (classes, n,
        panel width) and their valid mask (n, panel width).

        ``n`` is the step to the next window row, or ``tile`` after the last one. The
        views are valid until :meth:`advance`.
        """
        self.sums[:, :n] /= np.maximum(self.wsum[:n], 1e-12)
        return self.sums[:, :n], self.valid[:n]

    def advance(self, n: int) -> None:
        """Drop the first ``n`` rows; move the rest up and clear below them."""
        keep = self.grid.tile - n
        if keep > 0:
            self.sums[:, :keep] = self.sums[:, n:]
            self.wsum[:keep] = self.wsum[n:]
            self.valid[:keep] = self.valid[n:]
        self.sums[:, keep:] = 0
        self.wsum[keep:] = 0
        self.valid[keep:] = False


class Seam:
    """Unfinished sums of the columns two neighbouring panels share, over the whole
    (padded) scene height: one buffer, each window row's rows read by the next panel
    right before the same rows are overwritten with what that panel leaves unfinished."""

    def __init__(self, num_classes: int, height: int, width: int) -> None:
        self.sums = np.zeros((num_classes, height, width), dtype=np.float32)
        self.wsum = np.zeros((height, width), dtype=np.float32)
        self.valid = np.zeros((height, width), dtype=bool)


def blend_scene(scene: Scene, model: Callable[[torch.Tensor], np.ndarray], grid: WindowGrid,
                norm: Normalization, *, batch_size: int, num_classes: int,
                 on_rows: Callable[[np.ndarray, np.ndarray, int], None],
                 progress: Callable[[int], None] | None = None) -> None:
    """Predict every window of ``grid`` and hand each finished piece of a strip, cropped
    to the scene, to ``on_rows(probabilities (classes, n, w), valid (n, w), col0)``:
    panel by panel (left to right), each top to bottom; ``col0`` is the first column."""
    rows, panels = grid.rows, grid.panels
    seam_widths = [p.x0 + p.width - p.final_stop for p in panels[:-1]]
    seam = Seam(num_classes, rows[-1] + grid.tile - rows[0], max(seam_widths)) \
        if seam_widths else None
    acc: StripAccumulator | None = None
    for batch in prefetch(batches(scene, grid, norm, batch_size)):
        panel = panels[batch.panel]
        if acc is None or acc.panel is not panel:
            acc = None  # the last panel's, freed before the next is allocated
            acc = StripAccumulator(grid, num_classes, panel)
        probs = model(batch.x)
        for i, x0 in enumerate(batch.cols):
            acc.add(x0, probs[i], batch.valid[i])
        if progress is not None:
            progress(len(batch.cols))
        if not batch.last_in_row:
            continue
        y0 = rows[batch.row]
        n = grid.tile if batch.row == len(rows) - 1 else rows[batch.row + 1] - y0
        if seam is not None:
            if batch.panel > 0:
                acc.add_seam(seam, y0 - rows[0], n, seam_widths[batch.panel - 1])
            if batch.panel + 1 < len(panels):
                acc.take_seam(seam, y0 - rows[0], n)
        p, valid = acc.final_rows(n)
        a, b = max(0, -y0), min(n, grid.height - y0)
        c0, c1 = max(0, panel.x0), min(grid.width, panel.final_stop)
        if b > a and c1 > c0:
            x = c0 - panel.x0
            on_rows(p[:, a:b, x:x + c1 - c0], valid[a:b, x:x + c1 - c0], c0)
        acc.advance(n)
