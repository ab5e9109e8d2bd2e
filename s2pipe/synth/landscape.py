"""A synthetic landscape of the 8 land-cover classes and its surface reflectance.

The landscape has two maps on the 10 m grid: ``classes`` (land-cover values 1..8, the
truth) and ``cover`` (the surface material of each pixel, which decides its spectrum).
Several materials make up one class (crops, bare soil and grass in the fields; roofs,
asphalt and gardens in the city) and several classes share materials (park grass and
meadows, park trees and forest, red roofs and bare soil, sand pits and bare fields), so
only shape, texture and context tell some classes apart, not the spectrum of a pixel.
Reflectance is produced one band at a time (:func:`band_reflectance`), so a full
10980 x 10980 scene never holds all bands as float at once.

The maps are laid out on a world's grid (:func:`make_layers`) and a product is a window of
them, or samples them at its pixel centres when in another CRS (:func:`place_in_world`).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np

from s2pipe.sentinel2.facts import BANDS
from s2pipe.synth import terrain as T
from s2pipe.synth.grid import WorldGrid
from s2pipe.synth.terrain import SCL_OF_MATERIAL, SPECTRA

log = logging.getLogger(__name__)

CLOUD_SPECTRUM = np.array([.42, .42, .41, .40, .40, .40, .40, .39, .39, .36, .30, .22], np.float32)


@dataclass
class Layers:
    """Ground, no-data strip and sky on one 10 m grid (row 0 = north): the world's or a product's."""

    classes: np.ndarray  # uint8: 1..8, 0 in the no-data strip
    cover: np.ndarray  # uint8: index into terrain.MATERIALS
    gain: np.ndarray  # float32: per-pixel brightness factor (texture)
    valid: np.ndarray  # bool: False in the no-data strip
    cloud: np.ndarray  # uint8: cloud opacity 0..255
    shadow: np.ndarray  # bool: cloud shadow

    def window(self, row: int, col: int, size: int) -> Layers:
        """Views of a size x size window with its upper-left pixel at (row, col)."""
        win = (slice(row, row + size), slice(col, col + size))
        return Layers(*(a[win] for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.classes, self.cover, self.gain, self.valid, self.cloud, self.shadow


def make_layers(height: int, width: int, seed: int, sky: int | None = None) -> Layers:
    """The ground and no-data strip of ``seed`` and the clouds of ``sky`` on a height x width grid.

    The ground and the strip depend on the seed only; ``sky`` (None: the seed's own sky,
    else any non-negative number, e.g. a date's ordinal) draws other clouds over the same
    ground.
    """
    classes, cover, gain = T.build_ground(height, width, seed)
    valid = nodata_strip(height, width, seed)
    cloud, shadow = clouds(height, width, seed, sky)
    shadow &= valid
    classes[~valid] = 0  # materials stay under the strip: edge pixels blur with real ground
    log.debug("landscape %d x %d px, seed %d: class fractions %s", height, width, seed,
              np.bincount(classes.ravel(), minlength=9) / classes.size)
    return Layers(classes, cover, gain, valid, cloud, shadow)


@dataclass
class Landscape:
    """The ground truth of a synthetic product: a size x size window of ``grid`` at (row, col).

    ``grid`` holds the layers the product lies in (the world, or the product's own samples
    of it), so that the sensor's blur and noise at the product's edges are those of the
    world inside it. ``tag`` sets this acquisition's sensor noise and atmosphere apart
    (empty for the default date: the values of earlier versions).
    """

    seed: int
    size: int
    grid: Layers
    row: int = 0
    col: int = 0
    tag: tuple[int, ...] = ()
    layers: Layers = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = self.grid.window(self.row, self.col, self.size)

    @property
    def classes(self) -> np.ndarray:
        return self.layers.classes

    @property
    def cover(self) -> np.ndarray:
        return self.layers.cover

    @property
    def gain(self) -> np.ndarray:
        return self.layers.gain

    @property
    def valid(self) -> np.ndarray:
        return self.layers.valid

    @property
    def cloud(self) -> np.ndarray:
        return self.layers.cloud

    @property
    def shadow(self) -> np.ndarray:
        return self.layers.shadow

    def scl(self) -> np.ndarray:
        """Scene classification on the 10 m grid (uint8, ESA SCL codes)."""
        scl = SCL_OF_MATERIAL[self.cover]
        scl[self.shadow] = 3
        scl[self.cloud > 40] = 8
        scl[self.cloud > 150] = 9
        scl[~self.valid] = 0
        return scl


def make_landscape(size: int, seed: int) -> Landscape:
    """A product that is its own world: the class map, materials, texture, clouds and strip."""
    return Landscape(seed, int(size), make_layers(int(size), int(size), seed))


SAMPLE_ROWS = 512  # product rows sampled from the world at a time


def place_in_world(world: WorldGrid, layers: Layers, *, origin: tuple[float, float], size: int, epsg: int,
                   seed: int, tag: tuple[int, ...] = ()) -> Landscape:
    """A product's landscape in a world whose ``layers`` lie on ``world``'s grid.

    A product on the world's grid (same CRS, origin on its 10 m grid) is a window of it:
    ground, sky, sensor noise and blur equal the world's, so products of one date agree
    pixel for pixel where they overlap. Any other product (another UTM zone) takes the
    nearest world pixel at each of its pixel centres, and its own sensor noise.
    """
    at = world.window(origin, size, epsg)
    if at is not None:
        return Landscape(seed, size, layers, *at, tag=tag)
    world.check_contains(origin, size, epsg)
    sampled = Layers(*(np.empty((size, size), a.dtype) for a in layers._arrays()))
    height, width = layers.cover.shape
    for r0 in range(0, size, SAMPLE_ROWS):
        r1 = min(size, r0 + SAMPLE_ROWS)
        row, col = world.sample_index(origin, size, epsg, np.arange(r0, r1))
        np.clip(row, 0, height - 1, out=row)
        np.clip(col, 0, width - 1, out=col)
        for out, a in zip(sampled._arrays(), layers._arrays()):
            out[r0:r1] = a[row, col]
    grid_tag = zlib.crc32(f"{epsg} {origin[0]!r} {origin[1]!r}".encode())
    return Landscape(seed, size, sampled, tag=(*tag, grid_tag))


def _soften(a: np.ndarray) -> None:
    """Blur in place with a 3x3 binomial kernel (the sensor's point spread): soft edges."""
    a[1:-1, :] = 0.25 * a[:-2, :] + 0.5 * a[1:-1, :] + 0.25 * a[2:, :]
    a[:, 1:-1] = 0.25 * a[:, :-2] + 0.5 * a[:, 1:-1] + 0.25 * a[:, 2:]


NOISE_ROWS = 64  # sensor noise is drawn in blocks of rows: any stripe gets the same values


def _sensor_noise(key: list[int], band: int, r0: int, r1: int, shape: tuple[int, int]) -> np.ndarray:
    """Rows r0..r1 of the sensor noise of a band on a grid of ``shape``, for seed and tag ``key``."""
    height, width = shape
    blocks = []
    for k in range(r0 // NOISE_ROWS, (r1 - 1) // NOISE_ROWS + 1):
        rows = min(NOISE_ROWS, height - k * NOISE_ROWS)
        rng = np.random.default_rng([key[0], 7, band, k, *key[1:]])
        blocks.append(rng.standard_normal((rows, width), dtype=np.float32))
    start = (r0 // NOISE_ROWS) * NOISE_ROWS
    return np.concatenate(blocks)[r0 - start:r1 - start]


def band_reflectance(land: Landscape, band: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """Surface reflectance of one band on rows r0..r1 of the product's 10 m grid (float32, >= 0.0001).

    Any row range gives exactly the rows of the whole plane, so callers can work in
    stripes, and a window of a world gives exactly the world's values (noise and blur
    included). Deterministic for the landscape's seed and tag; values in the no-data
    strip are undefined (callers write 0 there).
    """
    i = BANDS.index(band)
    r1 = land.size if r1 is None else r1
    g = land.grid
    height, width = g.cover.shape
    top, left = land.row + r0, land.col
    a, b = max(top - 1, 0), min(land.row + r1 + 1, height)  # one halo row and column each side for the blur
    c, d = max(left - 1, 0), min(left + land.size + 1, width)
    refl = SPECTRA[:, i][g.cover[a:b, c:d]]
    refl *= g.gain[a:b, c:d]
    noise = _sensor_noise([land.seed, *land.tag], i, a, b, (height, width))[:, c:d]
    noise *= 0.003 + 0.025 * refl
    refl += noise
    del noise
    _soften(refl)
    refl = refl[top - a:top - a + (r1 - r0), left - c:left - c + land.size]
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


def nodata_strip(height: int, width: int, seed: int) -> np.ndarray:
    """Valid-data mask: False in a slanted strip along the east edge (an orbit edge)."""
    rng = np.random.default_rng([seed, 3])
    top, bottom = rng.uniform(0.86, 0.93), rng.uniform(0.90, 0.97)
    y = np.arange(height, dtype=np.float32)[:, None]
    return np.arange(width, dtype=np.float32)[None, :] < width * (top + (bottom - top) * y / height)


def clouds(height: int, width: int, seed: int, sky: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity (uint8 0..255) and cloud shadow (bool): a few puffy patches.

    ``sky`` None draws the seed's own clouds; any other value, other clouds.
    """
    rng = np.random.default_rng([seed, 4] if sky is None else [seed, 4, sky])
    shape = (height, width)
    alpha = np.zeros(shape, np.float32)
    count = max(2, int(round(3 * height * width / 1500.0**2)))
    for _ in range(count):
        cy, cx, cr = rng.uniform(0.05, 0.95) * height, rng.uniform(0.05, 0.8) * width, rng.uniform(12, 40)
        win, wy, wx = T.window(shape, cy, cx, 2.0 * cr)
        r = np.sqrt(wy**2 + wx**2) / cr
        r = r + 0.3 * T.Noise(rng, max(r.shape), cr / 2).grid(*r.shape)
        np.maximum(alpha[win], np.clip(1.4 - r, 0, 1), out=alpha[win])
    cloud = (alpha * 255).astype(np.uint8)
    dy, dx = int(rng.integers(12, 22)), int(rng.integers(8, 16))
    shadow = np.zeros(shape, bool)
    shadow[:-dy, :-dx] = alpha[dy:, dx:] > 0.5  # shadow cast to the north-west
    shadow &= alpha < 0.15
    return cloud, shadow
