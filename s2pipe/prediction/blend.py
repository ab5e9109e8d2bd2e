"""Seamless blending of overlapping window predictions, in panels and strips.

The scene is covered by ``tile x tile`` windows every ``tile - overlap`` px (the grid of
:func:`s2pipe.tiles.tiling.tile_windows`) laid over the scene grown by ``overlap`` pixels on
each side; the parts of a window outside the scene are filled by reflection
(:func:`read_padded`). Each window's class probabilities are weighted with a separable
raised-cosine ramp over its ``overlap`` border pixels: neighbouring ramps sum to one (the
sums are normalised anyway, for the edge-aligned last window), so no window border shows
in the map, and no scene pixel is predicted from the outer, context-poor ring of a window.

Memory is bounded on any scene size: the window columns are split into *panels* at most
:data:`PANEL_WIDTH` px wide, each predicted top to bottom one window row (strip) at a
time. :class:`StripAccumulator` holds ``num_classes x tile x panel width`` float32; after
a window row is added, its rows above the next window row are final and handed out. The
columns a panel shares with the next one (``overlap`` px wide) are not final yet: their
weighted sums are kept (:class:`Seam`: ``(num_classes + 1) x height x overlap`` float32,
25 MB for a full 10980 px scene) and added into the next panel, so the map is the one a
single scene-wide panel gives.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

PANEL_WIDTH = 3072  # px: the widest panel (a 2560 px scene fits in one)


@dataclass(frozen=True)
class WindowGrid:
    """Window origins (in scene pixels; negative = before the scene) covering a scene.

    The windows are :func:`s2pipe.tiles.tiling.tile_windows` (the grid ``prepare`` cuts tiles
    on) laid over the scene grown by ``overlap`` reflected pixels on every side (and to
    at least one tile), so each scene pixel is at least ``overlap`` px inside a window.
    """

    width: int
    height: int
    tile: int
    overlap: int
    panel_width: int | None = None  # widest panel in px; None: PANEL_WIDTH

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @cached_property
    def _origins(self) -> tuple[list[int], list[int]]:
        from s2pipe.tiles.tiling import tile_windows

        o = self.overlap
        w, h = max(self.width + 2 * o, self.tile), max(self.height + 2 * o, self.tile)
        windows = tile_windows(w, h, self.tile, self.stride)
        cols = sorted({int(win.col_off) - o for win in windows})
        rows = sorted({int(win.row_off) - o for win in windows})
        return cols, rows

    @property
    def cols(self) -> list[int]:
        return self._origins[0]

    @property
    def rows(self) -> list[int]:
        return self._origins[1]

    @property
    def padded_width(self) -> int:
        """From the first window's left to the last one's right."""
        return self.cols[-1] - self.cols[0] + self.tile

    @cached_property
    def panels(self) -> list["Panel"]:
        """The window columns split into panels of at most ``panel_width`` px (and at
        least one window), of nearly equal numbers of windows, left to right."""
        limit = self.panel_width or PANEL_WIDTH
        n = len(self.cols)
        per = max(1, (limit - self.tile) // self.stride + 1)
        k = -(-n // per)
        cuts = [round(i * n / k) for i in range(k + 1)]
        cols = [self.cols[a:b] for a, b in zip(cuts, cuts[1:])]
        return [Panel(c, self.tile, cols[i + 1][0] if i + 1 < k else self.width + self.tile)
                for i, c in enumerate(cols)]

    @property
    def max_panel_width(self) -> int:
        return max(p.width for p in self.panels)

    def __len__(self) -> int:
        return len(self.cols) * len(self.rows)


@dataclass(frozen=True)
class Panel:
    """Consecutive window columns predicted together. It finishes the scene columns from
    its left edge to ``final_stop`` (the next panel's left edge), clipped to the scene."""

    cols: list[int]       # window column origins
    tile: int
    final_stop: int

    @property
    def x0(self) -> int:
        """Scene column of the panel's left edge (negative: reflected margin)."""
        return self.cols[0]

    @property
    def width(self) -> int:
        return self.cols[-1] + self.tile - self.cols[0]


def ramp_weights(tile: int, overlap: int) -> np.ndarray:
    """The 2D blending weight of one window, float32 (tile, tile), in (0, 1].

    A raised-cosine (Hann) ramp over the ``overlap`` border pixels and 1 inside; two ramps
    offset by ``tile - overlap`` sum to exactly 1.
    """
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        ramp = np.sin(0.5 * np.pi * (i + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[tile - overlap:] = ramp[::-1]
    return np.outer(w, w).astype(np.float32)


def reflect_index(start: int, length: int, size: int) -> np.ndarray:
    """Indices into ``range(size)`` of positions ``start .. start+length-1``, reflected
    about the borders (without repeating the edge pixel) as often as needed."""
    pos = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(pos)
    period = 2 * (size - 1)
    m = np.mod(pos, period)
    return np.where(m < size, m, period - m)


def read_padded(read: Callable[[int, int, int, int], np.ndarray], width: int, height: int,
                x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The ``w x h`` window at (x0, y0) of a (bands, height, width) scene.

    ``read(col_off, row_off, w, h)`` returns a part of the scene; pixels outside the scene
    are its reflection about the scene border (repeated for scenes smaller than the margin).
    """
    cols, rows = reflect_index(x0, w, width), reflect_index(y0, h, height)
    c0, c1, r0, r1 = int(cols.min()), int(cols.max()) + 1, int(rows.min()), int(rows.max()) + 1
    data = read(c0, r0, c1 - c0, r1 - r0)
    if x0 >= 0 and y0 >= 0 and x0 + w <= width and y0 + h <= height:
        return data
    return data[:, (rows - r0)[:, None], (cols - c0)[None, :]]  # one copy


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

    def add_seam(self, seam: "Seam", row: int, n: int, width: int) -> None:
        """Add the first ``width`` columns of ``seam``'s rows ``row .. row + n - 1`` (what
        the panel on the left left unfinished) at this panel's left edge."""
        self.sums[:, :n, :width] += seam.sums[:, row:row + n, :width]
        self.wsum[:n, :width] += seam.wsum[row:row + n, :width]
        self.valid[:n, :width] |= seam.valid[row:row + n, :width]

    def take_seam(self, seam: "Seam", row: int, n: int) -> None:
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


# ------------------------------------------------- reading, prefetch, blending
@dataclass
class _Batch:
    panel: int               # index of the panel
    row: int                 # index of the window row
    last_in_row: bool
    cols: list[int]          # window column origins
    x: np.ndarray            # (n, bands, t, t) float32, normalised
    valid: np.ndarray        # (n, t, t) bool: some band is non-zero


def _batches(scene: Any, grid: WindowGrid, mean: np.ndarray, std: np.ndarray,
             batch_size: int) -> Iterator[_Batch]:
    """Read each panel's window rows once as reflect-padded strips; cut into batches."""
    from rasterio.windows import Window

    def read(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        return scene.read(Window(x0, y0, w, h))

    t = grid.tile
    inv_std = (1.0 / np.asarray(std, dtype=np.float64)).astype(np.float32)
    for g, panel in enumerate(grid.panels):
        cols = panel.cols
        for r, y0 in enumerate(grid.rows):
            strip = read_padded(read, grid.width, grid.height, panel.x0, y0, panel.width, t)
            valid_strip = strip.any(axis=0)
            for b in range(0, len(cols), batch_size):
                chunk = cols[b:b + batch_size]
                x = np.empty((len(chunk), strip.shape[0], t, t), dtype=np.float32)
                valid = np.empty((len(chunk), t, t), dtype=bool)
                for i, c in enumerate(chunk):
                    x[i] = strip[:, :, c - panel.x0:c - panel.x0 + t]
                    valid[i] = valid_strip[:, c - panel.x0:c - panel.x0 + t]
                x -= mean
                x *= inv_std
                x *= valid[:, None]  # no-data pixels enter the model as the band means
                yield _Batch(g, r, b + batch_size >= len(cols), chunk, x, valid)
            del strip, valid_strip  # before the next strip is read


def _prefetch(it: Iterator[_Batch], depth: int = 2) -> Iterator[_Batch]:
    """Run ``it`` in a background thread, ``depth`` items ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=work, name="s2pipe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


# ----------------------------------------------------------------- engine
def blend_scene(scene: Any, model: Callable[[np.ndarray], np.ndarray], grid: WindowGrid,
                 mean: np.ndarray, std: np.ndarray, *, batch_size: int, num_classes: int,
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
    for batch in _prefetch(_batches(scene, grid, mean, std, batch_size)):
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
