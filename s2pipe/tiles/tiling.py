"""Tile windows over a grid, a leak-free spatial split, and writing tile GeoTIFFs.

Splits are made by spatial blocks (squares of several tiles): every tile takes the split
of the block holding its top-left pixel. A tile that reaches into another block and
overlaps a tile of a different split (only possible with ``stride < size``) is dropped,
so no two tiles of different splits share a pixel.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from typing import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from s2pipe.errors import OptionError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass
from s2pipe.raster import profiles
from s2pipe.raster.classmap import apply_legend

log = logging.getLogger(__name__)

def tile_windows(width: int, height: int, size: int, stride: int | None = None) -> list[Window]:
    """Windows of ``size`` x ``size`` every ``stride`` px, row by row; the last window of
    each row/column is aligned to the grid's edge so the whole grid is covered."""
    stride = stride or size
    if size <= 0 or stride <= 0:
        raise OptionError(f"tile size ({size}) and stride ({stride}) must be positive")
    if width < size or height < size:
        raise OptionError(f"the scene ({width} x {height} px) is smaller than one tile "
                          f"({size} px); use a smaller --tile-size")

    def offsets(n: int) -> list[int]:
        offs = list(range(0, n - size + 1, stride))
        if offs[-1] != n - size:
            offs.append(n - size)
        return offs

    return [Window(c, r, size, size) for r in offsets(height) for c in offsets(width)]


def tile_id(window: Window) -> str:
    """``r000512_c001024``: the pixel row and column of the tile's top-left corner."""
    return f"r{int(window.row_off):06d}_c{int(window.col_off):06d}"


def default_block_size(width: int, height: int, size: int) -> int:
    """The largest of 4, 3, 2, 1 tiles that still gives at least 10 blocks."""
    for k in (4, 3, 2):
        if math.ceil(width / (k * size)) * math.ceil(height / (k * size)) >= 10:
            return k * size
    return size


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Blocks per split: at least one for each split with a positive fraction when
    there are enough blocks, the rest to train."""
    counts = [0, 0, 0]
    for i in (1, 2):
        if fractions[i] > 0:
            counts[i] = max(1 if n >= 3 else 0, round(fractions[i] * n))
    counts[0] = n - counts[1] - counts[2]
    while counts[0] < (1 if fractions[0] > 0 else 0) and (counts[1] or counts[2]):
        counts[1 if counts[1] >= counts[2] else 2] -= 1
        counts[0] += 1
    return counts


def assign_splits(windows: Sequence[Window], *, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  block_size: int, seed: int = 0) -> list[str | None]:
    """The split ("train", "val", "test") of each window, or None for a dropped window.

    Blocks (``block_size`` px squares) holding windows are shuffled with ``seed`` and
    dealt out by ``fractions``. Windows reaching out of their block that overlap a
    window of another split get None.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise OptionError(f"split fractions {tuple(fractions)} must be three non-negative numbers "
                          "(train, val, test), e.g. 0.8,0.1,0.1")
    total = sum(fractions)
    fractions = [f / total for f in fractions]
    block_of = [(int(w.row_off) // block_size, int(w.col_off) // block_size) for w in windows]
    blocks = sorted(set(block_of))
    order = np.random.default_rng(seed).permutation(len(blocks))
    counts = _allocate(len(blocks), fractions)
    names = ["test"] * counts[2] + ["val"] * counts[1] + ["train"] * counts[0]
    split_of_block = {blocks[j]: names[k] for k, j in enumerate(order)}
    splits: list[str | None] = [split_of_block[b] for b in block_of]

    def straddles(i: int) -> bool:
        w = windows[i]
        r1 = (int(w.row_off) + int(w.height) - 1) // block_size
        c1 = (int(w.col_off) + int(w.width) - 1) // block_size
        return (r1, c1) != block_of[i]

    size = max(max(int(w.width), int(w.height)) for w in windows) if windows else 1
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, w in enumerate(windows):
        cells[(int(w.row_off) // size, int(w.col_off) // size)].append(i)
    dropped = []
    for i, w in enumerate(windows):
        if not straddles(i):
            continue
        cr, cc = int(w.row_off) // size, int(w.col_off) // size
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                for j in cells.get((cr + dr, cc + dc), ()):
                    if splits[j] != splits[i] and _overlap(w, windows[j]):
                        dropped.append(i)
                        break
    for i in dropped:
        splits[i] = None
    if dropped:
        log.info("%d tiles overlapping tiles of another split dropped", len(set(dropped)))
    return splits


def _overlap(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def write_image_tile(path: str | os.PathLike, image: np.ndarray, *, crs: CRS, transform: Affine,
                     bands: Sequence[str], tags: dict[str, str] | None = None) -> None:
    """A ``(bands, h, w)`` uint16 tile: band descriptions, nodata 0, deflate, tiled."""
    n, h, w = image.shape
    with profiles.gdal_write_errors(path), \
            rasterio.open(path, "w", **profiles.IMAGE_TILE, **profiles.tile_blocks(h if h == w else 1),
                          width=w, height=h, count=n, crs=crs, transform=transform) as dst:
        dst.write(image)
        dst.descriptions = tuple(bands)
        if tags:
            dst.update_tags(**tags)


def write_label_tile(path: str | os.PathLike, label: np.ndarray, *, crs: CRS, transform: Affine,
                     legend: Sequence[LandCoverClass] = DEFAULT_LEGEND) -> None:
    """A ``(h, w)`` uint8 label tile: nodata 0, carrying the legend, deflate, tiled."""
    h, w = label.shape
    with profiles.gdal_write_errors(path), \
            rasterio.open(path, "w", **profiles.LABEL_TILE, **profiles.tile_blocks(h if h == w else 1),
                          width=w, height=h, count=1, crs=crs, transform=transform) as dst:
        dst.write(label, 1)
        apply_legend(dst, legend, description="label")
