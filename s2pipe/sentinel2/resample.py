"""Exact integer-factor upsampling of a band window onto the 10 m grid.

A 20 m (60 m) pixel covers exactly 2 x 2 (6 x 6) output pixels: output pixel ``o`` has
its centre at source coordinate ``(o + 0.5) / k - 0.5``, so every ``k``-th output pixel
(a "phase") uses the same taps and weights, and the work is a few slices per phase.
``nearest`` (and ``average``, which for upsampling is the same) replicates each source
pixel; ``bilinear`` and ``cubic`` (Keys, a = -0.5) are separable kernels. Where a pixel's
taps include no-data (0) source pixels its weights are renormalised over the valid ones,
so no-data edges do not darken their neighbours; an output pixel is no data exactly where
its nearest source pixel is. Image edges are clamped. Every output pixel is computed by
the same float32 operations whatever the window, so windows match full reads bit for
bit, and the values are harmonised before, so baselines give identical results.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rasterio.windows import Window

ReadNative = Callable[[Window], np.ndarray]
PAD = 2  # source pixels read beyond the window on each side (cubic needs 2)


def _keys(d: float, a: float = -0.5) -> float:
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0


def phase_taps(k: int, method: str) -> list[list[tuple[int, np.float32]]]:
    """For each phase p: (source offset q, weight) with out[k*j + p] = sum w * src[j + q]."""
    phases = []
    for p in range(k):
        s = (p + 0.5) / k - 0.5
        i0 = math.floor(s)
        f = s - i0
        if method == "bilinear":
            taps = [(i0, 1.0 - f), (i0 + 1, f)]
        elif method == "cubic":
            taps = [(i0 + t, _keys(f - t)) for t in (-1, 0, 1, 2)]
        else:
            raise ValueError(f"unknown resampling {method!r}")
        phases.append([(q, np.float32(w)) for q, w in taps if w != 0.0])
    return phases


def _up_axis(a: np.ndarray, k: int, phases: list, m: int, axis: int) -> np.ndarray:
    """Upsample ``a`` (padded by PAD along ``axis``) to ``k * m`` samples along ``axis``."""
    shape = list(a.shape)
    shape[axis] = k * m
    out = np.empty(shape, dtype=np.float32)
    for p, taps in enumerate(phases):
        acc = None
        for q, w in taps:
            sl = slice(PAD + q, PAD + q + m)
            term = w * (a[sl] if axis == 0 else a[:, sl])
            if acc is None:
                acc = term
            else:
                acc += term
        if axis == 0:
            out[p::k] = acc
        else:
            out[:, p::k] = acc
    return out


def _read_padded(read_native: ReadNative, shape: tuple[int, int], r0: int, r1: int, c0: int,
                 c1: int) -> np.ndarray:
    """Source rows r0..r1, cols c0..c1 (inclusive, may lie outside): edges replicated."""
    nh, nw = shape
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, nh - 1), max(c0, 0), min(c1, nw - 1)
    src = read_native(Window(cc0, rr0, cc1 - cc0 + 1, rr1 - rr0 + 1))
    pads = ((rr0 - r0, r1 - rr1), (cc0 - c0, c1 - cc1))
    return np.pad(src, pads, mode="edge") if any(any(p) for p in pads) else src


def upsample(read_native: ReadNative, native_shape: tuple[int, int], k: int, window: Window,
             method: str) -> tuple[np.ndarray, np.ndarray]:
    """``window`` of the fine grid from a band ``k`` times coarser.

    ``read_native(win)`` returns the harmonised source values of a native window (0 =
    no data). Returns ``(values float32, valid bool)`` of the window's shape.
    """
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    j0, j1 = r0 // k, (r0 + h - 1) // k  # source rows and columns under the window
    i0, i1 = c0 // k, (c0 + w - 1) // k
    mr, mc = j1 - j0 + 1, i1 - i0 + 1
    crop = np.s_[r0 - j0 * k:r0 - j0 * k + h, c0 - i0 * k:c0 - i0 * k + w]
    if method in ("nearest", "average"):
        src = _read_padded(read_native, native_shape, j0, j1, i0, i1)
        out = np.repeat(np.repeat(src, k, axis=0), k, axis=1)[crop].astype(np.float32)
        return out, out != 0
    phases = phase_taps(k, method)
    a = _read_padded(read_native, native_shape, j0 - PAD, j1 + PAD, i0 - PAD, i1 + PAD)
    a = a.astype(np.float32)
    num = _up2(a, k, phases, mr, mc)
    centre = a[PAD:PAD + mr, PAD:PAD + mc] != 0
    valid = np.repeat(np.repeat(centre, k, axis=0), k, axis=1)
    zr, zc = np.nonzero(a == 0)
    if zr.size:  # renormalise near no-data, only in the box of source pixels it touches
        r_lo, r_hi = max(int(zr.min()) - 2 * PAD, 0), min(int(zr.max()), mr - 1)
        c_lo, c_hi = max(int(zc.min()) - 2 * PAD, 0), min(int(zc.max()), mc - 1)
        sub = a[r_lo:r_hi + 2 * PAD + 1, c_lo:c_hi + 2 * PAD + 1]
        nr, nc = r_hi - r_lo + 1, c_hi - c_lo + 1
        mask = (sub != 0).astype(np.float32)
        den = _up2(mask, k, phases, nr, nc)
        ones = [[(q, np.float32(1)) for q, _ in taps] for taps in phases]
        touched = _up2(1.0 - mask, k, ones, nr, nc) > 0  # some tap is no data
        box = np.s_[r_lo * k:(r_hi + 1) * k, c_lo * k:(c_hi + 1) * k]
        part = num[box]
        fix = touched & (den != 0)
        part[fix] = part[fix] / den[fix]
        part[den == 0] = 0
    num = num[crop]
    valid = valid[crop]
    num[~valid] = 0
    return num, valid


def _up2(a: np.ndarray, k: int, phases: list, mr: int, mc: int) -> np.ndarray:
    """Separable upsampling of a padded source block to ``(k * mr, k * mc)``."""
    return _up_axis(_up_axis(a, k, phases, mr, 0), k, phases, mc, 1)
