"""How the points of a stratified sample are shared among its strata (see :mod:`s2pipe.evaluation.sample`)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from s2pipe.errors import OptionError

Allocation = Literal["auto", "neyman", "minimum", "proportional", "equal"]
ALLOCATIONS: tuple[str, ...] = get_args(Allocation)
MIN_POINTS = 2  # per stratum: one point gives no variance


def allocate(pixels: np.ndarray, n: int, allocation: Allocation, min_per_stratum: int | None = None,
             spread: np.ndarray | None = None) -> np.ndarray:
    """Points per stratum (sum ``n``, largest remainders), each in ``MIN_POINTS..pixels``.

    ``neyman`` shares them in proportion to ``pixels * spread`` (Neyman's optimal
    allocation; ``spread`` the anticipated standard deviation of the quantity estimated
    in each stratum, e.g. ``sqrt(p (1 - p))`` of an anticipated share ``p`` of change).
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    h = len(pixels)
    floor = np.minimum(pixels, MIN_POINTS)
    if n < floor.sum():
        raise OptionError(f"-n {n}: {h} strata need at least {int(floor.sum())} points ({MIN_POINTS} each)")
    if n > pixels.sum():
        raise OptionError(f"-n {n}: the map has only {int(pixels.sum())} pixels with data")
    if allocation == "equal":
        base = np.full(h, n / h)
    elif allocation == "proportional":
        base = n * pixels / pixels.sum()
    elif allocation == "neyman":
        if spread is None or len(spread) != h:
            raise ValueError("neyman allocation needs the anticipated spread of every stratum")
        weight = pixels * np.asarray(spread, dtype=np.float64)
        base = n * weight / weight.sum()
    else:
        m = min(50, n // (2 * h)) if min_per_stratum is None else min_per_stratum
        if m * h > n:
            raise OptionError(f"--min-per-stratum {m} x {h} strata is more than -n {n}")
        base = np.full(h, float(m)) + (n - m * h) * pixels / pixels.sum()
    out = np.maximum(np.floor(base).astype(np.int64), floor)
    out = np.minimum(out, pixels)
    rest = n - int(out.sum())
    order = np.argsort(-(base - np.floor(base)), kind="stable")
    while rest != 0:  # hand out (or take back) one point at a time, largest remainder first
        moved = False
        for i in order if rest > 0 else order[::-1]:
            if rest > 0 and out[i] < pixels[i]:
                out[i] += 1
                rest -= 1
                moved = True
            elif rest < 0 and out[i] > floor[i]:
                out[i] -= 1
                rest += 1
                moved = True
            if rest == 0:
                break
        if not moved:
            break
    return out
