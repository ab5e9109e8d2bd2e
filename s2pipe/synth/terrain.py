"""The spatial layout of a synthetic scene: fields, forest, city, river, lakes, mines.

Everything is vectorised numpy on the 10 m grid of a height x width scene (a product, or the
world that products are windows of); sizes are in pixels (10 m) so feature scales stay
realistic whatever the scene size, while the city and the count of lakes and mines grow
with the scene. A square scene is drawn exactly as before scenes could be rectangular.
Used by :mod:`s2pipe.synth.landscape`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Surface materials: name, SCL class, mean BOA reflectance for BANDS (June, central Europe;
# shapes after the USGS/ECOSTRESS libraries and the study's real L2A tile), relative
# texture amplitude.
_MATERIALS: tuple[tuple[str, int, tuple[float, ...], float], ...] = (
    ("none", 0, (0,) * 12, 0.0),
    ("crop_green", 4, (.025, .035, .068, .040, .105, .290, .370, .405, .420, .420, .215, .105), .10),
    ("crop_ripe", 4, (.055, .075, .115, .140, .185, .235, .265, .285, .295, .295, .320, .230), .10),
    ("bare_soil", 5, (.070, .090, .130, .170, .200, .225, .245, .255, .265, .265, .320, .260), .12),
    ("grass", 4, (.030, .045, .080, .060, .120, .245, .300, .330, .340, .340, .240, .130), .10),
    ("crop_young", 4, (.050, .068, .100, .110, .150, .220, .260, .280, .290, .290, .270, .185), .10),
    ("conifer", 4, (.020, .025, .045, .025, .070, .175, .215, .235, .240, .240, .120, .055), .12),
    ("deciduous", 4, (.025, .032, .062, .032, .095, .265, .335, .365, .375, .370, .185, .082), .12),
    ("reed", 4, (.030, .040, .066, .050, .092, .195, .235, .255, .262, .255, .160, .080), .10),
    ("water", 6, (.045, .045, .042, .026, .021, .015, .013, .012, .011, .010, .006, .004), .08),
    ("water_turbid", 6, (.055, .060, .072, .052, .046, .030, .026, .022, .020, .018, .010, .007), .08),
    ("roof_red", 5, (.070, .080, .100, .160, .190, .210, .222, .232, .238, .240, .300, .240), .15),
    ("roof_grey", 5, (.110, .125, .145, .165, .185, .198, .208, .218, .224, .228, .265, .235), .15),
    ("asphalt", 5, (.060, .066, .076, .086, .092, .100, .106, .111, .115, .115, .130, .120), .12),
    ("roof_bright", 5, (.170, .185, .205, .220, .232, .240, .246, .252, .255, .256, .290, .260), .10),
    ("sand", 5, (.095, .125, .175, .225, .255, .278, .295, .308, .315, .318, .370, .320), .12),
    ("spoil", 5, (.040, .045, .052, .058, .063, .068, .072, .076, .079, .080, .092, .082), .15),
)
MATERIALS = tuple(m[0] for m in _MATERIALS)
M = {name: i for i, name in enumerate(MATERIALS)}
SPECTRA = np.array([m[2] for m in _MATERIALS], dtype=np.float32)  # (n_materials, 12)
SCL_OF_MATERIAL = np.array([m[1] for m in _MATERIALS], dtype=np.uint8)
TEXTURE = np.array([m[3] for m in _MATERIALS], dtype=np.float32)
AGRI, FOREST, WETLAND, WATER, URBAN, INDUSTRIAL, MINE, GREEN = range(1, 9)
STRIPE = 1024  # rows painted at a time: memory stays a few full planes whatever the size
_M8 = {k: np.uint8(v) for k, v in M.items()}


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([seed, tag])


class Noise:
    """A smooth random field (~N(0, 0.5)) on an n x n grid, features about ``cell`` px wide.

    The coarse grid is drawn once, so any window evaluates to the same values.
    """

    def __init__(self, rng: np.random.Generator, n: int, cell: float) -> None:
        self.cell = float(cell)
        m = int(n / cell) + 3
        self.g = rng.standard_normal((m, m)).astype(np.float32)

    def _weights(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(idx, dtype=np.float32) / np.float32(self.cell)
        i = t.astype(np.int64)
        f = t - i
        return i, f * f * (3 - 2 * f)  # smoothstep

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        i, fy = self._weights(rows)
        j, fx = self._weights(cols)
        r = self.g[i] * (1 - fy)[:, None] + self.g[i + 1] * fy[:, None]
        return r[:, j] * (1 - fx) + r[:, j + 1] * fx

    def grid(self, h: int, w: int) -> np.ndarray:
        return self.at(np.arange(h), np.arange(w))


class Fbm:
    """Several octaves of :class:`Noise`: rough outlines (forest edges)."""

    def __init__(self, rng: np.random.Generator, n: int, cell: float, octaves: int = 3) -> None:
        self.layers = [(Noise(rng, n, cell / 2**k), 0.5**k) for k in range(octaves)]

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = self.layers[0][0].at(rows, cols)
        for noise, weight in self.layers[1:]:
            out += noise.at(rows, cols) * np.float32(weight)
        return out


def window(shape: tuple[int, int], cy: float, cx: float,
           half: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The grid within ``half`` px of (cy, cx), at least one pixel: slices, y and x relative to it."""
    h, w = shape
    y0, x0 = (min(max(int(c - half), 0), n - 1) for c, n in ((cy, h), (cx, w)))
    y1, x1 = (min(max(int(c + half) + 1, lo + 1), n) for c, lo, n in ((cy, y0, h), (cx, x0, w)))
    wy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    wx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    return (slice(y0, y1), slice(x0, x1)), wy, wx


def _edges(rng: np.random.Generator, lo_v: float, hi_v: float, lo: int, hi: int) -> np.ndarray:
    steps = rng.integers(lo, hi, size=int((hi_v - lo_v) / lo) + 2)
    return (lo_v + np.cumsum(steps)).astype(np.float32)


def _strips(edges: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the strip holding each v and its distance to the nearer strip edge."""
    idx = np.searchsorted(edges, v).astype(np.int32)
    return idx, np.minimum(v - edges[np.maximum(idx - 1, 0)], edges[idx] - v)


class Parcels:
    """Rectangular parcels (fields, city blocks) in a rotated, slightly warped frame."""

    def __init__(self, rng: np.random.Generator, n: int, angle: float, rows: tuple[int, int],
                 cols: tuple[int, int], warp: float) -> None:
        self.c, self.s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        self.warp = np.float32(warp)
        self.wu, self.wv = Noise(rng, n, 400), Noise(rng, n, 400)
        reach = float(n * (abs(self.c) + abs(self.s)) + 4 * warp + 1000 + max(rows[1], cols[1]))
        self.vedges = _edges(rng, -reach, reach, *rows)
        self.uedges = _edges(rng, -reach, reach + 1000, *cols)
        self.offset = rng.uniform(0, 1000, len(self.vedges) + 1).astype(np.float32)
        self.row_tab = rng.random((8, len(self.vedges) + 1), dtype=np.float32)
        self.col_tab = rng.random((8, len(self.uedges) + 1), dtype=np.float32)

    def at(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row index, column index, distance to the parcel edge in px) of each pixel."""
        y = rows.astype(np.float32)[:, None]
        x = cols.astype(np.float32)[None, :]
        u = x * self.c + y * self.s + np.clip(self.wu.at(rows, cols), -3, 3) * self.warp
        v = y * self.c - x * self.s + np.clip(self.wv.at(rows, cols), -3, 3) * self.warp
        ri, dv = _strips(self.vedges, v)
        u += self.offset[ri]
        ci, du = _strips(self.uedges, u)
        return ri, ci, np.minimum(du, dv)

    def value(self, ri: np.ndarray, ci: np.ndarray, k: int) -> np.ndarray:
        """The k-th random value in [0, 1) of each parcel (k < 8)."""
        v = self.row_tab[k][ri] + self.col_tab[k][ci]
        return v - np.floor(v)


class City:
    """A city of housing blocks, industrial estates and parks around a centre."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        n = max(h, w)
        self.cy, self.cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
        self.radius = min(0.3 * min(h, w), 1400.0)
        self.outline = Noise(rng, n, self.radius / 3)
        self.blocks = Parcels(rng, n, rng.uniform(-0.6, 0.6), (14, 34), (14, 34), 3)
        self.industry = Noise(rng, n, self.radius / 5)
        self.parks = Noise(rng, n, 40)
        self.trees = Noise(rng, n, 5)
        half = 1.5 * self.radius  # the outline noise is clipped so d < 1 stays inside
        self.rows = (max(0, int(self.cy - half)), min(h, int(self.cy + half) + 1))
        self.cols = (max(0, int(self.cx - half)), min(w, int(self.cx + half) + 1))

    def distance(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Distance from the centre in city radii, with a ragged outline (< 1: in the city)."""
        y = rows.astype(np.float32)[:, None] - np.float32(self.cy)
        x = cols.astype(np.float32)[None, :] - np.float32(self.cx)
        return np.sqrt(y * y + x * x) / np.float32(self.radius) + 0.25 * np.clip(self.outline.at(rows, cols), -2, 2)

    def paint(self, r0: int, r1: int, classes: np.ndarray, cover: np.ndarray, gain: np.ndarray,
              px: np.ndarray) -> None:
        """Paint rows r0..r1 of the full-width stripe arrays (``px``: per-pixel dice)."""
        a, b = max(r0, self.rows[0]), min(r1, self.rows[1])
        if a >= b:
            return
        c0, c1 = self.cols
        rows, cols = np.arange(a, b), np.arange(c0, c1)
        win = (slice(a - r0, b - r0), slice(c0, c1))
        cls, cov, gn, dice = classes[win], cover[win], gain[win], px[win]
        d = self.distance(rows, cols)
        city = d < 1.0
        ri, ci, edge = self.blocks.at(rows, cols)
        hb = self.blocks.value(ri, ci, 0)
        ind_zone = (self.industry.at(rows, cols) + 0.25 * (d - 0.5)) > 0.3
        park = (hb < 0.13) | (self.parks.at(rows, cols) > 0.75)
        urb = city & ~ind_zone & ~park
        ind = city & ind_zone & ~(park & (hb < 0.05))
        grn = city & park & ~ind
        cls[urb], cls[ind], cls[grn] = URBAN, INDUSTRIAL, GREEN
        # housing: roofs, paved yards and gardens mixed at pixel level, denser in the centre
        garden = dice < np.clip(0.15 + 0.3 * d, 0.15, 0.4)
        roof = dice > 0.55 - 0.1 * (d < 0.4)
        red = self.blocks.value(ri, ci, 1) < 0.55
        m = np.where(garden, np.where(dice < 0.06, _M8["deciduous"], _M8["grass"]),
                     np.where(roof, np.where(red, _M8["roof_red"], _M8["roof_grey"]), _M8["asphalt"]))
        cov[urb] = m[urb]
        # industry: one large hall per block on paved lots
        hall = (edge > 2.5 + 0.9 * self.blocks.value(ri, ci, 2)) & (self.blocks.value(ri, ci, 3) < 0.85)
        bright = self.blocks.value(ri, ci, 4) < 0.5
        m = np.where(hall, np.where(bright, _M8["roof_bright"], _M8["roof_grey"]),
                     np.where(dice < 0.06, _M8["grass"], _M8["asphalt"]))
        cov[ind] = m[ind]
        # parks: lawns with clumps of trees and a few paths
        m = np.where(self.trees.at(rows, cols) > 0.15, _M8["deciduous"], _M8["grass"])
        cov[grn] = m[grn]
        cov[grn & (dice > 0.985)] = _M8["asphalt"]
        cov[city & (edge < 1.0) & ~grn] = _M8["asphalt"]  # streets
        gn[city] = (1.0 + 0.08 * (self.blocks.value(ri, ci, 5) - 0.5))[city]


class River:
    """A meandering river across the scene with reed banks and floodplain marshes."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, city: City) -> None:
        n = max(h, w)
        self.w, self.city = w, city
        amp, wl, ph = rng.uniform(0.05, 0.12) * h, rng.uniform(0.6, 1.2) * w, rng.uniform(0, 6.28)
        x = np.arange(w)
        meander = Noise(rng, n, 300).at(np.zeros(1, np.int64), x)[0]
        self.yc = (city.cy + amp * np.sin(2 * np.pi * x / wl + ph) + 25 * meander).astype(np.float32)
        self.stretch = np.sqrt(1 + np.gradient(self.yc) ** 2).astype(np.float32)
        self.width = np.float32(rng.uniform(5, 7.5))
        self.bank, self.reeds, self.marsh = Noise(rng, n, 60), Noise(rng, n, 25), Noise(rng, n, 45)
        self.reach = min(220.0, 0.1 * h)

    def paint(self, r0: int, r1: int, classes: np.ndarray, cover: np.ndarray, gain: np.ndarray,
              px: np.ndarray) -> None:
        if r1 + self.reach + 40 < self.yc.min() or r0 - self.reach - 40 > self.yc.max():
            return
        rows, cols = np.arange(r0, r1), np.arange(self.w)
        dist = np.abs(rows.astype(np.float32)[:, None] - self.yc[None, :]) / self.stretch[None, :]
        wet = (dist < self.width + 6 + 12 * (self.bank.at(rows, cols) + 0.5)) & (self.reeds.at(rows, cols) > -0.2)
        wet |= (dist < self.reach) & (self.marsh.at(rows, cols) > 0.5)
        wet &= self.city.distance(rows, cols) > 1.05  # no marsh inside the city
        set_wetland(classes, cover, gain, wet, px)
        river = dist < self.width
        classes[river], cover[river], gain[river] = WATER, _M8["water_turbid"], 1.0


def set_wetland(classes: np.ndarray, cover: np.ndarray, gain: np.ndarray, where: np.ndarray,
                px: np.ndarray) -> None:
    """Reed, wet meadow and pools on ``where`` (not over open water)."""
    where = where & (classes != WATER)
    classes[where] = WETLAND
    dice = px[where]
    cover[where] = np.where(dice < 0.55, _M8["reed"], np.where(dice < 0.9, _M8["grass"], _M8["water"]))
    gain[where] = 1.0


def _stripes(h: int, w: int, seed: int) -> Iterator[tuple[int, int, np.ndarray]]:
    for k, r0 in enumerate(range(0, h, STRIPE)):
        r1 = min(h, r0 + STRIPE)
        yield r0, r1, _rng(seed, 100 + k).random((r1 - r0, w), dtype=np.float32)


def blob(rng: np.random.Generator, shape: tuple[int, int], cy: float, cx: float, radius: float,
          squash: float, rough: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """A window around (cy, cx) and the normalised radius of a ragged ellipse in it."""
    win, wy, wx = window(shape, cy, cx, 2.2 * radius)
    r = np.sqrt(wy**2 + (wx * squash) ** 2) / np.float32(radius)
    return win, r + rough * Noise(rng, max(r.shape), radius / 2).grid(*r.shape)


def build_ground(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class map (uint8 1..8), material map (uint8) and brightness gain (float32), h x w."""
    n, shape = max(h, w), (h, w)
    rng = _rng(seed, 1)
    fields = Parcels(rng, n, rng.uniform(-0.5, 0.5), (25, 70), (7, 32), 12)
    woods, kind = Fbm(rng, n, 140), Noise(rng, n, 220)
    woods_cut = np.quantile(woods.at(np.arange(0, h, 7), np.arange(0, w, 7)), 0.78)
    city = City(rng, h, w)
    river = River(rng, h, w, city)
    texture = Fbm(rng, n, 12, 2)
    crops = np.array([M["crop_green"], M["crop_ripe"], M["bare_soil"], M["grass"], M["crop_young"]], np.uint8)
    classes = np.full(shape, AGRI, np.uint8)
    cover = np.empty(shape, np.uint8)
    gain = np.empty(shape, np.float32)
    cols = np.arange(w)
    for r0, r1, px in _stripes(h, w, seed):  # fields, forest, city
        rows, cls, cov, gn = np.arange(r0, r1), classes[r0:r1], cover[r0:r1], gain[r0:r1]
        ri, ci, edge = fields.at(rows, cols)
        cov[:] = crops[np.searchsorted(np.array([0.3, 0.5, 0.65, 0.82], np.float32), fields.value(ri, ci, 0))]
        cov[edge < 0.9] = M["grass"]
        gn[:] = 0.88 + 0.24 * fields.value(ri, ci, 1)
        forest = woods.at(rows, cols) > woods_cut
        cls[forest] = FOREST
        cov[forest] = np.where(kind.at(rows, cols)[forest] > 0, _M8["conifer"], _M8["deciduous"])
        cov[forest & (px < 0.04)] = M["grass"]
        city.paint(r0, r1, cls, cov, gn, px)
    area = h * w / 1e6
    for _ in range(max(1, round(2 * area))):  # mines and dumps on the city's outskirts
        ang, dist = rng.uniform(0, 2 * np.pi), city.radius * rng.uniform(0.85, 1.25)
        win, r = blob(rng, shape, city.cy + dist * np.sin(ang), city.cx + dist * np.cos(ang),
                       rng.uniform(22, 60), rng.uniform(0.6, 1.4), 0.35)
        pit = r < 1.0
        terraces = np.array([M["sand"], M["bare_soil"], M["spoil"]], np.uint8)
        classes[win][pit], gain[win][pit] = MINE, 1.0
        cover[win][pit] = terraces[(np.floor(r[pit] * 6) % 3).astype(np.int64)]
    for r0, r1, px in _stripes(h, w, seed):
        river.paint(r0, r1, classes[r0:r1], cover[r0:r1], gain[r0:r1], px)
    for _ in range(max(1, round(2.5 * area))):  # lakes in the countryside, with reed belts
        for _ in range(20):
            ly, lx = rng.uniform(0.05, 0.95, 2) * np.array(shape)
            if np.hypot(ly - city.cy, lx - city.cx) > city.radius * 0.9:
                break
        win, r = blob(rng, shape, ly, lx, rng.uniform(12, 40), rng.uniform(1.0, 1.6), 0.25)
        reeds = (r >= 1.0) & (r < 1.7) & (Noise(rng, max(r.shape), 10).grid(*r.shape) > -0.3)
        set_wetland(classes[win], cover[win], gain[win], reeds, rng.random(r.shape, dtype=np.float32))
        lake = r < 1.0
        classes[win][lake], cover[win][lake], gain[win][lake] = WATER, M["water"], 1.0
    for r0 in range(0, h, STRIPE):
        r1 = min(h, r0 + STRIPE)
        gain[r0:r1] *= 1.0 + TEXTURE[cover[r0:r1]] * texture.at(np.arange(r0, r1), cols)
    return classes, cover, gain
