"""Writing maps as Cloud-Optimized GeoTIFFs, strip by strip, with bounded memory.

:class:`MapWriter` takes rows in order, buffers them to whole block rows and writes
each block row once to a tiled, DEFLATE-compressed temporary GeoTIFF; ``finish()`` turns
that into a COG (GDAL's COG driver, internal overviews) at the destination and removes
the temporary file. Class maps get the legend as colour table, class names as band tags
and as GDAL category names + raster attribute table in a ``.aux.xml`` sidecar (the GTiff
format cannot hold those; GDAL, ``gdalinfo`` and QGIS read them from the sidecar).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Sequence
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling as RasterioResampling

from .legend import LandCoverClass, colormap

log = logging.getLogger(__name__)

BLOCKSIZE = 512   # of the COG
STAGE_BLOCK = 256  # of the staging GeoTIFF: rows are buffered to this height, then written
Resampling = Literal["mode", "average", "nearest"]


class MapWriter:
    """Write a (count, height, width) raster in row order; ``finish()`` makes the COG.

    ``grid`` is any object with ``crs``, ``transform``, ``width``, ``height``.
    """

    def __init__(self, path: str | os.PathLike, grid, *, count: int = 1, dtype: str = "uint8",
                 nodata: float | None = 0, overview_resampling: Resampling = "mode",
                 legend: Sequence[LandCoverClass] | None = None,
                 tags: dict[str, str] | None = None,
                 band_descriptions: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.width, self.height, self.count = int(grid.width), int(grid.height), count
        self.legend = tuple(legend) if legend else None
        self.overview_resampling = overview_resampling
        self._stage = self.path.with_name(f".{self.path.stem}.stage.tif")
        block = STAGE_BLOCK
        self._ds = rasterio.open(
            self._stage, "w", driver="GTiff", width=self.width, height=self.height, count=count,
            dtype=dtype, crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True,
            blockxsize=block, blockysize=block, compress="deflate", zlevel=1, bigtiff="if_safer")
        self._block = block
        self._buf = np.zeros((count, block, self.width), dtype=dtype)
        self._buf_row0 = 0   # scene row of the buffer's first row
        self._filled = 0     # rows filled in the buffer
        if self.legend:
            self._ds.write_colormap(1, colormap(self.legend))
            self._ds.update_tags(1, **{f"CLASS_{c.value}": c.name for c in self.legend})
        if tags:
            self._ds.update_tags(**tags)
        for i, text in enumerate(band_descriptions or (), start=1):
            self._ds.set_band_description(i, text)

    @property
    def rows_written(self) -> int:
        return self._buf_row0 + self._filled

    def write_rows(self, data: np.ndarray) -> None:
        """Append (count, n, width) rows below those written so far."""
        data = data.reshape(self.count, -1, self.width)
        if self.rows_written + data.shape[1] > self.height:
            raise ValueError("more rows than the raster holds")
        done = 0
        while done < data.shape[1]:
            n = min(self._block - self._filled, data.shape[1] - done)
            self._buf[:, self._filled:self._filled + n] = data[:, done:done + n]
            self._filled += n
            done += n
            if self._filled == self._block or self.rows_written == self.height:
                self._flush()

    def _flush(self) -> None:
        if not self._filled:
            return
        win = rasterio.windows.Window(0, self._buf_row0, self.width, self._filled)
        self._ds.write(self._buf[:, :self._filled], window=win)
        self._buf_row0 += self._filled
        self._filled = 0

    def finish(self) -> Path:
        """Write the COG at ``path`` (and its ``.aux.xml`` for class maps)."""
        if self.rows_written != self.height:
            raise ValueError(f"only {self.rows_written} of {self.height} rows were written")
        self._ds.close()
        factors = overview_factors(self.width, self.height)
        if factors:  # built here, block by block; the COG driver copies them
            with rasterio.open(self._stage, "r+") as ds:
                ds.build_overviews(factors, RasterioResampling[self.overview_resampling])
        rasterio.shutil.copy(
            self._stage, self.path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCKSIZE,
            OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE", BIGTIFF="IF_SAFER")
        self.close()
        if self.legend:
            write_category_sidecar(self.path, self.legend)
        return self.path

    def close(self) -> None:
        """Release the staging file (also after a failure)."""
        if not self._ds.closed:
            self._ds.close()
        self._stage.unlink(missing_ok=True)

    def __enter__(self) -> "MapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def overview_factors(width: int, height: int) -> list[int]:
    """2, 4, 8, ... until the overview fits in one COG block."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > BLOCKSIZE:
        factors.append(f)
        f *= 2
    return factors


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where GDAL looks for a raster's auxiliary metadata."""
    return Path(f"{path}.aux.xml")


def write_category_sidecar(path: str | os.PathLike, legend: Sequence[LandCoverClass]) -> Path:
    """Class names as GDAL category names and a thematic raster attribute table."""
    names = {c.value: c.name for c in legend}
    cats = "".join(f"<Category>{escape(names.get(v, ''))}</Category>"
                   for v in range(max(names) + 1))
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage>'
                   f"</FieldDefn>" for i, (n, t, u) in enumerate(fields))
    rows = "".join(f'<Row index="{i}"><F>{c.value}</F><F>{escape(c.name)}</F>'
                   f"<F>{c.rgb[0]}</F><F>{c.rgb[1]}</F><F>{c.rgb[2]}</F></Row>"
                   for i, c in enumerate(legend))
    xml = (f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}</CategoryNames>'
           f'<GDALRasterAttributeTable tableType="thematic">{defs}{rows}'
           f"</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>\n")
    out = sidecar_path(path)
    out.write_text(xml, encoding="utf-8")
    return out
