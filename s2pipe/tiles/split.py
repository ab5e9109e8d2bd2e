"""A leak-free train/val/test split by ground, shared by every product of a tile set.

Square blocks of ``block`` metres are laid on one *ground grid* (the CRS and upper-left
corner of the first product), whatever the products' own tiles, dates or UTM zones. The
blocks that candidate tiles touch are shuffled with a seed and dealt out to the splits by
their fractions; a tile takes the split of the block holding its upper-left corner, and a
tile that also touches a block of another split is dropped. So every kept tile lies in
blocks of its own split only, and no ground point is in two splits: the same ground seen
on two dates, or in the overlap of two tiles, falls in one split.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from s2pipe.errors import OptionError

log = logging.getLogger(__name__)

Block = tuple[int, int]  # (row, column) of a block on the ground grid


@dataclass(frozen=True)
class TileBlocks:
    """The ground blocks of one candidate tile: where it starts, and all it touches."""

    home: Block
    touched: frozenset[Block]


@dataclass(frozen=True)
class GroundGrid:
    """Blocks of ``block`` units (metres, or pixels for a grid without CRS) from (x0, y0)."""

    crs: CRS | None
    x0: float
    y0: float
    block: float

    def blocks(self, xs: Sequence[float], ys: Sequence[float], crs: CRS | None) -> TileBlocks:
        """Blocks of a tile outlined by points ``xs, ys`` in ``crs``; the first point is its
        upper-left corner. Points are reprojected to the ground grid's CRS when it differs."""
        if crs is not None and self.crs is not None and crs != self.crs:
            xs, ys = transform_points(crs, self.crs, list(xs), list(ys))
        cells = [(math.floor((self.y0 - y) / self.block), math.floor((x - self.x0) / self.block))
                 for x, y in zip(xs, ys)]
        rows, cols = [c[0] for c in cells], [c[1] for c in cells]
        touched = frozenset((r, c) for r in range(min(rows), max(rows) + 1)
                            for c in range(min(cols), max(cols) + 1))
        return TileBlocks(cells[0], touched)


def outline(window: Window, transform: object, points: int = 3) -> tuple[list[float], list[float]]:
    """``points`` x ``points`` points on a window's border (upper-left corner first), in the
    coordinates of ``transform``; the inner edge of the last pixel is used, so a tile that
    ends on a block edge does not touch the next block."""
    r0, c0 = float(window.row_off), float(window.col_off)
    h, w = float(window.height), float(window.width)
    eps = 1e-6
    offsets = np.linspace(0.0, 1.0, points)
    pts = [(c0 + fx * (w - eps), r0 + fy * (h - eps)) for fy in offsets for fx in offsets
           if fx in (0.0, 1.0) or fy in (0.0, 1.0)]
    xs, ys = [], []
    for col, row in pts:
        x, y = transform * (col, row)  # type: ignore[operator]
        xs.append(x)
        ys.append(y)
    return xs, ys


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Blocks per split: at least one for each split with a positive fraction when there are
    enough blocks, the rest to train."""
    counts = [0, 0, 0]
    for i in (1, 2):
        if fractions[i] > 0:
            counts[i] = max(1 if n >= 3 else 0, round(fractions[i] * n))
    counts[0] = n - counts[1] - counts[2]
    while counts[0] < (1 if fractions[0] > 0 else 0) and (counts[1] or counts[2]):
        counts[1 if counts[1] >= counts[2] else 2] -= 1
        counts[0] += 1
    return counts


def check_fractions(fractions: Sequence[float]) -> list[float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise OptionError(f"split fractions {tuple(fractions)} must be three non-negative numbers "
                          "(train, val, test), e.g. 0.8,0.1,0.1")
    total = sum(fractions)
    return [f / total for f in fractions]


def assign_ground_splits(tiles: Sequence[TileBlocks], *, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                         seed: int = 0) -> list[str | None]:
    """The split of each tile ("train", "val", "test"), or None for a tile that touches a
    block of another split than its own (see the module docstring)."""
    shares = check_fractions(fractions)
    blocks = sorted({b for t in tiles for b in t.touched} | {t.home for t in tiles})
    order = np.random.default_rng(seed).permutation(len(blocks))
    counts = allocate(len(blocks), shares)
    names = ["test"] * counts[2] + ["val"] * counts[1] + ["train"] * counts[0]
    split_of = {blocks[j]: names[k] for k, j in enumerate(order)}
    out: list[str | None] = []
    for t in tiles:
        own = split_of[t.home]
        out.append(own if all(split_of[b] == own for b in t.touched) else None)
    dropped = sum(s is None for s in out)
    if dropped:
        log.info("%d tiles reaching into blocks of another split dropped", dropped)
    return out


def window_blocks(window: Window, block_size: int) -> TileBlocks:
    """The blocks of ``block_size`` px a pixel window starts in and touches."""
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height) - 1, c0 + int(window.width) - 1
    touched = frozenset((r, c) for r in range(r0 // block_size, r1 // block_size + 1)
                        for c in range(c0 // block_size, c1 // block_size + 1))
    return TileBlocks((r0 // block_size, c0 // block_size), touched)


def assign_splits(windows: Sequence[Window], *, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  block_size: int, seed: int = 0) -> list[str | None]:
    """:func:`assign_ground_splits` for windows of one grid, with blocks of ``block_size`` px."""
    return assign_ground_splits([window_blocks(w, block_size) for w in windows],
                                fractions=fractions, seed=seed)
