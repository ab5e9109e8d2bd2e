"""Where a synthetic product lies: its Sentinel-2 tile id and its window in the world.

Sentinel-2 tiles are the 100 km squares of the Military Grid Reference System (MGRS),
extended to 109.8 km on its UTM grid: a tile's upper-left corner lies within a few tens of
metres of its square's, and the tile runs 9.8 km past the square to the east and south, so
the square holds the tile's centre (T33UYS: UL 699960 E, 5700000 N). :func:`mgrs_tile`
names the square holding the centre of a product, a whole tile or a small part of one.

A product's ground is a window of a *world*: a box on a 10 m grid in one CRS where the
landscape of a seed is laid out once (:class:`WorldGrid`). A product on the world's grid
is a plain window of it (:meth:`WorldGrid.window`); any other product (another UTM zone,
an origin off the world's 10 m grid) samples the world at its pixel centres
(:meth:`WorldGrid.sample_index`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2pipe.errors import OptionError
from s2pipe.synth.defaults import DEFAULT_EPSG, DEFAULT_ORIGIN

__all__ = ["DEFAULT_EPSG", "DEFAULT_ORIGIN"]

PIXEL = 10.0  # m: the 10 m grid of the world and of every product
TILE_EXTENT = 109800.0  # m: the side of a Sentinel-2 tile
_COLUMNS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")  # 100 km column letters of UTM zone sets 1, 2, 3
_ROWS = "ABCDEFGHJKLMNPQRSTUV"  # 100 km row letters (cycle of 2000 km), offset by 5 in even zones
_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # 8-degree latitude bands from 80 S; X spans 72..84 N


def utm_zone(epsg: int) -> tuple[int, bool] | None:
    """(zone, north) of a WGS 84 / UTM EPSG code (326zz north, 327zz south), else None."""
    if 32601 <= epsg <= 32660:
        return epsg - 32600, True
    if 32701 <= epsg <= 32760:
        return epsg - 32700, False
    return None


def mgrs_tile(epsg: int, ulx: float, uly: float, extent: float = TILE_EXTENT) -> str | None:
    """The Sentinel-2 tile id ("33UYS") of a square of side ``extent`` m with upper-left corner
    (ulx, uly) in EPSG:``epsg`` (default: a whole tile).

    The tile is the MGRS 100 km square holding the square's centre. None when ``epsg`` is
    not a WGS 84 / UTM zone or the centre lies outside the MGRS latitude bands (80 S .. 84 N).
    """
    from pyproj import Transformer

    utm = utm_zone(epsg)
    if utm is None:
        return None
    zone, _ = utm
    x, y = ulx + extent / 2, uly - extent / 2
    _, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    if not -80.0 <= lat <= 84.0 or not 100000.0 <= x < 900000.0:
        return None
    band = _BANDS[min(int((lat + 80.0) // 8), len(_BANDS) - 1)]
    column = _COLUMNS[(zone - 1) % 3][int(x // 100000) - 1]
    row = _ROWS[(int(y // 100000) + (5 if zone % 2 == 0 else 0)) % len(_ROWS)]
    return f"{zone:02d}{band}{column}{row}"


@dataclass(frozen=True)
class WorldGrid:
    """The world's 10 m grid: a box (west, south, east, north) in EPSG:``epsg``, row 0 north."""

    west: float
    south: float
    east: float
    north: float
    epsg: int

    @property
    def height(self) -> int:
        return int(np.ceil(round((self.north - self.south) / PIXEL, 6)))

    @property
    def width(self) -> int:
        return int(np.ceil(round((self.east - self.west) / PIXEL, 6)))

    @classmethod
    def of_product(cls, origin: tuple[float, float], size: int, epsg: int) -> WorldGrid:
        """The product's own extent: the default world, where the product is the whole world."""
        x, y = origin
        return cls(x, y - size * PIXEL, x + size * PIXEL, y, epsg)

    def window(self, origin: tuple[float, float], size: int, epsg: int) -> tuple[int, int] | None:
        """(row, col) of a product's upper-left pixel when it is a window of this grid, else None."""
        if epsg != self.epsg:
            return None
        col, row = (origin[0] - self.west) / PIXEL, (self.north - origin[1]) / PIXEL
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        col, row = int(round(col)), int(round(row))
        if not (row >= 0 and col >= 0 and row + size <= self.height and col + size <= self.width):
            raise OptionError(self._outside(origin, size, epsg))
        return row, col

    def sample_index(self, origin: tuple[float, float], size: int, epsg: int,
                     rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (row, col) of the centres of a product's pixels on ``rows``: arrays (len(rows), size)."""
        from pyproj import Transformer

        x = origin[0] + (np.arange(size) + 0.5) * PIXEL
        y = origin[1] - (np.asarray(rows) + 0.5) * PIXEL
        xx, yy = np.meshgrid(x, y)
        if epsg != self.epsg:
            xx, yy = Transformer.from_crs(epsg, self.epsg, always_xy=True).transform(xx, yy)
        col = np.floor((np.asarray(xx) - self.west) / PIXEL).astype(np.int64)
        row = np.floor((self.north - np.asarray(yy)) / PIXEL).astype(np.int64)
        return row, col

    def check_contains(self, origin: tuple[float, float], size: int, epsg: int) -> None:
        """Raise :class:`OptionError` unless every pixel centre of the product lies in the world."""
        if self.window(origin, size, epsg) is not None:
            return
        rows = np.unique(np.linspace(0, size - 1, min(size, 65)).round().astype(np.int64))
        r, c = self.sample_index(origin, size, epsg, rows)  # the first and last rows, both side columns
        if r.min() < 0 or c.min() < 0 or r.max() >= self.height or c.max() >= self.width:
            raise OptionError(self._outside(origin, size, epsg))

    def _outside(self, origin: tuple[float, float], size: int, epsg: int) -> str:
        x, y = origin
        return (f"the product ({x:g} {y - size * PIXEL:g} {x + size * PIXEL:g} {y:g} in EPSG:{epsg}) is not "
                f"inside the world {self.west:g} {self.south:g} {self.east:g} {self.north:g} "
                f"(EPSG:{self.epsg}); give a --world box that contains it")
