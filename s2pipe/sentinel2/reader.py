"""One reader for Sentinel-2 L2A products: 12 bands on the 10 m grid, harmonised.

``open_scene`` takes a ``.SAFE`` folder, a zipped SAFE (read in place via /vsizip/), an
``MTD_MSIL2A.xml`` path, or a 12-band stack written by ``prepare --stack``. ``Scene.read``
returns uint16 ``(12, h, w)`` for any window of the 10 m grid with

* bands in :data:`BANDS` order, each read from its native-resolution file and upsampled
  by an exact integer factor (:mod:`s2pipe.sentinel2.resample`: a 20 m pixel covers exactly 2 x 2
  output pixels; ``nearest`` is exact replication);
* DN = 10000 * reflectance whatever the baseline: ``DN + BOA_ADD_OFFSET`` (offset 0 before
  04.00), values that would fall below 1 clipped to 1, 65535 (saturated) kept. This is
  applied before resampling, so N0208 and N0509 products of the same ground give the
  same numbers;
* 0 = no data in every band: a pixel that is 0 in any band, or whose SCL class is in
  ``mask_scl``, is 0 in all bands.
"""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2pipe.sentinel2.blockrows import BlockRowReader
from s2pipe.errors import MissingBandError, SafeFormatError
from s2pipe.sentinel2.resample import upsample
from s2pipe.sentinel2.metadata import (BAND_RESOLUTION, BANDS, DEFAULT_SCL_MASK, RADIOMETRY_CONVENTION,
                  RESAMPLING_NAMES, SCL_CLASSES, SUPPORTED, ProductInfo, ResamplingName,
                  read_product_metadata)

__all__ = ["BANDS", "BAND_RESOLUTION", "DEFAULT_SCL_MASK", "RADIOMETRY_CONVENTION", "Grid",
           "ProductInfo", "Scene", "open_scene", "product_info", "read_product_metadata",
           "SCL_CLASSES", "write_stack"]

log = logging.getLogger(__name__)

# A bounded block cache keeps peak memory predictable; JPEG2000 decodes on all cores.
# Users' own settings win.
os.environ.setdefault("GDAL_CACHEMAX", "256")
os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")

SATURATED = 65535


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)[0:4]

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)


def _check_window(window: Window | None, grid: Grid) -> Window:
    if window is None:
        return Window(0, 0, grid.width, grid.height)
    w = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    if (w.col_off < 0 or w.row_off < 0 or w.width <= 0 or w.height <= 0
            or w.col_off + w.width > grid.width or w.row_off + w.height > grid.height):
        raise ValueError(f"window {window} is not inside the {grid.width} x {grid.height} grid")
    return w


class Scene:
    """An open product; use as a context manager. Not safe for concurrent ``read`` calls."""

    def __init__(self, name: str, grid: Grid, info: ProductInfo, radiometry: dict[str, Any],
                 sources: list[Any], paths: list[str], scl: Any | None = None,
                 offsets: np.ndarray | None = None, scale: float = 1.0,
                 mask_scl: tuple[int, ...] = (), resampling: str = "bilinear") -> None:
        self.name = name
        self.grid = grid
        self.info = info
        self.radiometry = radiometry
        self.bands: tuple[str, ...] = BANDS
        self._sources = sources
        self._paths = paths
        self._scl = scl
        # band files (JPEG2000) are read through a block-row cache; a stack directly
        self._readers = [BlockRowReader(s) for s in sources] if offsets is not None else []
        self._scl_reader = BlockRowReader(scl) if scl is not None else None
        self._offsets = offsets  # None: already harmonised (a stack)
        self._scale = scale
        self._resampling = resampling
        self._mask = np.array(sorted(mask_scl), dtype=np.uint8)
        self._pool = ThreadPoolExecutor(max_workers=min(len(sources), os.cpu_count() or 1)) \
            if len(sources) > 1 else None

    def _native(self, i: int, window: Window) -> np.ndarray:
        """Harmonised values of a window of band ``i``'s own file (int32, 0 = no data)."""
        try:
            raw = self._readers[i].read(window)
        except RasterioError as exc:
            raise MissingBandError(f"{self._paths[i]}: cannot be decoded ({exc.__cause__ or exc}); "
                                   "the file is truncated or corrupt, download the product "
                                   "again") from None
        out = raw.astype(np.int32) + int(self._offsets[i])
        if self._scale != 1.0:
            out = np.rint(out * self._scale).astype(np.int32)
        np.clip(out, 1, SATURATED, out=out)
        out[raw == SATURATED] = SATURATED
        out[raw == 0] = 0
        return out

    def _band(self, i: int, window: Window) -> np.ndarray:
        src = self._sources[i]
        k = max(1, round(src.transform.a / self.grid.transform.a))
        if k == 1:
            return self._native(i, window)
        values, valid = upsample(lambda w: self._native(i, w), (src.height, src.width), k,
                                 window, self._resampling)
        return np.where(valid, np.clip(np.rint(values), 1, SATURATED), 0)

    def read(self, window: Window | None = None) -> np.ndarray:
        """Harmonised uint16 ``(12, h, w)`` of ``window`` (default: the whole grid)."""
        w = _check_window(window, self.grid)
        if self._pool is None:  # a stack: one multi-band file, written harmonised
            try:
                return self._sources[0].read(window=w)
            except RasterioError as exc:
                raise MissingBandError(f"{self._paths[0]}: cannot be read ({exc})") from None
        out = np.empty((len(self._sources), int(w.height), int(w.width)), dtype=np.uint16)

        def fill(i: int) -> None:
            out[i] = self._band(i, w)

        for _ in self._pool.map(fill, range(len(self._sources))):
            pass
        nodata = (out == 0).any(axis=0)
        if self._mask.size:
            scl = self.read_scl(w)
            if scl is not None:
                nodata |= np.isin(scl, self._mask)
        out[:, nodata] = 0
        return out

    def read_scl(self, window: Window | None = None) -> np.ndarray | None:
        """The scene classification (nearest, 10 m) of ``window``, or None if absent."""
        if self._scl is None:
            return None
        w = _check_window(window, self.grid)
        k = max(1, round(self._scl.transform.a / self.grid.transform.a))

        def native(win: Window) -> np.ndarray:
            try:
                return self._scl_reader.read(win)
            except RasterioError as exc:
                raise MissingBandError(f"{self.info.scl_file}: cannot be decoded "
                                       f"({exc.__cause__ or exc})") from None

        if k == 1:
            return native(w)
        values, _ = upsample(native, (self._scl.height, self._scl.width), k, w, "nearest")
        return values.astype(np.uint8)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for src in [*self._sources, self._scl]:
            if src is not None:
                src.close()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_band(path: str, band: str, grid: Grid) -> Any:
    """The band's native-resolution file, checked against the 10 m grid."""
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise MissingBandError(f"{path}: band {band} cannot be opened ({exc}); the file is "
                               "missing or corrupt, download the product again") from None
    res = BAND_RESOLUTION.get(band, 20)
    t = src.transform
    expected = (math.ceil(grid.width * 10 / res), math.ceil(grid.height * 10 / res))
    floor = (grid.width * 10 // res, grid.height * 10 // res)
    if (src.width, src.height) not in (expected, floor) or abs(t.a - res) > 1e-6 or \
            abs(t.c - grid.transform.c) > 1e-3 or abs(t.f - grid.transform.f) > 1e-3:
        src.close()
        raise MissingBandError(f"{path}: band {band} is {src.width} x {src.height} px at "
                               f"{t.a:g} m, expected {expected[0]} x {expected[1]} at {res} m "
                               "on the tile's grid; the file does not belong to this product")
    return src


def _open_stack(path: Path) -> Scene:
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise SafeFormatError(f"{path}: not readable ({exc}); {SUPPORTED}") from None
    if src.count != len(BANDS) or tuple(src.descriptions) != BANDS or src.dtypes[0] != "uint16":
        src.close()
        raise SafeFormatError(f"{path}: not a 12-band uint16 stack with band descriptions "
                              f"{' '.join(BANDS)}; {SUPPORTED}")
    tags = src.tags()
    radiometry = json.loads(tags.get("S2PIPE_RADIOMETRY", "{}"))
    if radiometry.get("convention") != RADIOMETRY_CONVENTION:
        log.warning("%s: no s2pipe radiometry tag; assuming %s", path, RADIOMETRY_CONVENTION)
        radiometry = {"convention": RADIOMETRY_CONVENTION, "assumed": True}
    grid = Grid(src.crs, src.transform, src.width, src.height)
    if "S2PIPE_PRODUCT" in tags:  # the product it came from, now read from this file
        info = ProductInfo(**json.loads(tags["S2PIPE_PRODUCT"]))
        info.path, info.missing_bands, info.scl_file = str(path), [], None
        info.band_files = {b: f"{path} (band {i})" for i, b in enumerate(BANDS, start=1)}
    else:
        info = ProductInfo(path=str(path), name=path.stem, level="", product_type="stack",
                           baseline=str(radiometry.get("baseline", "")), tile="", sensing_time="",
                           spacecraft="", epsg=src.crs.to_epsg() or 0,
                           transform=list(src.transform)[:6], width=src.width, height=src.height,
                           quantification=10000.0, offsets={b: 0 for b in BANDS},
                           special_values={}, band_files={b: str(path) for b in BANDS},
                           missing_bands=[], scl_file=None)
    return Scene(info.name, grid, info, radiometry, [src], [str(path)], None, None, 1.0, ())


def open_scene(path: str | os.PathLike, *, resampling: ResamplingName = "bilinear",
               mask_scl: Sequence[int] = DEFAULT_SCL_MASK) -> Scene:
    """Open a product or stack for windowed, harmonised reading of the 12 bands.

    Raises :class:`InputNotFoundError`, :class:`SafeFormatError` (unreadable metadata,
    L1C, not Sentinel-2) or :class:`MissingBandError` (a band file missing, not matching
    the grid, or - when read - truncated or corrupt).
    """
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff") and p.is_file():
        return _open_stack(p)
    if resampling not in RESAMPLING_NAMES:
        raise ValueError(f"resampling must be one of {RESAMPLING_NAMES}, not {resampling!r}")
    info = read_product_metadata(p)
    if info.missing_bands:
        missing = ", ".join(f"{b} ({info.band_files[b] or 'not listed in the metadata'})"
                            for b in info.missing_bands)
        raise MissingBandError(f"{p}: band file(s) missing: {missing}; the product is "
                               "incomplete, download it again")
    grid = Grid(CRS.from_epsg(info.epsg), Affine(*info.transform), info.width, info.height)
    sources: list[Any] = []
    try:
        for band in BANDS:
            sources.append(_open_band(info.band_files[band], band, grid))
        scl = None
        if info.scl_file:
            scl = _open_band(info.scl_file, "SCL", grid)
        elif mask_scl:
            log.warning("%s: no SCL_20m file; pixels are not masked by scene class", p)
    except BaseException:
        for s in sources:
            s.close()
        raise
    scale = 10000.0 / info.quantification
    offsets = np.array([info.offsets[b] for b in BANDS], dtype=np.int32)
    radiometry = {"convention": RADIOMETRY_CONVENTION, "baseline": info.baseline,
                  "offset_applied": dict(info.offsets), "quantification_value": info.quantification,
                  "clipped_below": 1, "nodata": 0, "resampling": resampling,
                  "scl_masked": sorted(int(c) for c in mask_scl) if info.scl_file else []}
    return Scene(info.name, grid, info, radiometry, sources, list(info.band_files.values()), scl,
                 offsets, scale, tuple(int(c) for c in mask_scl) if info.scl_file else (),
                 resampling)


def write_stack(scene: Scene, path: str | os.PathLike, *, rows: int = 256,
                progress: Callable[[int], None] | None = None) -> Path:
    """Write the scene's harmonised 12-band 10 m stack as a tiled, compressed GeoTIFF.

    ``path`` is written as given (callers wrap it in ``atomic_output``); ``open_scene``
    reads it back as an already harmonised scene.
    """
    g = scene.grid
    profile = dict(driver="GTiff", width=g.width, height=g.height, count=len(BANDS),
                   dtype="uint16", crs=g.crs, transform=g.transform, nodata=0, tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                   interleave="pixel", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = BANDS
        dst.update_tags(S2PIPE_RADIOMETRY=json.dumps(scene.radiometry),
                        S2PIPE_PRODUCT=json.dumps(asdict(scene.info)))
        for r0 in range(0, g.height, rows):
            w = Window(0, r0, g.width, min(rows, g.height - r0))
            dst.write(scene.read(w), window=w)
            if progress is not None:
                progress(int(w.height))
    return Path(path)


def product_info(path: str | os.PathLike) -> ProductInfo:
    """What s2pipe reads from a product (metadata only) or from a ``prepare --stack`` file."""
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff") and p.is_file():
        with _open_stack(p) as scene:
            return scene.info
    return read_product_metadata(p)
