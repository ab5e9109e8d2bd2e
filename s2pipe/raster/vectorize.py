"""Class maps as polygons for GIS work: sieve to a minimum mapping unit, polygonise, write.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from s2pipe.errors import InputNotFoundError, OptionError, RasterError
from s2pipe.legend import NODATA_LABEL
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.classmap import has_legend, read_legend
from s2pipe.raster.profiles import gdal_reason
from s2pipe.resources import peak_rss_mb

log = logging.getLogger(__name__)

# Output formats by file extension: (OGR driver, whether it holds several layers).
FORMATS: dict[str, tuple[str, bool]] = {".gpkg": ("GPKG", True), ".fgb": ("FlatGeobuf", False),
                                        ".parquet": ("Parquet", False)}
DEFAULT_MIN_AREA_HA = 0.5  # between Urban Atlas' 0.25 ha (urban) and 1 ha (rural) units
CONNECTIVITY = 4
NODE_BATCH = 1_000_000  # pixel edges of polygon rings rebuilt at a time (~60 MB of work arrays)


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


def read_class_map(path: Path) -> ClassMap:
    """A one-band integer class map in a projected CRS (:class:`RasterError` otherwise)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give a class map written by s2pipe predict")
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(f"{path} is not a raster GDAL can read ({gdal_reason(exc)})") from None
    with ds:
        if ds.count != 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
            raise RasterError(f"{path} has {ds.count} band(s) of {ds.dtypes[0]}; "
                              "a class map is one band of integer class values")
        if ds.crs is None or not ds.crs.is_projected:
            raise RasterError(f"{path} has no projected CRS; areas need metres: reproject it "
                              "(gdalwarp -t_srs, nearest) to a UTM zone")
        named = has_legend(ds)
        legend = read_legend(ds) if named else ()
        try:
            data = ds.read(1)
        except RasterioIOError as exc:
            raise RasterError(f"{path} cannot be read ({gdal_reason(exc)}); the file is damaged "
                              "or incomplete: write it again") from None
        crs, transform, nodata_value = ds.crs, ds.transform, ds.nodata
    nodata = {NODATA_LABEL} | ({int(nodata_value)} if nodata_value is not None else set())
    if data.dtype.name not in ("uint8", "uint16", "int16", "int32"):  # the types GDAL's sieve takes
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise RasterError(f"{path} holds values beyond 32-bit integers; a class map holds codes")
        data = data.astype(np.int32)
    return ClassMap(data, crs, transform, {c.value: c.name for c in legend}, named, nodata)


def _valid(data: np.ndarray, nodata: set[int]) -> np.ndarray:
    first, *others = sorted(nodata)
    valid = data != first
    for v in others:
        valid &= data != v
    return valid


def _pixel_polygons(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected patches of ``data`` as polygons in pixel coordinates, and their values."""
    import shapely
    from rasterio.features import shapes

    geoms, values = [], []
    for geom, value in shapes(data, connectivity=CONNECTIVITY):
        geoms.append(shapely.geometry.shape(geom))
        values.append(int(value))
    return np.array(geoms, dtype=object), np.array(values, dtype=np.int64)


def _merge_small(geoms: np.ndarray, values: np.ndarray, nodata: set[int], min_px: int) -> dict[int, int]:
    """Polygon index -> new value for the small patches that merge into a neighbour."""
    import shapely

    area = shapely.area(geoms).round().astype(np.int64)
    data_poly = ~np.isin(values, list(nodata))
    small = np.flatnonzero(data_poly & (area < min_px))
    if not small.size:
        return {}
    pairs = shapely.STRtree(geoms).query(geoms[small], predicate="intersects")
    i, j = small[pairs[0]], pairs[1]
    keep = (i != j) & data_poly[j]
    i, j = i[keep], j[keep]
    edge = shapely.length(shapely.intersection(geoms[i], geoms[j])) > 0  # not a corner alone
    nbrs: dict[int, set[int]] = {int(s): set() for s in small}  # of each group, by its root
    for a, b in zip(i[edge].tolist(), j[edge].tolist(), strict=True):
        nbrs[a].add(b)
    parent = {int(s): int(s) for s in small}
    size = {int(s): int(area[s]) for s in small}

    def find(k: int) -> int:
        while parent.get(k, k) != k:
            k = parent[k]
        return k

    for s in sorted(parent, key=lambda k: (area[k], k)):  # smallest first
        root = find(s)
        if size.get(root, area[root]) >= min_px:
            continue
        cands = {find(n) for n in nbrs[root]} - {root}
        if not cands:
            continue  # a piece of map smaller than the unit
        target = max(cands, key=lambda k: (size.get(k, int(area[k])), -k))
        parent[root] = target
        size[target] = size.get(target, int(area[target])) + size[root]
        nbrs[target] = nbrs.get(target, set()) | cands
    return {k: int(values[find(k)]) for k in parent if values[find(k)] != values[k]}


def _relabel(data: np.ndarray, geoms: np.ndarray, new_values: dict[int, int]) -> None:
    """Burn each polygon with its new value into ``data``."""
    from affine import Affine
    from rasterio.features import geometry_mask

    for k, v in new_values.items():
        c0, r0, c1, r1 = (int(round(b)) for b in geoms[k].bounds)
        inside = ~geometry_mask([geoms[k]], out_shape=(r1 - r0, c1 - c0),
                                transform=Affine.translation(c0, r0))
        data[r0:r1, c0:c1][inside] = v


def sieve(data: np.ndarray, nodata: set[int], min_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge patches under ``min_px`` pixels into their neighbours, in place; the polygons
    (pixel coordinates) and values of the result."""
    from rasterio.features import sieve as gdal_sieve

    if min_px > 1:
        gdal_sieve(data, min_px, out=data, mask=_valid(data, nodata), connectivity=CONNECTIVITY)
    geoms, values = _pixel_polygons(data)
    for _ in range(3):  # one round leaves nothing to merge; the loop is a safeguard
        new_values = _merge_small(geoms, values, nodata, min_px) if min_px > 1 else {}
        if not new_values:
            break
        log.info("merging %d small patches GDAL's sieve left", len(new_values))
        _relabel(data, geoms, new_values)
        geoms, values = _pixel_polygons(data)
    return geoms, values


def _corner_is_node(data: np.ndarray, nodata: set[int], xy: np.ndarray) -> np.ndarray:
    """Whether three or four patch borders meet at pixel corners ``xy`` (column, row)."""
    h, w = data.shape

    def pixel(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        v = np.full(r.shape, -1, dtype=np.int32)  # outside the map: no data
        v[inside] = data[r[inside], c[inside]]
        v[np.isin(v, list(nodata))] = -1
        return v

    x, y = xy[:, 0], xy[:, 1]
    p, q, r, s = pixel(y - 1, x - 1), pixel(y - 1, x), pixel(y, x - 1), pixel(y, x)
    return ((p != q).astype(np.int8) + (r != s) + (p != r) + (q != s)) >= 3


def _canonical_polygons(geoms: np.ndarray, data: np.ndarray, nodata: set[int], transform) -> np.ndarray:
    """Pixel-space polygons georeferenced, with a vertex at every turn and every node and
    nowhere else, so that neighbours share their borders vertex for vertex."""
    import shapely

    _, coords, (ring_off, poly_off) = shapely.to_ragged_array(geoms)
    coords = coords.round().astype(np.int32)
    n_rings = len(ring_off) - 1
    is_start = np.ones(len(coords), dtype=bool)
    is_start[ring_off[1:] - 1] = False  # a ring's closing point starts no segment
    start = np.flatnonzero(is_start)
    delta = coords[start + 1] - coords[start]
    length = np.abs(delta).sum(axis=1)  # edges are axis-aligned
    seg = np.repeat(np.arange(len(start), dtype=np.int32), length)
    k = (np.arange(len(seg)) - np.repeat(np.cumsum(length) - length, length)).astype(np.int32)
    step = np.sign(delta).astype(np.int8)[seg]
    pts = coords[start][seg] + k[:, None] * step  # every pixel corner along the rings
    ring = np.repeat(np.arange(n_rings, dtype=np.int32), np.diff(ring_off) - 1)[seg]
    counts = np.bincount(ring, minlength=n_rings)
    first = (np.cumsum(counts) - counts)[ring]
    prev = np.arange(len(pts)) - 1
    wrap = prev < first
    prev[wrap] = (first + counts[ring] - 1)[wrap]
    keep = np.any(step[prev] != step, axis=1)
    keep[~keep] = _corner_is_node(data, nodata, pts[~keep])
    kept, kept_ring = pts[keep], ring[keep]
    kc = np.bincount(kept_ring, minlength=n_rings)
    closing = kept[np.cumsum(kc) - kc]
    new = np.insert(kept, np.cumsum(kc), closing, axis=0).astype(np.float64)
    a, b, c, d, e, f = transform[:6]
    xy = np.column_stack([a * new[:, 0] + b * new[:, 1] + c, d * new[:, 0] + e * new[:, 1] + f])
    new_ring_off = np.concatenate([[0], np.cumsum(kc + 1)])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (new_ring_off, poly_off))


def georeference(geoms: np.ndarray, data: np.ndarray, nodata: set[int], transform,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """:func:`_canonical_polygons` in batches of at most ``NODE_BATCH`` pixel edges."""
    import shapely

    if not len(geoms):
        return geoms
    batch = np.cumsum(shapely.length(geoms)) // NODE_BATCH
    out = []
    for b in np.unique(batch):
        out.append(_canonical_polygons(geoms[batch == b], data, nodata, transform))
        if progress:
            progress(int((batch == b).sum()))
    return np.concatenate(out)


def _write(path: Path, gdf, driver: str, *, by_class: bool, layer: str) -> list[str]:
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
    gdf = gpd.GeoDataFrame({"class": values.astype(np.int32), "name": [names.get(v, str(v)) for v in values],
                            "area_ha": area_ha}, geometry=geoms, crs=cmap.crs)
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        layers = _write(tmp, gdf, driver, by_class=by_class, layer=out_path.stem)
    classes = [ClassPolygons(int(v), names.get(int(v), str(v)), int((values == v).sum()),
                             float(area_ha[values == v].sum())) for v in np.unique(values)]
    return Vectorized(source=map_path, output=out_path, layers=layers, crs=str(cmap.crs),
                      min_area_ha=min_area_ha, min_pixels=min_px, simplify_m=simplify_m,
                      polygons=len(geoms), area_ha=float(area_ha.sum()), classes=classes,
                      names_from_map=cmap.named, seconds=round(time.perf_counter() - t0, 2),
                      peak_rss_mb=round(peak_rss_mb(), 1))
