"""One block of a mosaic, computed from the maps that cover it and nothing else.

Every valid pixel of a map gets a weight that rises from 0 at the map's edge and at its
no data (clouds masked by ``predict --mask-clouds``, the no-data strip) to 1 at
``feather`` pixels inside, along a raised-cosine ramp like the window blend of
``predict``: where scenes overlap, the one deeper inside its valid area counts most, so
scene borders and cloud edges leave no seam, and clouds of one date are filled from the
others. Probabilities are blended as ``sum(w * p) / sum(w)`` and then decided (argmax);
probability rasters in another CRS or grid are resampled bilinearly before that, class
maps (nearest) never averaged: with class maps only, a pixel takes the class of the map
in which it has the largest weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from s2pipe.mosaic.inputs import MapInput
from s2pipe.raster.grid import Grid

#: The weight of a valid pixel right at an edge: tiny, so that any deeper scene wins, but
#: not 0, so that a pixel only one scene sees is still mapped.
MIN_WEIGHT = 1e-3


@dataclass
class BlockResult:
    """The mosaic's classes of one block, and where each pixel came from."""

    window: Window
    classes: np.ndarray      # uint8 (h, w), 0 = no data
    source: np.ndarray       # uint8 (h, w): 1-based index of the map weighing most, 0 = none
    count: np.ndarray        # uint8 (h, w): maps with a valid pixel there
    probabilities: np.ndarray | None = None  # uint8 (n, h, w), 255 = 1, all 0 = no data


def feather_weights(valid: np.ndarray, feather: int) -> np.ndarray:
    """float32 weights of a valid mask (anything outside it counts as invalid): the share
    of valid pixels in a ``2 * feather + 1`` box, mapped from 1/2 (at an edge) .. 1 to a
    raised-cosine ramp 0 .. 1; 0 on invalid pixels."""
    if feather <= 0:
        return valid.astype(np.float32)
    k = 2 * feather + 1
    padded = np.pad(valid, feather)  # outside the array: invalid
    c = np.cumsum(np.cumsum(padded, axis=0, dtype=np.int32), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    share = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    ramp = np.clip(2.0 * share - 1.0, 0.0, 1.0)
    w = np.maximum(np.sin(0.5 * np.pi * ramp) ** 2, MIN_WEIGHT).astype(np.float32)
    w[~valid] = 0.0
    return w


def _source_window(m: MapInput, grid: Grid, window: Window, margin: int) -> Window:
    """The window of map ``m`` (grown by ``margin`` px) under the output ``window``."""
    t = rasterio.windows.transform(window, grid.transform)
    left, top = t.c, t.f
    right, bottom = left + t.a * window.width, top + t.e * window.height
    if m.crs != grid.crs:
        left, bottom, right, top = transform_bounds(grid.crs, m.crs, left, bottom, right, top,
                                                    densify_pts=21)
    f = from_bounds(left, bottom, right, top, m.transform)
    c0, r0 = math.floor(f.col_off), math.floor(f.row_off)
    c1, r1 = math.ceil(f.col_off + f.width), math.ceil(f.row_off + f.height)
    return Window(c0 - margin, r0 - margin, c1 - c0 + 2 * margin, r1 - r0 + 2 * margin)


def _reaches(m: MapInput, w: Window) -> bool:
    """Whether window ``w`` of map ``m`` holds any of its pixels."""
    return not (w.col_off >= m.width or w.row_off >= m.height or w.col_off + w.width <= 0 or w.row_off + w.height <= 0)


def aligned_window(m: MapInput, grid: Grid, window: Window) -> Window | None:
    """The map's window that is exactly the output window's pixels, when the grids align."""
    a, b = m.transform, grid.transform
    if m.crs != grid.crs or (a.a, a.b, a.d, a.e) != (b.a, b.b, b.d, b.e):
        return None
    col, row = (b.c - a.c) / a.a + window.col_off, (b.f - a.f) / a.e + window.row_off
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return Window(round(col), round(row), window.width, window.height)


def _warp(src: np.ndarray, src_transform: Any, m: MapInput, grid: Grid, window: Window,
          resampling: Resampling) -> np.ndarray:
    dst = np.zeros((src.shape[0], int(window.height), int(window.width)), dtype=src.dtype)
    reproject(src, dst, src_transform=src_transform, src_crs=m.crs,
              dst_transform=rasterio.windows.transform(window, grid.transform), dst_crs=grid.crs,
              resampling=resampling, src_nodata=None, dst_nodata=None, init_dest_nodata=False,
              num_threads=2, warp_mem_limit=256)
    return dst


def read_window(ds: Any, window: Window) -> np.ndarray:
    """``window`` of all bands; outside the raster: 0 (no data). Cheaper than a boundless read."""
    c0, r0 = max(0, int(window.col_off)), max(0, int(window.row_off))
    c1 = min(ds.width, int(window.col_off + window.width))
    r1 = min(ds.height, int(window.row_off + window.height))
    if c1 <= c0 or r1 <= r0:
        return np.zeros((ds.count, int(window.height), int(window.width)), dtype=ds.dtypes[0])
    inner = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0))
    pads = ((0, 0), (r0 - int(window.row_off), int(window.row_off + window.height) - r1),
            (c0 - int(window.col_off), int(window.col_off + window.width) - c1))
    return np.pad(inner, pads) if any(p for pair in pads for p in pair) else inner


def map_block(m: MapInput, ds: Any, grid: Grid, window: Window, feather: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Map ``m``'s values (probabilities as uint8, 255 = 1, or classes) and weights on the
    output ``window``; None where the map does not reach it."""
    aligned = aligned_window(m, grid, window)
    # a margin for the ramp and for resampling; on the same grid without a ramp, none: the
    # window is read as it is (each block of the map decoded once when windows follow them)
    src_win = aligned if aligned is not None and feather <= 0 else _source_window(m, grid, window, feather + 2)
    if src_win is None or not _reaches(m, src_win):
        return None
    data = read_window(ds, src_win)
    valid = data.max(axis=0) > 0
    if not valid.any():
        return None
    weight = feather_weights(valid, feather)
    if aligned is not None:  # same grid: cut, no resampling
        r, c = int(aligned.row_off - src_win.row_off), int(aligned.col_off - src_win.col_off)
        h, w = int(window.height), int(window.width)
        values, weight = data[:, r:r + h, c:c + w], weight[r:r + h, c:c + w]
    elif m.kind == "probabilities":  # one bilinear warp of the bands and the weight (as 1..255)
        t = rasterio.windows.transform(src_win, m.transform)
        w8 = np.where(valid, np.maximum(np.rint(weight * 255), 1), 0).astype(np.uint8)
        warped = _warp(np.concatenate([data, w8[None]]), t, m, grid, window, Resampling.bilinear)
        values, weight = warped[:-1], warped[-1].astype(np.float32) / np.float32(255.0)
    else:
        t = rasterio.windows.transform(src_win, m.transform)
        values = _warp(data, t, m, grid, window, Resampling.nearest)
        weight = _warp(weight[None], t, m, grid, window, Resampling.bilinear)[0]
        weight[values[0] == 0] = 0.0
    if m.kind == "probabilities":
        return values, weight  # uint8, 255 = 1.0
    return values[0], weight


def mosaic_block(inputs: Sequence[MapInput], datasets: Sequence[Any], grid: Grid, window: Window,
                 feather: int, clip_mask: np.ndarray | None = None, *, probabilities: bool = False) -> BlockResult:
    """Blend every map that covers ``window`` into its classes (see the module docstring);
    with ``probabilities`` (probability inputs) also the blended probabilities."""
    h, w = int(window.height), int(window.width)
    n = len(inputs[0].legend)
    sums = np.zeros((n, h, w), dtype=np.float32) if inputs[0].kind == "probabilities" else None
    best = np.zeros((h, w), dtype=np.float32)
    classes = np.zeros((h, w), dtype=np.uint8)
    source = np.zeros((h, w), dtype=np.uint8)
    count = np.zeros((h, w), dtype=np.uint8)
    total = np.zeros((h, w), dtype=np.float32)
    tmp = np.empty((h, w), dtype=np.float32)
    for m, ds in zip(inputs, datasets):
        got = map_block(m, ds, grid, window, feather)
        if got is None:
            continue
        values, weight = got
        count += weight > 0
        if sums is not None:  # sums += values * weight, band by band without a float copy of all
            for k in range(n):
                np.multiply(values[k], weight, out=tmp)
                sums[k] += tmp
            total += weight
        better = weight > best
        best[better] = weight[better]
        source[better] = m.index
        if sums is None:
            classes[better] = values[better]
    if sums is not None:
        classes = (sums.argmax(axis=0) + 1).astype(np.uint8)
        classes[total <= 0] = 0
    values_of = [c.value for c in inputs[0].legend]
    if sums is not None and values_of != list(range(1, n + 1)):  # legend values not 1..n
        lut = np.array([0, *values_of], dtype=np.uint8)
        classes = lut[classes]
    blended = None
    if probabilities and sums is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            blended = np.where(total > 0, np.rint(sums / np.maximum(total, 1e-12)), 0).clip(0, 255).astype(np.uint8)
        blended[:, (total > 0) & (blended.max(axis=0) == 0)] = 1  # data, however unsure, is not no data
    if clip_mask is not None:
        classes[~clip_mask] = 0
        source[~clip_mask] = 0
        count[~clip_mask] = 0
        if blended is not None:
            blended[:, ~clip_mask] = 0
    return BlockResult(window, classes, source, count, blended)
