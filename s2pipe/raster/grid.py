"""A raster grid: CRS, affine transform and size in pixels, shared by every raster s2pipe reads or writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        b = rasterio.transform.array_bounds(self.height, self.width, self.transform)
        return (b[0], b[1], b[2], b[3])

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    @classmethod
    def of(cls, ds: Any) -> Grid:
        """The grid of an open rasterio dataset."""
        return cls(ds.crs, ds.transform, ds.width, ds.height)


def pixel_area_ha(grid: Any) -> float | None:
    """Area of one pixel in hectares, or None when the CRS is not in metres."""
    crs = grid.crs
    if crs is None or not crs.is_projected or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        return None
    return abs(grid.transform.a * grid.transform.e - grid.transform.b * grid.transform.d) / 10_000
