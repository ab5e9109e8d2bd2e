"""The maps a mosaic is made of: what each one is, where it lies and what legend it carries.

A mosaic input is either what ``predict --probabilities P --probabilities-all`` writes
(one uint8 band per class, 255 = 1.0, every band 0 = no data; the legend in the
``S2PIPE_LEGEND`` tag), which the mosaic blends, or a class map (one band, 0 = no data,
the legend as :mod:`s2pipe.raster.maps` reads it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from s2pipe.errors import OptionError, RasterError
from s2pipe.legend import LandCoverClass
from s2pipe.raster.maps import open_map

Kind = Literal["probabilities", "classes"]


@dataclass(frozen=True)
class MapInput:
    """One per-scene map: its file, kind, grid and legend."""

    index: int              # 1-based, as the sources output records it
    path: Path
    kind: Kind
    crs: CRS
    transform: Any
    width: int
    height: int
    legend: tuple[LandCoverClass, ...]
    product: str            # S2PIPE_PRODUCT of the map, else the file name

    def bounds_in(self, crs: CRS) -> tuple[float, float, float, float]:
        """The map's footprint as a box in ``crs`` (densified, so curved edges are enclosed)."""
        t = self.transform
        left, top = t.c, t.f
        right, bottom = left + t.a * self.width, top + t.e * self.height
        if crs == self.crs:
            return left, bottom, right, top
        b = transform_bounds(self.crs, crs, left, bottom, right, top, densify_pts=21)
        return b[0], b[1], b[2], b[3]


def crs_name(crs: CRS) -> str:
    """``EPSG:32633``, or the name a WKT gives its CRS (``LOCAL_CS "site grid"``)."""
    if crs.to_epsg():
        return f"EPSG:{crs.to_epsg()}"
    m = re.match(r'\s*(\w+)\s*\[\s*"([^"]*)"', crs.to_wkt())
    return f'{m.group(1)} "{m.group(2)}"' if m else crs.to_string()[:80]


def open_input(path: str | os.PathLike, index: int) -> MapInput:
    """Read what a map is (not its pixels), as :func:`s2pipe.raster.maps.open_map` reads any
    map s2pipe wrote; :class:`RasterError` when it is no s2pipe map of a kind a mosaic takes."""
    m = open_map(path, ("probabilities", "classes"), need_legend=True)
    assert m.legend is not None
    kind: Kind = "probabilities" if m.kind == "probabilities" else "classes"
    g = m.grid
    if not (g.crs.is_projected or g.crs.is_geographic):  # issue 22: no way to other grids
        raise RasterError(f"{m.path} is in {crs_name(g.crs)}, a local (engineering) CRS that cannot be "
                          "related to any other; give maps in a projected CRS such as a UTM zone")
    return MapInput(index, m.path, kind, g.crs, g.transform, g.width, g.height, m.legend, m.product)


def open_inputs(paths: Sequence[str | os.PathLike]) -> list[MapInput]:
    """All inputs, checked to be of one kind and one legend."""
    if not paths:
        raise OptionError("no map given; pass the maps (or probabilities) of s2pipe predict")
    inputs = [open_input(p, i) for i, p in enumerate(paths, start=1)]
    first = inputs[0]
    for m in inputs[1:]:
        if m.kind != first.kind:
            raise OptionError(f"{m.path} is a {m.kind} raster but {first.path} is a {first.kind} raster; "
                              "pass all class maps or all probabilities (predict --probabilities-all)")
        if [(c.value, c.name) for c in m.legend] != [(c.value, c.name) for c in first.legend]:
            raise RasterError(f"{m.path} has another legend than {first.path}; mosaic maps of one model")
    if len(inputs) > 255:
        raise OptionError(f"{len(inputs)} maps: a mosaic takes at most 255 (the sources output is uint8)")
    return inputs
