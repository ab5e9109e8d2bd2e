"""PNG quick-looks of s2pipe rasters: a classification map or a 12-band image stack.

A single-band integer raster is drawn as a class map with its legend colours (the
file's colour table where it has one) and a legend of every class; a 12-band stack
(bands B01..B12 in s2pipe's order, or any stack whose band descriptions name B04,
B03 and B02) is drawn in true colour with a 2-98 percentile stretch (a Sentinel-2 product:
:mod:`s2pipe.sentinel2.quicklook`). The raster is read decimated (``out_shape``, overviews
where the file has them), only the bands it shows, so a full 10980 x 10980 scene renders
in seconds.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2pipe.errors import OptionError, RasterError
from s2pipe.legend import DEFAULT_LEGEND, NODATA_LABEL, LandCoverClass
from s2pipe.outputs import atomic_output
from s2pipe.raster.choices import QUICKLOOK_KINDS, QuicklookKind
from s2pipe.raster.maps import MapKind, open_map, read_band
from s2pipe.raster.profiles import with_gdal_env
from s2pipe.sentinel2.facts import BANDS

log = logging.getLogger(__name__)

Kind = QuicklookKind
KINDS = QUICKLOOK_KINDS
TRUE_COLOUR = ("B04", "B03", "B02")  # bands of the stack (facts.BANDS order) shown as R, G, B
STRETCH_PERCENTILES = (2.0, 98.0)


@dataclass
class Quicklook:
    """What :func:`render_quicklook` wrote."""

    path: Path
    source: Path
    kind: str  # "classes" or "rgb"
    width: int  # pixels of the rendered image (before the legend is added)
    height: int
    decimation: int  # source pixels per rendered pixel (1 = full resolution)
    classes_shown: list[int]  # class values present in the rendered map ("classes" only)


def _rgb_indexes(count: int, descriptions: Sequence[str | None]) -> tuple[int, int, int] | None:
    """1-based band indexes of B04, B03, B02, from band descriptions or the stack order."""
    names = [(d or "").strip().upper() for d in descriptions]
    if all(b in names for b in TRUE_COLOUR):
        return tuple(names.index(b) + 1 for b in TRUE_COLOUR)  # type: ignore[return-value]
    if count == len(BANDS):
        return tuple(BANDS.index(b) + 1 for b in TRUE_COLOUR)  # type: ignore[return-value]
    return None


def stretch(rgb: np.ndarray, valid: np.ndarray,
            percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """Per-band linear stretch of ``rgb`` (3, h, w) between percentiles of valid pixels, to [0, 1]."""
    out = np.zeros(rgb.shape, dtype=np.float32)
    for i, band in enumerate(rgb.astype(np.float32)):
        values = band[valid]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, percentiles)
        out[i] = np.clip((band - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return out


def _legend_image(classes: Sequence[LandCoverClass], title: str, *, height: int,
                  width: int = 360) -> np.ndarray:
    """A legend of ``classes`` (colour patch, value, name) as an RGBA uint8 image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    handles = [Patch(facecolor=c.color, edgecolor="black", linewidth=0.5, label=f"{c.value} {c.name}")
               for c in classes]
    fig.legend(handles=handles, loc="center left", fontsize=8, frameon=False, title=title, title_fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


@with_gdal_env
def render_quicklook(image: str | os.PathLike, out_png: str | os.PathLike, *,
                     kind: Kind = "auto", max_size: int = 1500,
                     legend: Sequence[LandCoverClass] = DEFAULT_LEGEND,
                     title: str | None = None, overwrite: bool = False) -> Quicklook:
    """Render ``image`` as a PNG at ``out_png``, at most ``max_size`` pixels on its long side.

    ``kind="auto"`` draws a one-band raster as classes and a stack with B04/B03/B02 in
    true colour. Class maps use the file's own legend (as :func:`s2pipe.raster.maps.open_map` reads
    it, completed from ``legend``) and always list every class; value 0 (no data) is transparent.
    """
    image = Path(image)
    if max_size < 16:
        raise OptionError(f"max_size {max_size} is too small; use at least 16 pixels")
    drawn, data, valid, classes, decimation = _read_map(image, kind, max_size, legend)
    return render_array(image, out_png, drawn, data, valid, classes, decimation, title=title, overwrite=overwrite)


def _read_map(image: Path, kind: Kind, max_size: int, legend: Sequence[LandCoverClass]
              ) -> tuple[str, np.ndarray, np.ndarray, Sequence[LandCoverClass], int]:
    from rasterio.enums import Resampling

    accepted: dict[str, tuple[MapKind, ...]] = {"auto": ("classes", "change", "stack"),
                                                "classes": ("classes", "change"), "rgb": ("stack",)}
    m = open_map(image, accepted[kind])
    drawn = "classes" if m.kind in ("classes", "change") else "rgb"
    decimation = max(1, math.ceil(max(m.grid.width, m.grid.height) / max_size))
    h, w = max(1, m.grid.height // decimation), max(1, m.grid.width // decimation)
    classes: Sequence[LandCoverClass] = []
    valid = np.ones((h, w), dtype=bool)
    if drawn == "classes":
        data = read_band(m, out_shape=(h, w), resampling=Resampling.nearest)
        classes = m.legend_or(legend)
    else:
        indexes = _rgb_indexes(m.count, m.descriptions)
        if indexes is None:
            raise RasterError(
                f"{image} has {m.count} bands and no B04/B03/B02 descriptions; "
                "give a 12-band stack in s2pipe's band order (prepare --stack)")
        data = read_band(m, list(indexes), out_shape=(3, h, w), resampling=Resampling.nearest)
        valid = np.all(data > 0, axis=0)
        if m.nodata is not None and m.nodata != 0:
            valid &= np.all(data != m.nodata, axis=0)
    return drawn, data, valid, classes, decimation


def render_array(image: Path, out_png: str | os.PathLike, kind: str, data: np.ndarray, valid: np.ndarray,
                 classes: Sequence[LandCoverClass], decimation: int, *, title: str | None = None,
                 overwrite: bool = False) -> Quicklook:
    """Write the PNG of ``data`` read from ``image``: a (h, w) class map drawn with ``classes``
    and a legend, or (3, h, w) R, G, B values stretched over the ``valid`` pixels."""
    h, w = data.shape[-2:]
    log.info("rendering %s (%s) at 1/%d resolution: %d x %d px", image, kind, decimation, w, h)
    shown: list[int] = []
    if kind == "classes":
        lut = np.zeros((256, 4), dtype=np.uint8)  # 0 (no data) and unknown values transparent
        for c in classes:
            if 0 < c.value < 256:
                lut[c.value] = (*c.rgb, 255)
        rgba = lut[np.clip(data, 0, 255).astype(np.intp)]
        shown = sorted(int(v) for v in np.unique(data) if v != NODATA_LABEL)
        key = _legend_image(classes, title or "Classes", height=max(h, 30 * len(classes) + 60))
        canvas = np.full((max(h, key.shape[0]), w + key.shape[1], 4), 255, dtype=np.uint8)
        canvas[:h, :w] = rgba
        canvas[:key.shape[0], w:] = key
        rgba = canvas
    else:
        rgb = (stretch(data, valid) * 255).round().astype(np.uint8)
        rgba = np.dstack([*rgb, np.where(valid, 255, 0).astype(np.uint8)])
    from matplotlib.image import imsave  # writes uint8 RGBA as is, pixel for pixel

    with atomic_output(out_png, overwrite=overwrite) as tmp:
        imsave(tmp, rgba, format="png")
    return Quicklook(path=Path(out_png), source=image, kind=kind, width=w, height=h,
                     decimation=decimation, classes_shown=shown)
