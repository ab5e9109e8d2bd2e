"""Estimators of a stratified random sample (Cochran 1977; Olofsson et al. 2014; Stehman 2014).

A sample unit (a point, or a labelled pixel) carries its stratum ``h``; stratum ``h``
holds ``N_h`` pixels of the map, ``n_h`` of them sampled. For indicator variables of the
units (``y``: e.g. "the reference says class k"; ``x``: e.g. "the map says class k"):

* a proportion of the whole area: ``p = sum_h N_h ybar_h / N``, variance
  ``sum_h N_h^2 (1 - n_h/N_h) s2_yh / n_h / N^2``;
* a ratio (user's and producer's accuracies): ``R = sum_h N_h ybar_h / sum_h N_h xbar_h``,
  variance ``sum_h N_h^2 (1 - n_h/N_h) (s2_yh + R^2 s2_xh - 2 R s_xyh) / n_h / X^2``.

When the strata are the map's classes these are Olofsson et al.'s (2014) estimators of
area, overall, user's and producer's accuracy; when they are not (a sample drawn from
another map), Stehman's (2014). The finite-population correction applies to a real
sample (``fpc=True``); a stratum of one unit contributes no variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float

    @property
    def ci95(self) -> float:
        return Z95 * self.se


@dataclass(frozen=True)
class Design:
    """The strata of a sample: each unit's stratum and each stratum's size in pixels."""

    strata: np.ndarray            # (units,) stratum of each unit
    sizes: Mapping[int, int]      # stratum -> N_h (every stratum of the map, sampled or not)
    fpc: bool = True
    freq: np.ndarray | None = None  # (units,): each row stands for this many identical units

    def __post_init__(self) -> None:
        missing = set(np.unique(self.strata).tolist()) - set(self.sizes)
        if missing:
            raise ValueError(f"strata {sorted(missing)} have units but no size")

    @property
    def total(self) -> int:
        return int(sum(self.sizes.values()))

    def _groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index of each unit's stratum, n_h, N_h) over the sampled strata."""
        keys, index = np.unique(self.strata, return_inverse=True)
        n = np.bincount(index, self._w(), len(keys))
        big_n = np.array([self.sizes[int(k)] for k in keys], dtype=np.float64)
        return index, n, big_n

    def _w(self) -> np.ndarray:
        return np.ones(len(self.strata)) if self.freq is None else self.freq.astype(np.float64)

    def unsampled_pixels(self) -> int:
        sampled = set(np.unique(self.strata).tolist())
        return int(sum(v for k, v in self.sizes.items() if k not in sampled))

    def _moments(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        index, n, big_n = self._groups()
        k = len(n)
        w = self._w()
        y, x = y.astype(np.float64), x.astype(np.float64)
        sy, sx = np.bincount(index, w * y, k), np.bincount(index, w * x, k)
        syy, sxx = np.bincount(index, w * y * y, k), np.bincount(index, w * x * x, k)
        sxy = np.bincount(index, w * x * y, k)
        ybar, xbar = sy / n, sx / n
        d = np.maximum(n - 1, 1)
        s2y = np.where(n > 1, (syy - n * ybar ** 2) / d, 0.0)
        s2x = np.where(n > 1, (sxx - n * xbar ** 2) / d, 0.0)
        sxy_ = np.where(n > 1, (sxy - n * xbar * ybar) / d, 0.0)
        f = (1 - n / big_n) if self.fpc else np.ones_like(n)
        return n, big_n, ybar, xbar, s2y, s2x, sxy_, np.clip(f, 0.0, 1.0)

    def proportion(self, y: np.ndarray) -> Estimate:
        """The share of the map's area (all strata) where the indicator ``y`` holds."""
        n, big_n, ybar, _, s2y, _, _, f = self._moments(y, y)
        total = self.total
        if total == 0 or len(n) == 0:
            return Estimate(math.nan, math.nan)
        p = float(np.sum(big_n * ybar) / total)
        var = float(np.sum(big_n ** 2 * f * s2y / n) / total ** 2)
        return Estimate(p, math.sqrt(max(var, 0.0)))

    def ratio(self, y: np.ndarray, x: np.ndarray) -> Estimate:
        """``sum y / sum x`` over the area (y implies x: an accuracy); NaN where no x."""
        n, big_n, ybar, xbar, s2y, s2x, sxy, f = self._moments(y, x)
        big_x = float(np.sum(big_n * xbar))
        if big_x <= 0:
            return Estimate(math.nan, math.nan)
        r = float(np.sum(big_n * ybar)) / big_x
        var = float(np.sum(big_n ** 2 * f * (s2y + r * r * s2x - 2 * r * sxy) / n)) / big_x ** 2
        return Estimate(r, math.sqrt(max(var, 0.0)))
