"""Reading a SAFE product's band files: 12 bands on the 10 m grid, harmonised.

Each band is read from its native-resolution file through a one-block-row cache
(:mod:`s2pipe.sentinel2.blockrows`), harmonised to DN = 10000 * reflectance
(``DN + BOA_ADD_OFFSET``, offset 0 before baseline 04.00; values that would fall below
1 clipped to 1; 65535, saturated, kept) and then upsampled by an exact integer factor
(:mod:`s2pipe.sentinel2.resample`), so N0208 and N0509 products of the same ground give
the same numbers. A pixel that is 0 in any band, or whose SCL class is masked, is 0 in
all bands.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2pipe.errors import MissingBandError
from s2pipe.provenance import UNMASKED_NO_SCL, OffsetCheck, Radiometry
from s2pipe.raster.grid import Grid
from s2pipe.resources import thread_count
from s2pipe.sentinel2.blockrows import BlockRowReader
from s2pipe.sentinel2.facts import (
    BAND_RESOLUTION,
    BANDS,
    NODATA_DN,
    QUANTIFICATION,
    RADIOMETRY_CONVENTION,
    SATURATED_DN,
)
from s2pipe.sentinel2.metadata import ProductInfo
from s2pipe.sentinel2.radiometry import check_offsets
from s2pipe.sentinel2.resample import upsample
from s2pipe.sentinel2.scene import Scene, check_window

log = logging.getLogger(__name__)


class SafeScene(Scene):
    """The 12 band files (and SCL) of a product, read window by window."""

    def __init__(self, info: ProductInfo, grid: Grid, sources: list[Any], scl: Any | None,
                 *, mask_scl: Sequence[int], resampling: str, offset_check: OffsetCheck) -> None:
        scale = QUANTIFICATION / info.quantification
        radiometry = Radiometry(
            convention=RADIOMETRY_CONVENTION, baseline=info.baseline, offset_applied=dict(info.offsets),
            quantification_value=info.quantification, clipped_below=1, nodata=NODATA_DN,
            resampling=resampling, scl_masked=tuple(sorted(int(c) for c in mask_scl)) if scl is not None else (),
            offset_check=offset_check, metadata=dict(info.radiometry_metadata) or None)
        super().__init__(info, grid, radiometry)
        self.offset_check = offset_check
        self._sources = sources
        self._paths = [info.band_files[b] for b in BANDS]
        self._scl = scl
        self._readers = [BlockRowReader(s) for s in sources]
        self._scl_reader = BlockRowReader(scl) if scl is not None else None
        self._offsets = np.array([info.offsets[b] for b in BANDS], dtype=np.int32)
        self._scale = scale
        self._resampling = resampling
        self._mask = np.array(self.scl_masked, dtype=np.uint8)
        self._pool = ThreadPoolExecutor(max_workers=min(len(sources), thread_count()))

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
        np.clip(out, 1, SATURATED_DN, out=out)
        out[raw == SATURATED_DN] = SATURATED_DN
        out[raw == NODATA_DN] = NODATA_DN
        return out

    def _band(self, i: int, window: Window) -> np.ndarray:
        src = self._sources[i]
        k = max(1, round(src.transform.a / self.grid.transform.a))
        if k == 1:
            return self._native(i, window)
        values, valid = upsample(lambda w: self._native(i, w), (src.height, src.width), k,
                                 window, self._resampling)
        return np.where(valid, np.clip(np.rint(values), 1, SATURATED_DN), NODATA_DN)

    def read(self, window: Window | None = None) -> np.ndarray:
        w = check_window(window, self.grid)
        out = np.empty((len(self._sources), int(w.height), int(w.width)), dtype=np.uint16)

        def fill(i: int) -> None:
            out[i] = self._band(i, w)

        for _ in self._pool.map(fill, range(len(self._sources))):
            pass
        nodata = (out == NODATA_DN).any(axis=0)
        if self._mask.size:
            scl = self.read_scl(w)
            if scl is not None:
                nodata |= np.isin(scl, self._mask)
        out[:, nodata] = NODATA_DN
        return out

    def read_scl(self, window: Window | None = None) -> np.ndarray | None:
        """The scene classification (nearest, 10 m) of ``window``, or None if absent."""
        if self._scl is None or self._scl_reader is None:
            return None
        w = check_window(window, self.grid)
        k = max(1, round(self._scl.transform.a / self.grid.transform.a))
        reader = self._scl_reader

        def native(win: Window) -> np.ndarray:
            try:
                return reader.read(win)
            except RasterioError as exc:
                raise MissingBandError(f"{self.info.scl_file}: cannot be decoded "
                                       f"({exc.__cause__ or exc})") from None

        if k == 1:
            return native(w)
        values, _ = upsample(native, (self._scl.height, self._scl.width), k, w, "nearest")
        return values.astype(np.uint8)

    def close(self) -> None:
        self._pool.shutdown()
        for src in [*self._sources, self._scl]:
            if src is not None:
                src.close()


def _open_band(path: str, band: str, grid: Grid) -> Any:
    """The band's file, checked against the 10 m grid: at the band's native resolution, or
    coarser by a whole factor (a catalogue that offers the band only so), on the tile's grid."""
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise MissingBandError(f"{path}: band {band} cannot be opened ({exc}); the file is "
                               "missing or corrupt, download the product again") from None
    res = BAND_RESOLUTION.get(band, 20)
    t = src.transform

    def fits(r: int) -> bool:
        sizes = ((math.ceil(grid.width * 10 / r), math.ceil(grid.height * 10 / r)),
                 (grid.width * 10 // r, grid.height * 10 // r))
        return (src.width, src.height) in sizes and abs(t.a - r) < 1e-6 and \
            abs(t.c - grid.transform.c) < 1e-3 and abs(t.f - grid.transform.f) < 1e-3
    coarser = round(t.a)
    if not (fits(res) or (coarser > res and coarser % 10 == 0 and fits(coarser))):
        src.close()
        expected = (math.ceil(grid.width * 10 / res), math.ceil(grid.height * 10 / res))
        raise MissingBandError(f"{path}: band {band} is {src.width} x {src.height} px at "
                               f"{t.a:g} m, expected {expected[0]} x {expected[1]} at {res} m (or a "
                               "coarser grid of the same extent) on the tile's grid; the file does not "
                               "belong to this product")
    return src


def open_safe(info: ProductInfo, *, resampling: str, mask_scl: Sequence[int],
              scene_class: type[SafeScene] = SafeScene, trust_pixels: bool = False,
              checked: OffsetCheck | None = None) -> SafeScene:
    """Open the band files ``info`` lists (raises :class:`MissingBandError`), the stated
    offset checked against the pixels (:mod:`s2pipe.sentinel2.radiometry`; raises
    :class:`RadiometryError` when they contradict it, unless ``trust_pixels``). With
    ``checked`` (the check of an earlier open, whose ``info`` this is) it is not checked again."""
    if info.missing_bands:
        missing = ", ".join(f"{b} ({info.band_files[b] or 'not listed in the metadata'})"
                            for b in info.missing_bands)
        raise MissingBandError(f"{info.path}: band file(s) missing: {missing}, nor a file of that name "
                               "elsewhere in the product; the product is incomplete, download it again")
    grid = Grid(CRS.from_epsg(info.epsg), Affine(*info.transform), info.width, info.height)
    sources: list[Any] = []
    scl = None
    try:
        for band in BANDS:
            sources.append(_open_band(info.band_files[band], band, grid))
        if info.scl_file:
            scl = _open_band(info.scl_file, "SCL", grid)
        elif mask_scl and checked is None:  # said once, when the product is first opened
            log.warning("%s: no scene classification (SCL) in the product: clouds, shadows and "
                        "no-data pixels are NOT masked", info.path)
        coarser = {b: round(s.transform.a) for b, s in zip(BANDS, sources)
                   if round(s.transform.a) > BAND_RESOLUTION[b]}
        if coarser and checked is None:
            log.warning("%s: %s offered only coarser than native; read so and resampled to 10 m",
                        info.path, ", ".join(f"{b} at {r} m" for b, r in coarser.items()))
        info = dataclasses.replace(info, coarser_bands=coarser)
        if checked is None:
            info, check = check_offsets(info, dict(zip(BANDS, sources)), trust_pixels=trust_pixels)
        else:
            check = checked
    except BaseException:
        for s in [*sources, scl]:
            if s is not None:
                s.close()
        raise
    scene = scene_class(info, grid, sources, scl, mask_scl=mask_scl if scl is not None else (),
                        resampling=resampling, offset_check=check)
    # what was not read as asked travels with the radiometry record (prepare.json, the
    # tiles' and the maps' S2PIPE_RADIOMETRY)
    scene.radiometry = scene.radiometry.replace(
        unmasked=UNMASKED_NO_SCL if mask_scl and scl is None else None, coarser_bands=coarser or None)
    return scene
