"""The window grid of a scene: where windows lie, in panels, and how they are blended.

The scene is covered by ``tile x tile`` windows every ``tile - overlap`` px (the grid of
:func:`s2pipe.tiles.tiling.tile_windows`) laid over the scene grown by ``overlap`` pixels on
each side; the parts of a window outside the scene are filled by reflection
(:func:`read_padded`). Each window's class probabilities are weighted with a separable
raised-cosine ramp over its ``overlap`` border pixels (:func:`ramp_weights`):
neighbouring ramps sum to one, so no window border shows in the map, and no scene pixel
is predicted from the outer, context-poor ring of a window. The window columns are split
into *panels* at most :data:`PANEL_WIDTH` px wide, so memory does not grow with the
scene's width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from s2pipe.tiles.tiling import tile_windows

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
    def panels(self) -> list[Panel]:
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
