"""Tile windows over a grid, tile ids and block sizes, and writing tile GeoTIFFs.

The split of the tiles into train/val/test is :mod:`s2pipe.tiles.split`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from s2pipe.errors import OptionError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass
from s2pipe.raster import profiles
from s2pipe.raster.maps import apply_legend

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


def write_image_tile(path: str | os.PathLike, image: np.ndarray, *, crs: CRS, transform: Affine,
                     bands: Sequence[str], tags: dict[str, str] | None = None) -> None:
    """A ``(bands, h, w)`` uint16 tile: band descriptions, nodata 0, deflate, tiled."""
    n, h, w = image.shape
    with profiles.written(path), \
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
    with profiles.written(path), \
            rasterio.open(path, "w", **profiles.LABEL_TILE, **profiles.tile_blocks(h if h == w else 1),
                          width=w, height=h, count=1, crs=crs, transform=transform) as dst:
        dst.write(label, 1)
        apply_legend(dst, legend, description="label")
