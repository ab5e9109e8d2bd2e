"""Seamless blending of overlapping window predictions, one strip of windows at a time.

The scene is covered by a regular grid of ``tile x tile`` windows with stride
``tile - overlap`` that starts ``overlap`` pixels before the scene and ends at least
``overlap`` pixels after it; the parts of a window outside the scene are filled by
reflection (:func:`read_padded`). Each window's class probabilities are weighted with a
separable raised-cosine ramp over its ``overlap`` border pixels: neighbouring ramps sum
to one, so the blend is a partition of unity and no window border shows in the map,
and no scene pixel is ever predicted from the outermost, context-poor ring of a window.

:class:`StripAccumulator` holds only ``num_classes x tile x padded width`` float32: the
rows of the current window row. After a window row is added, its first ``stride`` rows
are final and handed out; the last ``overlap`` rows move up for the next window row.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowGrid:
    """Window origins (in scene pixels; negative = before the scene) covering a scene."""

    width: int
    height: int
    tile: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def _origins(self, size: int) -> list[int]:
        need = size + 2 * self.overlap  # the scene plus a reflected margin on both sides
        n = 1 if need <= self.tile else 1 + math.ceil((need - self.tile) / self.stride)
        return [-self.overlap + k * self.stride for k in range(n)]

    @property
    def cols(self) -> list[int]:
        return self._origins(self.width)

    @property
    def rows(self) -> list[int]:
        return self._origins(self.height)

    @property
    def padded_width(self) -> int:
        """Width of the accumulator: from the first window's left to the last one's right."""
        return (len(self.cols) - 1) * self.stride + self.tile

    def __len__(self) -> int:
        return len(self.cols) * len(self.rows)


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


def read_padded(read: Callable[[int, int, int, int], np.ndarray], width: int, height: int,
                x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The ``w x h`` window at (x0, y0) of a (bands, height, width) scene.

    ``read(col_off, row_off, w, h)`` returns the in-scene part; pixels outside the scene
    are its reflection about the scene border (repeated for scenes smaller than the margin).
    """
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, width), min(y0 + h, height)
    data = read(cx0, cy0, cx1 - cx0, cy1 - cy0)
    pad = ((0, 0), (cy0 - y0, y0 + h - cy1), (cx0 - x0, x0 + w - cx1))
    if any(p for pair in pad for p in pair):
        if min(data.shape[1:]) == 1:
            data = np.pad(data, pad, mode="edge")  # reflect needs two pixels
        else:
            data = np.pad(data, pad, mode="reflect")
    return data


class StripAccumulator:
    """Weighted class-probability sums for one window row plus its overlap.

    ``add(x0, probs)`` adds a window's (classes, tile, tile) probabilities at padded-grid
    column ``x0 + overlap``; ``final_rows()`` gives the finished rows of the window row
    as probabilities and ``advance()`` shifts the overlap up for the next window row.
    """

    def __init__(self, grid: WindowGrid, num_classes: int) -> None:
        self.grid = grid
        self.weights = ramp_weights(grid.tile, grid.overlap)
        shape = (num_classes, grid.tile, grid.padded_width)
        self.sums = np.zeros(shape, dtype=np.float32)
        self.wsum = np.zeros(shape[1:], dtype=np.float32)
        self.valid = np.zeros(shape[1:], dtype=bool)
        log.debug("strip accumulator %s float32 = %.1f MB", shape, self.sums.nbytes / 1e6)

    @property
    def nbytes(self) -> int:
        return self.sums.nbytes + self.wsum.nbytes

    def add(self, x0: int, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one window's probabilities (and its (tile, tile) mask of valid pixels)."""
        t = self.grid.tile
        px = x0 + self.grid.overlap
        self.sums[:, :, px:px + t] += probs * self.weights
        self.wsum[:, px:px + t] += self.weights
        self.valid[:, px:px + t] = True if valid is None else valid

    def final_rows(self, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The finished rows: probabilities normalised in place (classes, rows, padded
        width) and their valid mask (rows, padded width).

        ``stride`` rows, or all ``tile`` rows after the last window row. The views are
        valid until :meth:`advance`.
        """
        n = self.grid.tile if last else self.grid.stride
        self.sums[:, :n] /= np.maximum(self.wsum[:n], 1e-12)
        return self.sums[:, :n], self.valid[:n]

    def advance(self) -> None:
        """Move the overlap rows up and clear the rest for the next window row."""
        n, keep = self.grid.stride, self.grid.overlap
        if keep:
            self.sums[:, :keep] = self.sums[:, n:]
            self.wsum[:keep] = self.wsum[n:]
            self.valid[:keep] = self.valid[n:]
        self.sums[:, keep:] = 0
        self.wsum[keep:] = 0
        self.valid[keep:] = False


# ------------------------------------------------- reading, prefetch, blending
@dataclass
class _Batch:
    row: int                 # index of the window row
    last_in_row: bool
    cols: list[int]          # window column origins
    x: np.ndarray            # (n, bands, t, t) float32, normalised
    valid: np.ndarray        # (n, t, t) bool: some band is non-zero


def _batches(scene: Any, grid: WindowGrid, mean: np.ndarray, std: np.ndarray,
             batch_size: int) -> Iterator[_Batch]:
    """Read each window row once as a reflect-padded strip and cut it into batches."""
    from rasterio.windows import Window

    def read(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        return scene.read(Window(x0, y0, w, h))

    t, wp = grid.tile, grid.padded_width
    for r, y0 in enumerate(grid.rows):
        strip = read_padded(read, grid.width, grid.height, -grid.overlap, y0, wp, t)
        cols = grid.cols
        for b in range(0, len(cols), batch_size):
            chunk = cols[b:b + batch_size]
            raw = np.stack([strip[:, :, x + grid.overlap:x + grid.overlap + t] for x in chunk])
            valid = raw.any(axis=1)
            x = (raw.astype(np.float32) - mean) / std
            x *= valid[:, None]  # no-data pixels enter the model as the band means
            yield _Batch(r, b + batch_size >= len(cols), chunk, x, valid)


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
                 on_rows: Callable[[np.ndarray, np.ndarray], None],
                 progress: Callable[[int], None] | None = None) -> None:
    """Predict every window of ``grid`` and hand each finished strip, cropped to the
    scene, to ``on_rows(probabilities (classes, n, width), valid (n, width))``."""
    acc = StripAccumulator(grid, num_classes)
    o, rows = grid.overlap, grid.rows
    for batch in _prefetch(_batches(scene, grid, mean, std, batch_size)):
        probs = model(batch.x)
        for i, x0 in enumerate(batch.cols):
            acc.add(x0, probs[i], batch.valid[i])
        if progress is not None:
            progress(len(batch.cols))
        if batch.last_in_row:
            y0 = rows[batch.row]
            p, valid = acc.final_rows(last=batch.row == len(rows) - 1)
            a, b = max(0, -y0), min(p.shape[1], grid.height - y0)
            if b > a:
                on_rows(p[:, a:b, o:o + grid.width], valid[a:b, o:o + grid.width])
            acc.advance()
