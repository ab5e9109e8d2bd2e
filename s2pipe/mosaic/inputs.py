"""The maps a mosaic is made of: what each one is, where it lies and what legend it carries.

A mosaic input is either what ``predict --probabilities P --probabilities-all`` writes
(one uint8 band per class, 255 = 1.0, every band 0 = no data; the legend in the
``S2PIPE_LEGEND`` tag), which the mosaic blends, or a class map (one band, 0 = no data,
the legend as :mod:`s2pipe.raster.classmap` encodes it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from s2pipe.errors import InputNotFoundError, OptionError, RasterError
from s2pipe.legend import LandCoverClass, legend_from_list
from s2pipe.raster.classmap import has_legend, read_legend

Kind = Literal["probabilities", "classes"]
LEGEND_TAG = "S2PIPE_LEGEND"


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


def _legend(ds: Any, path: Path, kind: Kind) -> tuple[LandCoverClass, ...]:
    tag = ds.tags().get(LEGEND_TAG)
    if tag:
        try:
            return legend_from_list(json.loads(tag))
        except (ValueError, KeyError, TypeError):
            raise RasterError(f"{path}: its {LEGEND_TAG} tag is not a legend; pass maps written by "
                              "s2pipe predict") from None
    if kind == "classes" and has_legend(ds):
        return read_legend(ds)
    raise RasterError(f"{path} carries no legend; pass maps written by s2pipe predict")


def open_input(path: str | os.PathLike, index: int) -> MapInput:
    """Read what a map is (not its pixels); :class:`RasterError` when it is no s2pipe map."""
    import numpy as np
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give maps written by s2pipe predict")
    try:
        with rasterio.open(path) as ds:
            if not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) or ds.dtypes[0] != "uint8":
                raise RasterError(f"{path} holds {ds.dtypes[0]}; a map of s2pipe predict is uint8")
            if ds.crs is None:
                raise RasterError(f"{path} has no CRS; give a georeferenced map")
            kind: Kind = "classes" if ds.count == 1 else "probabilities"
            legend = _legend(ds, path, kind)
            if kind == "probabilities" and ds.count != len(legend):
                raise RasterError(f"{path} has {ds.count} bands for a legend of {len(legend)} classes; "
                                  "pass class maps, or probabilities of predict --probabilities-all")
            return MapInput(index, path, kind, ds.crs, ds.transform, ds.width, ds.height, legend,
                            ds.tags().get("S2PIPE_PRODUCT") or path.stem)
    except RasterioIOError as exc:
        raise RasterError(f"{path} is not a raster GDAL can read ({exc})") from None


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
