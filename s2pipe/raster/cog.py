"""Writing maps as Cloud-Optimized GeoTIFFs, strip by strip, with bounded memory.

:class:`MapWriter` takes rows in order, buffers them to whole block rows and writes
each block row once to a tiled, DEFLATE-compressed temporary GeoTIFF; ``finish()`` turns
that into a COG (GDAL's COG driver, internal overviews) at the destination and removes
the temporary file. Rows may also come in column ranges (the panels of
:mod:`s2pipe.prediction.blend`), each in row order: each range goes to a temporary file of its own,
and ``finish()`` first joins them into the full-width file, one block row at a time. A
class map's first overview may be given as its rows are written (``write_half_rows``):
it becomes the stage's external ``.ovr``, and only the smaller levels are built from it.

Class maps carry their legend as :mod:`s2pipe.raster.style` encodes it: colour table
and class tags inside, ``.aux.xml`` and ``.qml`` sidecars next to the map.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling as RasterioResampling
from rasterio.transform import Affine

from s2pipe.legend import LandCoverClass
from s2pipe.raster import profiles
from s2pipe.raster.style import apply_legend, write_sidecars

log = logging.getLogger(__name__)

STAGE_BLOCK = profiles.STAGE_BLOCK  # rows are buffered to this height, then written
OVERVIEW_CHUNK = 1 << 20  # bytes of the map GDAL reads at a time to build overviews
Resampling = Literal["mode", "average", "nearest"]


class _RowWriter:
    """Rows of a (count, height, width) raster appended in order to an open dataset,
    buffered to whole block rows so that each block is written (and compressed) once."""

    def __init__(self, ds: Any, block: int) -> None:
        self.ds = ds
        self.block = block
        self._buf = np.zeros((ds.count, block, ds.width), dtype=ds.dtypes[0])
        self._row0 = 0     # raster row of the buffer's first row
        self._filled = 0   # rows filled in the buffer

    @property
    def rows_written(self) -> int:
        return self._row0 + self._filled

    def write_rows(self, data: np.ndarray) -> None:
        data = data.reshape(self.ds.count, -1, self.ds.width)
        if self.rows_written + data.shape[1] > self.ds.height:
            raise ValueError("more rows than the raster holds")
        done = 0
        while done < data.shape[1]:
            n = min(self.block - self._filled, data.shape[1] - done)
            self._buf[:, self._filled:self._filled + n] = data[:, done:done + n]
            self._filled += n
            done += n
            if self._filled == self.block or self.rows_written == self.ds.height:
                self._flush()

    def _flush(self) -> None:
        if not self._filled:
            return
        win = rasterio.windows.Window(0, self._row0, self.ds.width, self._filled)
        with profiles.gdal_write_errors(self.ds.name):
            self.ds.write(self._buf[:, :self._filled], window=win)
        self._row0 += self._filled
        self._filled = 0


class MapWriter:
    """Write a (count, height, width) raster in row order; ``finish()`` makes the COG.

    ``grid`` is any object with ``crs``, ``transform``, ``width``, ``height``.
    """

    def __init__(self, path: str | os.PathLike, grid: Any, *, count: int = 1, dtype: str = "uint8",
                 nodata: float | None = 0, overview_resampling: Resampling = "mode",
                 legend: Sequence[LandCoverClass] | None = None,
                 tags: dict[str, str] | None = None,
                 band_descriptions: Sequence[str] | None = None, deflate_level: int | None = None,
                 raw_stage: bool = False) -> None:
        self.path = Path(path)
        self.width, self.height, self.count = int(grid.width), int(grid.height), count
        self.dtype, self.nodata = dtype, nodata
        self.legend = tuple(legend) if legend else None
        self.overview_resampling = overview_resampling
        self._cog = {**profiles.COG, **({"LEVEL": deflate_level} if deflate_level is not None else {})}
        self._stage_profile = profiles.STAGE_RAW if raw_stage else profiles.STAGE
        self.crs, self.transform = grid.crs, grid.transform
        self._stage = self.path.with_name(f".{self.path.name}.stage.tif")  # named after the map,
        # so that the map's own temporaries (a killed run's too) are recognised by its name
        self._ds = self._create(self._stage, 0, self.width)
        self._rows = _RowWriter(self._ds, STAGE_BLOCK)
        self._halves: _RowWriter | None = None  # the first overview, when given (write_half_rows)
        self._parts: dict[int, tuple[Path, _RowWriter]] = {}  # column -> its own file
        self._descriptions = tuple(band_descriptions or ())
        if self.legend:
            apply_legend(self._ds, self.legend)
        if tags:
            self._ds.update_tags(**tags)
        self._describe()

    def _describe(self) -> None:
        for i, text in enumerate(self._descriptions, start=1):
            self._ds.set_band_description(i, text)

    def _create(self, path: Path, col0: int, width: int) -> Any:
        """A tiled GeoTIFF for columns ``col0 .. col0 + width - 1`` of the raster."""
        with profiles.gdal_write_errors(path):
            return rasterio.open(
                path, "w", **self._stage_profile, width=width, height=self.height, count=self.count,
                dtype=self.dtype, crs=self.crs, nodata=self.nodata,
                transform=self.transform * Affine.translation(col0, 0))

    @property
    def rows_written(self) -> int:
        """Rows complete across the whole width."""
        if not self._parts:
            return self._rows.rows_written
        if sum(w.ds.width for _, w in self._parts.values()) != self.width:
            return 0
        return min(w.rows_written for _, w in self._parts.values())

    def write_rows(self, data: np.ndarray, col0: int = 0) -> None:
        """Append (count, n, w) rows below those written so far in columns
        ``col0 .. col0 + w - 1`` (the whole width by default)."""
        data = data.reshape(self.count, -1, data.shape[-1])
        width = data.shape[-1]
        if col0 == 0 and width == self.width and not self._parts:
            self._rows.write_rows(data)
            return
        if col0 not in self._parts:
            if col0 < 0 or col0 + width > self.width or self._rows.rows_written:
                raise ValueError(f"columns {col0}..{col0 + width - 1} do not fit the raster")
            path = self.path.with_name(f".{self.path.name}.part{col0}.tif")
            self._parts[col0] = (path, _RowWriter(self._create(path, col0, width), STAGE_BLOCK))
        self._parts[col0][1].write_rows(data)

    @property
    def takes_halves(self) -> bool:
        """Whether :meth:`write_half_rows` may be used (and spares work)."""
        return (self.count == 1 and self.dtype == "uint8" and self.nodata == 0 and self.overview_resampling == "mode"
                and not self.width % 2 and not self.height % 2 and bool(overview_factors(self.width, self.height)))

    def write_half_rows(self, data: np.ndarray) -> None:
        """Append rows of the first overview (factor 2), :func:`mode_halves` of the rows
        written, so that ``finish()`` reads the map back only at a quarter of its size.
        Single-band uint8 maps (no data 0) of even width and height with mode overviews only."""
        if not self.takes_halves:
            raise ValueError("given overview rows need one band, mode overviews and an even size")
        if self._halves is None:
            with profiles.gdal_write_errors(self._stage):
                ds = rasterio.open(self._overview_file, "w", **self._stage_profile, width=self.width // 2,
                                   height=self.height // 2, count=1, dtype=self.dtype, nodata=self.nodata,
                                   crs=self.crs, transform=self.transform * Affine.scale(2))
            self._halves = _RowWriter(ds, STAGE_BLOCK)
        self._halves.write_rows(data)

    @property
    def _overview_file(self) -> Path:
        return self._stage.with_name(self._stage.name + ".ovr")  # GDAL's external overviews

    def _build_overviews(self, factors: list[int]) -> str:
        """The stage's overviews, from the given first overview when it is complete; the
        GDAL_DISABLE_READDIR_ON_OPEN the COG copy must see them with."""
        resampling = RasterioResampling[self.overview_resampling]
        halves = self._halves
        if halves is not None:
            with profiles.gdal_write_errors(self._overview_file):
                if self.legend:  # GDAL's chunked MODE overviews of a paletted band differ from a plain one's
                    apply_legend(halves.ds, self.legend)
                halves.ds.close()
            if halves.rows_written == self.height // 2:  # its own overviews are the map's next ones
                if factors[1:]:
                    with profiles.gdal_write_errors(self._overview_file), \
                            rasterio.Env(GDAL_OVR_CHUNK_MAX_SIZE=OVERVIEW_CHUNK), \
                            rasterio.open(self._overview_file, "r+") as ds:
                        ds.build_overviews([f // 2 for f in factors[1:]], resampling)
                return "FALSE"  # the .ovr beside the stage is found by listing the folder
            self._overview_file.unlink(missing_ok=True)
        with profiles.gdal_write_errors(self._stage), rasterio.Env(GDAL_OVR_CHUNK_MAX_SIZE=OVERVIEW_CHUNK), \
                rasterio.open(self._stage, "r+") as ds:
            ds.build_overviews(factors, resampling)
        return "EMPTY_DIR"

    def _join_parts(self) -> None:
        """Copy the column parts into the full-width file, one block row at a time."""
        starts = sorted(self._parts)
        ends = [s + self._parts[s][1].ds.width for s in starts]
        if starts[0] != 0 or ends[-1] != self.width or starts[1:] != ends[:-1]:
            raise ValueError("the column parts do not cover the raster's width")
        readers = []
        for s in starts:
            path, writer = self._parts[s]
            with profiles.gdal_write_errors(path):
                writer.ds.close()
            readers.append(rasterio.open(path))
        try:
            row = np.empty((self.count, STAGE_BLOCK, self.width), dtype=self.dtype)
            for r0 in range(0, self.height, STAGE_BLOCK):
                n = min(STAGE_BLOCK, self.height - r0)
                for s, e, src in zip(starts, ends, readers):
                    src.read(out=row[:, :n, s:e],
                             window=rasterio.windows.Window(0, r0, e - s, n))
                self._rows.write_rows(row[:, :n])
        finally:
            for src in readers:
                src.close()
        self._remove_parts()

    def _remove_parts(self) -> None:
        for path, writer in self._parts.values():
            if not writer.ds.closed:
                writer.ds.close()
            path.unlink(missing_ok=True)
        self._parts = {}

    def finish(self, legend: Sequence[LandCoverClass] | None = None) -> Path:
        """Write the COG at ``path`` (and its ``.aux.xml`` for class maps); ``legend``
        replaces the one given at the start (a map whose classes are known at its end)."""
        if self.rows_written != self.height:
            raise ValueError(f"only {self.rows_written} of {self.height} rows were written")
        if legend is not None:
            self.legend = tuple(legend)
            apply_legend(self._ds, self.legend)
            self._describe()
        if self._parts:
            self._join_parts()
        with profiles.gdal_write_errors(self._stage):
            self._ds.close()
        factors = overview_factors(self.width, self.height)
        readdir = self._build_overviews(factors) if factors else "EMPTY_DIR"  # the COG driver copies them
        with profiles.written(self.path), rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN=readdir):
            # read back: a write libtiff failed quietly fails here
            rasterio.shutil.copy(self._stage, self.path, **self._cog,
                                 OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE")
        self.close()
        if self.legend:
            write_sidecars(self.path, self.legend)
        return self.path

    def close(self) -> None:
        """Release the temporary files (also after a failure)."""
        self._remove_parts()
        if not self._ds.closed:
            self._ds.close()
        if self._halves is not None and not self._halves.ds.closed:
            self._halves.ds.close()
        self._stage.unlink(missing_ok=True)
        self._overview_file.unlink(missing_ok=True)

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def overview_factors(width: int, height: int) -> list[int]:
    """2, 4, 8, ... until the overview fits in one COG block."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > profiles.COG_BLOCK:
        factors.append(f)
        f *= 2
    return factors


def mode_halves(rows: np.ndarray) -> np.ndarray:
    """GDAL's MODE overview of (even h, even w) uint8 ``rows`` at factor 2, 0 being no
    data: in each 2 x 2 window the value that first reaches the largest count, in row
    order (what ``build_overviews`` gives, computed where the rows are)."""
    h, w = rows.shape
    quad = rows.reshape(h // 2, 2, w // 2, 2)
    a, b, c, d = (np.ascontiguousarray(quad[:, i, :, j]) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    best, top = a.copy(), (a != 0).view(np.uint8)
    for v, same in ((b, (a,)), (c, (a, b)), (d, (a, b, c))):  # count of v so far, where v has data
        count = np.ones(v.shape, np.uint8)
        for u in same:
            count += (v == u).view(np.uint8)
        count *= (v != 0).view(np.uint8)
        up = count > top
        np.copyto(best, v, where=up)
        top = np.maximum(top, count)
    return best
