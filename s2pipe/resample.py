"""Exact integer-factor upsampling of a band window onto the 10 m grid.

A 20 m (60 m) pixel covers exactly 2 x 2 (6 x 6) output pixels: output pixel ``o`` has
its centre at source coordinate ``(o + 0.5) / k - 0.5``. ``nearest`` (and ``average``,
which for upsampling is the same) replicates each source pixel; ``bilinear`` and
``cubic`` (Keys, a = -0.5) are separable kernels whose weights are renormalised over
valid (non-zero) source pixels, so no-data edges do not darken their neighbours. An
output pixel is no data (0) exactly where its nearest source pixel is. The arithmetic is
done here in float32 on already harmonised values, so products of different baselines
give identical results.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from rasterio.windows import Window

ReadNative = Callable[[Window], np.ndarray]


def _taps(start: int, length: int, k: int, n: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (clamped to 0..n-1) and weights, shape (length, taps)."""
    o = np.arange(start, start + length, dtype=np.float64)
    s = (o + 0.5) / k - 0.5
    i0 = np.floor(s).astype(np.int64)
    f = s - i0
    if method == "bilinear":
        idx = np.stack([i0, i0 + 1], axis=1)
        w = np.stack([1.0 - f, f], axis=1)
    elif method == "cubic":
        idx = np.stack([i0 - 1, i0, i0 + 1, i0 + 2], axis=1)
        d = np.abs(f[:, None] - np.array([-1.0, 0.0, 1.0, 2.0]))
        a = -0.5
        w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                     np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    else:
        raise ValueError(f"unknown resampling {method!r}")
    return np.clip(idx, 0, n - 1), w


def upsample(read_native: ReadNative, native_shape: tuple[int, int], k: int, window: Window,
             method: str) -> tuple[np.ndarray, np.ndarray]:
    """``window`` of the fine grid from a band ``k`` times coarser.

    ``read_native(win)`` returns the harmonised source values of a native window (0 =
    no data). Returns ``(values float64, valid bool)`` of the window's shape.
    """
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    nh, nw = native_shape
    near_r = np.clip((np.arange(r0, r0 + h)) // k, 0, nh - 1)
    near_c = np.clip((np.arange(c0, c0 + w)) // k, 0, nw - 1)
    if method in ("nearest", "average"):
        rs, cs = int(near_r.min()), int(near_c.min())
        src = read_native(Window(cs, rs, int(near_c.max()) - cs + 1, int(near_r.max()) - rs + 1))
        out = src[np.ix_(near_r - rs, near_c - cs)].astype(np.float64)
        return out, out != 0
    ir, wr = _taps(r0, h, k, nh, method)
    ic, wc = _taps(c0, w, k, nw, method)
    rs, re_ = int(ir.min()), int(ir.max())
    cs, ce = int(ic.min()), int(ic.max())
    src = read_native(Window(cs, rs, ce - cs + 1, re_ - rs + 1)).astype(np.float32)
    ir, ic = ir - rs, ic - cs
    wr, wc = wr.astype(np.float32), wc.astype(np.float32)
    valid = src[np.ix_(near_r - rs, near_c - cs)] != 0

    def resample(a: np.ndarray) -> np.ndarray:
        rows = sum(wr[:, t, None] * np.take(a, ir[:, t], axis=0) for t in range(ir.shape[1]))
        return sum(wc[None, :, t] * np.take(rows, ic[:, t], axis=1) for t in range(ic.shape[1]))

    num = resample(src)
    if (src != 0).all():  # the common case: the same sums as resample(ones), but cheaper
        r = sum(wr[:, t] for t in range(ir.shape[1]))
        den = sum(wc[None, :, t] * r[:, None] for t in range(ic.shape[1]))
    else:
        den = resample((src != 0).astype(np.float32))
    out = np.zeros_like(num)
    ok = valid & (den != 0)
    out[ok] = num[ok] / den[ok]
    return out, valid
