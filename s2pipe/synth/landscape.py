"""A synthetic landscape of the 8 land-cover classes and its surface reflectance.

The landscape has two maps on the 10 m grid: ``classes`` (land-cover values 1..8, the
truth) and ``cover`` (the surface material of each pixel, which decides its spectrum).
Several materials make up one class (crops, bare soil and grass in the fields; roofs,
asphalt and gardens in the city) and several classes share materials (park grass and
meadows, park trees and forest, red roofs and bare soil, sand pits and bare fields), so
only shape, texture and context tell some classes apart, not the spectrum of a pixel.
Reflectance is produced one band at a time (:func:`band_reflectance`), so a full
10980 x 10980 scene never holds all bands as float at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from s2pipe.sentinel2.facts import BANDS
from s2pipe.synth import terrain as T
from s2pipe.synth.terrain import SCL_OF_MATERIAL, SPECTRA

log = logging.getLogger(__name__)

CLOUD_SPECTRUM = np.array([.42, .42, .41, .40, .40, .40, .40, .39, .39, .36, .30, .22], np.float32)


@dataclass
class Landscape:
    """The ground truth of a synthetic scene on its 10 m grid (row 0 = north)."""

    seed: int
    size: int
    classes: np.ndarray  # uint8 (size, size): 1..8, 0 in the no-data strip
    cover: np.ndarray  # uint8 (size, size): index into terrain.MATERIALS
    gain: np.ndarray  # float32 (size, size): per-pixel brightness factor (texture)
    valid: np.ndarray  # bool (size, size): False in the no-data strip
    cloud: np.ndarray  # uint8 (size, size): cloud opacity 0..255
    shadow: np.ndarray  # bool (size, size): cloud shadow

    def scl(self) -> np.ndarray:
        """Scene classification on the 10 m grid (uint8, ESA SCL codes)."""
        scl = SCL_OF_MATERIAL[self.cover]
        scl[self.shadow] = 3
        scl[self.cloud > 40] = 8
        scl[self.cloud > 150] = 9
        scl[~self.valid] = 0
        return scl


def make_landscape(size: int, seed: int) -> Landscape:
    """Build the class map, materials, texture, clouds and no-data strip of a scene."""
    n = int(size)
    classes, cover, gain = T.build_ground(n, seed)
    valid = nodata_strip(n, seed)
    cloud, shadow = clouds(n, seed)
    shadow &= valid
    classes[~valid] = 0  # materials stay under the strip: edge pixels blur with real ground
    log.debug("landscape %d px, seed %d: class fractions %s", n, seed,
              np.bincount(classes.ravel(), minlength=9) / classes.size)
    return Landscape(seed, n, classes, cover, gain, valid, cloud, shadow)


def _soften(a: np.ndarray) -> None:
    """Blur in place with a 3x3 binomial kernel (the sensor's point spread): soft edges."""
    a[1:-1, :] = 0.25 * a[:-2, :] + 0.5 * a[1:-1, :] + 0.25 * a[2:, :]
    a[:, 1:-1] = 0.25 * a[:, :-2] + 0.5 * a[:, 1:-1] + 0.25 * a[:, 2:]


NOISE_ROWS = 64  # sensor noise is drawn in blocks of rows: any stripe gets the same values


def _sensor_noise(seed: int, band: int, r0: int, r1: int, n: int) -> np.ndarray:
    blocks = []
    for k in range(r0 // NOISE_ROWS, (r1 - 1) // NOISE_ROWS + 1):
        rows = min(NOISE_ROWS, n - k * NOISE_ROWS)
        blocks.append(np.random.default_rng([seed, 7, band, k]).standard_normal((rows, n), dtype=np.float32))
    start = (r0 // NOISE_ROWS) * NOISE_ROWS
    return np.concatenate(blocks)[r0 - start:r1 - start]


def band_reflectance(land: Landscape, band: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """Surface reflectance of one band on rows r0..r1 of the 10 m grid (float32, >= 0.0001).

    Any row range gives exactly the rows of the whole plane, so callers can work in
    stripes. Deterministic for the landscape's seed; values in the no-data strip are
    undefined (callers write 0 there).
    """
    i = BANDS.index(band)
    r1 = land.size if r1 is None else r1
    a, b = max(r0 - 1, 0), min(r1 + 1, land.size)  # one halo row each side for the blur
    refl = SPECTRA[:, i][land.cover[a:b]]
    refl *= land.gain[a:b]
    noise = _sensor_noise(land.seed, i, a, b, land.size)
    noise *= 0.003 + 0.025 * refl
    refl += noise
    del noise
    _soften(refl)
    refl = refl[r0 - a:r0 - a + (r1 - r0)]
    cloud = land.cloud[r0:r1]
    if cloud.any():
        alpha = cloud.astype(np.float32) / 255.0
        refl *= 1.0 - alpha
        alpha *= CLOUD_SPECTRUM[i]
        refl += alpha
        del alpha
    refl[land.shadow[r0:r1]] *= 0.45
    np.clip(refl, 0.0001, 6.4, out=refl)
    return refl


def nodata_strip(n: int, seed: int) -> np.ndarray:
    """Valid-data mask: False in a slanted strip along the east edge (an orbit edge)."""
    rng = np.random.default_rng([seed, 3])
    top, bottom = rng.uniform(0.86, 0.93), rng.uniform(0.90, 0.97)
    y = np.arange(n, dtype=np.float32)[:, None]
    return np.arange(n, dtype=np.float32)[None, :] < n * (top + (bottom - top) * y / n)


def clouds(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity (uint8 0..255) and cloud shadow (bool): a few puffy patches."""
    rng = np.random.default_rng([seed, 4])
    alpha = np.zeros((n, n), np.float32)
    count = max(2, int(round(3 * (n / 1500.0) ** 2)))
    for _ in range(count):
        cy, cx, cr = rng.uniform(0.05, 0.95) * n, rng.uniform(0.05, 0.8) * n, rng.uniform(12, 40)
        win, wy, wx = T.window(n, cy, cx, 2.0 * cr)
        r = np.sqrt(wy**2 + wx**2) / cr
        r = r + 0.3 * T.Noise(rng, max(r.shape), cr / 2).grid(*r.shape)
        np.maximum(alpha[win], np.clip(1.4 - r, 0, 1), out=alpha[win])
    cloud = (alpha * 255).astype(np.uint8)
    dy, dx = int(rng.integers(12, 22)), int(rng.integers(8, 16))
    shadow = np.zeros((n, n), bool)
    shadow[:-dy, :-dx] = alpha[dy:, dx:] > 0.5  # shadow cast to the north-west
    shadow &= alpha < 0.15
    return cloud, shadow
