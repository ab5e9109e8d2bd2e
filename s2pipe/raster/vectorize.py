"""Class maps as polygons for GIS work: sieve to a minimum mapping unit, polygonise, write.

A change map (``s2pipe change``) gives the polygons of its transitions only (stable
classes and uncertain pixels left out), with fields ``from`` and ``to``.

A patch is a 4-connected set of pixels of one class (diagonal neighbours are separate
patches: an OGC polygon cannot touch itself at a point). Patches smaller than the
minimum mapping unit are merged into the neighbour patch they share an edge with that
is largest, the smallest first, until every patch reaches the unit or has no neighbour
left (a piece of map smaller than the unit, surrounded by no data or the map's edge).
GDAL's sieve does the bulk of it; what it leaves (it gives up on small patches whose
neighbours are small too) is merged here on the polygons.

Polygons follow pixel edges exactly, so they rasterise back to the sieved map, and carry
a vertex wherever three patches (or no data) meet, so that neighbours share their
borders vertex for vertex: a valid coverage that ``shapely.coverage_simplify`` simplifies
without gaps or overlaps. No data (0, and the file's nodata value) is not polygonised.

Memory: the map (1 byte per pixel, 120 MB for a full 10980 x 10980 tile), a mask of the
same size while sieving, and the polygons: a full synthetic tile (78,648 polygons) peaked
at 854 MB in 17 s (``bench/bench_vectorize.py``; 1.3 GB with ``simplify_m``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.errors import OptionError, RasterError
from s2pipe.legend import NODATA_LABEL
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.choices import DEFAULT_MIN_AREA_HA, VECTOR_FORMATS
from s2pipe.raster.maps import open_map, read_band
from s2pipe.raster.polygons import georeference, sieve
from s2pipe.raster.profiles import with_gdal_env
from s2pipe.raster.transitions import Transitions
from s2pipe.resources import peak_rss_mb

log = logging.getLogger(__name__)

# Output formats by file extension: (OGR driver, whether it holds several layers).
FORMATS = VECTOR_FORMATS


@dataclass
class ClassPolygons:
    """Polygons and area of one class in the output."""

    value: int
    name: str
    polygons: int
    area_ha: float


@dataclass
class Vectorized:
    """What :func:`vectorize_map` wrote."""

    source: Path
    output: Path
    layers: list[str]
    crs: str
    min_area_ha: float
    min_pixels: int
    simplify_m: float
    polygons: int
    area_ha: float
    classes: list[ClassPolygons]
    names_from_map: bool  # False: the map carries no legend, class numbers are the names
    seconds: float
    peak_rss_mb: float  # of the whole process


def output_format(path: str | os.PathLike) -> tuple[str, bool]:
    """(OGR driver, holds several layers) for ``path``'s extension, or :class:`OptionError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise OptionError(f"{path}: unknown vector format; use one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


@dataclass
class ClassMap:
    """Band 1 of a class map and what it says about itself."""

    data: np.ndarray
    crs: Any
    transform: Any
    names: dict[int, str]   # class value -> name
    named: bool             # whether the names (or at least colours) came from the map
    nodata: set[int]        # values that mean no data
    transitions: Transitions | None = None  # a change map's codes (its stable and uncertain codes: no data)


def read_class_map(path: Path) -> ClassMap:
    """A class map in a projected CRS, read as :func:`s2pipe.raster.maps.open_map` reads every
    map (:class:`RasterError` otherwise)."""
    m = open_map(path, ("classes", "change"))
    m.require_projected()
    data = read_band(m)
    nodata = {NODATA_LABEL} | ({int(m.nodata)} if m.nodata is not None else set())
    transitions = m.transitions if m.kind == "change" else None
    if transitions is not None:  # polygons of change only
        nodata |= {c for c in range(1, transitions.uncertain + 1) if not transitions.is_change(c)}
        names = {c: transitions.name(c) for c in range(1, transitions.uncertain + 1)}
        return ClassMap(data, m.grid.crs, m.grid.transform, names, True, nodata, transitions)
    if data.dtype.name not in ("uint8", "uint16", "int16", "int32"):  # the types GDAL's sieve takes
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise RasterError(f"{path} holds values beyond 32-bit integers; a class map holds codes")
        data = data.astype(np.int32)
    legend = m.legend or ()
    return ClassMap(data, m.grid.crs, m.grid.transform, {c.value: c.name for c in legend}, m.legend is not None,
                    nodata)


def _write(path: Path, gdf: Any, driver: str, *, by_class: bool, layer: str) -> list[str]:
    """Write ``gdf`` as one layer, or one layer per class; the layer names."""
    if driver == "Parquet":
        gdf.to_parquet(path)
        return [layer]
    if not by_class:
        gdf.to_file(path, driver=driver, layer=layer)
        return [layer]
    layers = []
    for value in sorted(set(gdf["class"])):
        layers.append(f"class_{value}")
        gdf[gdf["class"] == value].to_file(path, driver=driver, layer=layers[-1])
    return layers


@with_gdal_env
def vectorize_map(map_path: str | os.PathLike, out_path: str | os.PathLike, *,
                  min_area_ha: float = DEFAULT_MIN_AREA_HA, simplify_m: float = 0.0,
                  by_class: bool = False, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> Vectorized:
    """Polygons of the class map at ``map_path``, written to ``out_path`` (format from its
    extension: .gpkg, .fgb, .parquet) with fields ``class``, ``name`` and ``area_ha``.

    Patches under ``min_area_ha`` are merged into their largest neighbour first (see the
    module's docstring); ``simplify_m`` > 0 simplifies the borders (``coverage_simplify``,
    tolerance in metres) keeping them shared. ``by_class`` writes one GeoPackage layer per
    class. ``progress`` receives the number of polygons finished.
    """
    import geopandas as gpd
    import shapely

    t0 = time.perf_counter()
    map_path, out_path = Path(map_path), Path(out_path)
    driver, multi_layer = output_format(out_path)
    if by_class and not multi_layer:
        raise OptionError(f"{out_path}: one layer per class needs a GeoPackage (.gpkg)")
    if min_area_ha < 0 or simplify_m < 0:
        raise OptionError("the minimum area and the simplification tolerance cannot be negative")
    check_writable(out_path, overwrite=overwrite)  # before the work, not after
    cmap = read_class_map(map_path)
    data, names, nodata, transform = cmap.data, cmap.names, cmap.nodata, cmap.transform
    if not cmap.named:
        log.warning("%s carries no legend (class names or colour table): the class numbers are the names",
                    map_path)
    min_px = max(1, math.ceil(min_area_ha * 10_000 / abs(transform.determinant) - 1e-9))
    geoms, values = sieve(data, nodata, min_px)
    is_data = ~np.isin(values, list(nodata))
    geoms = georeference(geoms[is_data], data, nodata, transform, progress)
    values = values[is_data]
    del data
    if simplify_m > 0 and len(geoms):
        geoms = shapely.coverage_simplify(geoms, simplify_m)
    order = np.argsort(values, kind="stable")
    geoms, values = geoms[order], values[order]
    area_ha = shapely.area(geoms) / 10_000
    columns: dict[str, Any] = {"class": values.astype(np.int32), "name": [names.get(v, str(v)) for v in values]}
    if cmap.transitions is not None:  # a change map: the classes of both dates too
        t = cmap.transitions
        columns["from"] = [t.classes[t.decode(int(v))[0] - 1].name for v in values]
        columns["to"] = [t.classes[t.decode(int(v))[1] - 1].name for v in values]
    gdf = gpd.GeoDataFrame({**columns, "area_ha": area_ha}, geometry=geoms, crs=cmap.crs)
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        layers = _write(tmp, gdf, driver, by_class=by_class, layer=out_path.stem)
    classes = [ClassPolygons(int(v), names.get(int(v), str(v)), int((values == v).sum()),
                             float(area_ha[values == v].sum())) for v in np.unique(values)]
    return Vectorized(source=map_path, output=out_path, layers=layers, crs=str(cmap.crs),
                      min_area_ha=min_area_ha, min_pixels=min_px, simplify_m=simplify_m,
                      polygons=len(geoms), area_ha=float(area_ha.sum()), classes=classes,
                      names_from_map=cmap.named, seconds=round(time.perf_counter() - t0, 2),
                      peak_rss_mb=round(peak_rss_mb(), 1))
