"""The two sides of an evaluation: the class map, and the reference on the map's grid.

The reference is a label raster (resampled nearest onto the map's grid when it has
another one) or vectors, read and rasterised exactly as ``prepare`` does; a ``prepare``
output can restrict it to the pixels of its test tiles.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.errors import LabelError, TileError
from s2pipe.legend import DEFAULT_LEGEND, NODATA_LABEL, LandCoverClass
from s2pipe.raster.grid import Grid
from s2pipe.raster.maps import open_map, read_band
from s2pipe.raster.profiles import gdal_reason
from s2pipe.tiles.manifest import MANIFEST_NAME, TileManifest

log = logging.getLogger(__name__)

#: Reference files with these suffixes are label rasters; anything else is read as vectors.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


def read_map(path: Path) -> tuple[np.ndarray, Grid, tuple[LandCoverClass, ...]]:
    """The class map's band 1, its grid and its legend (as it names its classes, completed
    from the default legend), read as :func:`s2pipe.raster.maps.open_map` reads every map."""
    m = open_map(path, ("classes",))
    return read_band(m), m.grid, m.legend_or(DEFAULT_LEGEND)


def read_reference_raster(path: Path, grid: Any, num_classes: int, *,
                          class_map: str | os.PathLike | None = None) -> np.ndarray:
    """A label raster on ``grid``: read as is when it shares it, else resampled nearest.

    With ``class_map`` (as ``prepare --class-map``) its values are translated to classes
    and values the map does not list become unlabelled.
    """
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import Resampling, reproject

    try:
        with rasterio.open(path) as ds:
            if ds.count != 1:
                raise LabelError(f"{path} has {ds.count} bands; a label raster has one band of class values")
            if ds.crs is None:
                raise LabelError(f"{path} has no CRS; assign one (gdal_edit.py -a_srs) and retry")
            same = (ds.crs == grid.crs and ds.width == grid.width and ds.height == grid.height
                    and ds.transform.almost_equals(grid.transform))
            src = ds.read(1)
            nodata = ds.nodata
            if same:
                ref = src
            else:
                log.info("resampling %s onto the map's grid (nearest)", path)
                ref = np.zeros((grid.height, grid.width), dtype=src.dtype)
                reproject(src, ref, src_transform=ds.transform, src_crs=ds.crs, src_nodata=nodata,
                          dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=NODATA_LABEL,
                          resampling=Resampling.nearest)
    except RasterioIOError as exc:
        raise LabelError(f"{path} is not a raster GDAL can read ({gdal_reason(exc)})") from None
    if nodata is not None and nodata != NODATA_LABEL:
        ref = np.where(ref == nodata, NODATA_LABEL, ref)
    if class_map is not None:
        from s2pipe.labels import load_class_map

        mapping = load_class_map(class_map)
        values = [v for v in np.unique(ref) if v != NODATA_LABEL]
        keys = {v: str(int(v)) if float(v).is_integer() else str(v) for v in values}
        lut = {v: mapping.get(k, NODATA_LABEL) for v, k in keys.items()}
        unmapped = {keys[v]: int(np.count_nonzero(ref == v)) for v in values if keys[v] not in mapping}
        if unmapped:
            log.warning("%s: values not in the class map left unlabelled (pixels): %s", path,
                        ", ".join(f"{k} x{n}" for k, n in sorted(unmapped.items(), key=lambda kv: -kv[1])[:10]))
        out = np.zeros(ref.shape, dtype=np.uint8)
        for v, t in lut.items():
            out[ref == v] = t
        ref = out
    bad = (ref < 0) | (ref > num_classes)
    if bad.any():
        raise LabelError(f"{path} holds values outside 0..{num_classes} (e.g. {ref[bad][0]}); "
                         f"recode it to 0 = unlabelled and classes 1..{num_classes}")
    if not (ref > 0).any():
        raise LabelError(f"{path} has no labelled pixel on the map's grid; check that it overlaps the map")
    return ref.astype(np.uint8)


def split_mask(tiles_dir: Path, grid: Grid, split: str = "test") -> np.ndarray:
    """Pixels of the map covered by the ``split`` tiles of a ``prepare`` output.

    On the grid of one of its products (a scene's map), the tiles of that product; on
    another grid (a mosaic of several scenes), the footprints of every product's tiles
    reprojected onto it: the split is by ground, so they hold no ground of other splits.
    """
    info = TileManifest.read(tiles_dir)
    manifest = tiles_dir / MANIFEST_NAME
    tiles = info.split(split)
    if not tiles:
        raise TileError(f"{manifest} lists no {split} tiles; re-run prepare with a {split} share in --split")
    known = [p for p in info.products if p.same_grid(grid) is not None]
    keys = {p.key for p in known if p.same_grid(grid)}
    if keys or not known:
        mine = [t for t in tiles if not known or t.product in keys]
        return _tile_mask(mine, info.tile_size, grid, manifest)
    mask = _footprint_mask(tiles, info, grid)
    if not mask.any():
        p = known[0].info
        raise TileError(f"{manifest} was prepared on another grid ({p.get('name')}, "
                        f"{p['width']} x {p['height']} px) than the map, and none of its {split} tiles "
                        "overlaps the map; give the tiles of the scenes the map was made of")
    return mask


def _tile_mask(tiles: list[Any], size: int, grid: Grid, manifest: Path) -> np.ndarray:
    mask = np.zeros((grid.height, grid.width), dtype=bool)
    for t in tiles:
        r, c = t.row, t.col
        if r >= grid.height or c >= grid.width:
            raise TileError(f"{manifest}: tile {t.id} lies outside the map "
                            f"({grid.width} x {grid.height} px); evaluate the map of the same scene")
        mask[r:r + size, c:c + size] = True
    return mask


def _footprint_mask(tiles: list[Any], info: TileManifest, grid: Grid) -> np.ndarray:
    """The tiles' footprints (in their products' CRSs) rasterised onto ``grid`` by pixel centre."""
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio import features

    products = {p.key: p.info for p in info.products}
    geoms = []
    for key in dict.fromkeys(t.product for t in tiles):
        p = products.get(key) or {}
        if not {"transform", "epsg"} <= p.keys():
            continue
        a = Affine(*p["transform"][:6])
        boxes = []
        for t in (t for t in tiles if t.product == key):
            (x0, y0), (x1, y1) = a * (t.col, t.row), a * (t.col + info.tile_size, t.row + info.tile_size)
            boxes.append(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        geoms += list(gpd.GeoSeries(boxes, crs=f"EPSG:{int(p['epsg'])}").to_crs(grid.crs))
    if not geoms:
        return np.zeros((grid.height, grid.width), dtype=bool)
    return features.geometry_mask(geoms, out_shape=(grid.height, grid.width), transform=grid.transform,
                                  invert=True)
