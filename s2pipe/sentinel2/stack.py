"""The 12-band 10 m stack of ``prepare --stack``: written harmonised, read back as a scene.

The stack holds exactly what :meth:`Scene.read` returns (uint16 B01..B12, DN = 10000 *
reflectance, 0 = no data) plus, as tags, the radiometry record and the product metadata
it came from, so ``predict`` on the stack checks and records the same facts as on the
product.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2pipe.errors import MissingBandError, SafeFormatError
from s2pipe.provenance import Radiometry
from s2pipe.raster import profiles
from s2pipe.raster.grid import Grid
from s2pipe.raster.maps import read_stack_tags, stack_tags
from s2pipe.sentinel2.facts import BANDS, QUANTIFICATION, RADIOMETRY_CONVENTION
from s2pipe.sentinel2.metadata import SUPPORTED, ProductInfo
from s2pipe.sentinel2.scene import Scene, check_window

log = logging.getLogger(__name__)


class StackScene(Scene):
    """A stack file, already harmonised: windows are read as they are."""

    def __init__(self, path: str | os.PathLike, src: Any, info: ProductInfo, radiometry: Radiometry) -> None:
        super().__init__(info, Grid.of(src), radiometry)
        self.path = path
        self._src = src

    def read(self, window: Window | None = None) -> np.ndarray:
        w = check_window(window, self.grid)
        try:
            return self._src.read(window=w)
        except RasterioError as exc:
            raise MissingBandError(f"{self.path}: cannot be read ({profiles.gdal_reason(exc)}); the "
                                   "file is damaged or incomplete: write it again") from None

    def close(self) -> None:
        self._src.close()


def _stack_info(path: str | os.PathLike, src: Any, product: dict[str, Any] | None,
                radiometry: Radiometry) -> ProductInfo:
    if product is not None:  # the product it came from, now read from this file
        info = ProductInfo(**product)
        info.path, info.missing_bands, info.scl_file = str(path), [], None
        info.band_files = {b: f"{path} (band {i})" for i, b in enumerate(BANDS, start=1)}
        return info
    return ProductInfo(path=str(path), name=Path(str(path).rsplit("/", 1)[-1]).stem, level="", product_type="stack",
                       baseline=str(radiometry.baseline or ""), tile="", sensing_time="",
                       spacecraft="", epsg=src.crs.to_epsg() or 0,
                       transform=list(src.transform)[:6], width=src.width, height=src.height,
                       quantification=float(QUANTIFICATION), offsets={b: 0 for b in BANDS},
                       special_values={}, band_files={b: str(path) for b in BANDS},
                       missing_bands=[], scl_file=None)


def open_stack(path: str | os.PathLike) -> StackScene:
    """Open a stack written by :func:`write_stack`, a local path or URL (raises
    :class:`SafeFormatError`)."""
    from s2pipe.remote import gdal_path

    try:
        src = rasterio.open(gdal_path(path))
    except RasterioError as exc:
        raise SafeFormatError(f"{path}: not readable ({profiles.gdal_reason(exc)}); {SUPPORTED}") from None
    if src.count != len(BANDS) or tuple(src.descriptions) != BANDS or src.dtypes[0] != "uint16":
        src.close()
        raise SafeFormatError(f"{path}: not a 12-band uint16 stack with band descriptions "
                              f"{' '.join(BANDS)}; {SUPPORTED}")
    try:
        radiometry, product = read_stack_tags(src.tags())
    except (ValueError, TypeError):
        src.close()
        raise SafeFormatError(f"{path}: its s2pipe tags are damaged; write the stack again "
                              "(prepare --stack)") from None
    if radiometry is None or radiometry.convention != RADIOMETRY_CONVENTION:
        log.warning("%s: no s2pipe radiometry tag; assuming %s", path, RADIOMETRY_CONVENTION)
        radiometry = Radiometry(convention=RADIOMETRY_CONVENTION, assumed=True)
    return StackScene(path, src, _stack_info(path, src, product, radiometry), radiometry)


def write_stack(scene: Scene, path: str | os.PathLike, *, rows: int = 256,
                progress: Callable[[int], None] | None = None) -> Path:
    """Write the scene's harmonised 12-band 10 m stack as a tiled, compressed GeoTIFF.

    ``path`` is written as given (callers wrap it in ``atomic_output``); ``open_scene``
    reads it back as an already harmonised scene. A failed write, even one GDAL only
    reports when it flushes the file at the end, raises ``OSError``.
    """
    g = scene.grid
    with profiles.written(path), rasterio.open(path, "w", **profiles.STACK, width=g.width, height=g.height,
                       count=len(BANDS), crs=g.crs, transform=g.transform) as dst:
        dst.descriptions = BANDS
        dst.update_tags(**stack_tags(scene.radiometry, asdict(scene.info)))
        for r0 in range(0, g.height, rows):
            w = Window(0, r0, g.width, min(rows, g.height - r0))
            dst.write(scene.read(w), window=w)
            if progress is not None:
                progress(int(w.height))
    return Path(path)
