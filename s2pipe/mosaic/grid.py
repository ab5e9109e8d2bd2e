"""The mosaic's output grid: one CRS, one resolution, one box, cut into independent blocks."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.windows import Window

from s2pipe.errors import InputNotFoundError, LabelError, OptionError, RasterError
from s2pipe.mosaic.inputs import MapInput
from s2pipe.raster.grid import Grid

BLOCK = 1024  # px: a block of the output grid, the unit of work


def parse_crs(text: str | None, default: CRS) -> CRS:
    """``EPSG:32633``, ``32633`` or any CRS GDAL knows; :class:`OptionError` otherwise."""
    if text is None:
        return default
    try:
        crs = CRS.from_user_input(int(text) if str(text).isdigit() else text)
    except (CRSError, ValueError):
        raise OptionError(f"--crs {text}: not a CRS GDAL knows; give e.g. EPSG:32633") from None
    if not crs.is_projected:
        raise OptionError(f"--crs {text}: a mosaic needs a projected CRS in metres (e.g. a UTM zone)")
    return crs


@dataclass(frozen=True)
class Clip:
    """Polygons the mosaic is clipped to, in the output CRS."""

    geometries: list[Any]
    path: Path


def read_clip(path: str | os.PathLike, crs: CRS) -> Clip:
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give a polygon file for --clip")
    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio's own errors
        raise LabelError(f"{path}: not a readable vector file ({exc})") from None
    if gdf.crs is None:
        raise LabelError(f"{path} has no CRS; assign one (ogr2ogr -a_srs) and retry")
    geoms = [g for g in gdf.to_crs(crs).geometry if g is not None and not g.is_empty
             and g.geom_type in ("Polygon", "MultiPolygon")]
    if not geoms:
        raise LabelError(f"{path} holds no polygon to clip with")
    return Clip(geoms, path)


def _bounds_in(m: MapInput, crs: CRS) -> tuple[float, float, float, float]:
    from rasterio.errors import RasterioError

    from s2pipe.mosaic.inputs import crs_name
    from s2pipe.raster.profiles import gdal_reason

    try:
        return m.bounds_in(crs)
    except (RasterioError, CRSError, ValueError) as exc:  # GDAL/PROJ: no operation between the two
        raise RasterError(f"{m.path}: its CRS {crs_name(m.crs)} cannot be transformed to {crs_name(crs)} "
                          f"({gdal_reason(exc)[:160]}); give maps whose CRSs PROJ can relate") from None


def output_grid(inputs: Sequence[MapInput], crs: CRS, resolution: float,
                bounds: tuple[float, float, float, float] | None, clip: Clip | None) -> Grid:
    """The grid over ``bounds`` (or the clip's, or the union of the maps' footprints), its
    edges snapped outwards to multiples of ``resolution``. Bounds that miss every map are
    an :class:`OptionError`."""
    if resolution <= 0:
        raise OptionError(f"--resolution {resolution}: give a positive pixel size in metres")
    boxes = [_bounds_in(m, crs) for m in inputs]
    if bounds is None and clip is not None:
        import shapely

        bounds = tuple(shapely.union_all(clip.geometries).bounds)
    if bounds is None:
        bounds = (min(b[0] for b in boxes), min(b[1] for b in boxes),
                  max(b[2] for b in boxes), max(b[3] for b in boxes))
    west, south, east, north = bounds
    if not (west < east and south < north):
        raise OptionError(f"bounds {bounds} are empty; give W S E N with W < E and S < N")
    if not any(b[0] < east and west < b[2] and b[1] < north and south < b[3] for b in boxes):
        raise OptionError(f"bounds {tuple(round(v) for v in bounds)} miss every map; "
                          f"give bounds in {crs.to_string()} that overlap the maps")
    x0, y1 = math.floor(west / resolution) * resolution, math.ceil(north / resolution) * resolution
    x1, y0 = math.ceil(east / resolution) * resolution, math.floor(south / resolution) * resolution
    width, height = round((x1 - x0) / resolution), round((y1 - y0) / resolution)
    return Grid(crs, Affine(resolution, 0, x0, 0, -resolution, y1), width, height)


def blocks(grid: Grid, size: int = BLOCK) -> Iterator[Window]:
    """Blocks column by column (panels of ``size`` px), each panel top to bottom: the order
    :class:`s2pipe.raster.cog.MapWriter` takes rows in column parts."""
    for c0 in range(0, grid.width, size):
        for r0 in range(0, grid.height, size):
            yield Window(c0, r0, min(size, grid.width - c0), min(size, grid.height - r0))


def clip_mask(clip: Clip | None, grid: Any, window: Any) -> np.ndarray | None:
    """Which pixels of ``window`` of ``grid`` lie inside the clip polygons (None: no clip)."""
    if clip is None:
        return None
    import rasterio
    from rasterio import features

    return features.geometry_mask(clip.geometries, out_shape=(int(window.height), int(window.width)),
                                  transform=rasterio.windows.transform(window, grid.transform), invert=True)
