"""The spatial layout of a synthetic scene: fields, forest, city, river, lakes, mines.

Everything is vectorised numpy on the 10 m grid; sizes are in pixels (10 m) so feature
scales stay realistic whatever the scene size, while the city and the count of lakes and
mines grow with the scene. Used by :mod:`s2pipe.landscape`.
"""

from __future__ import annotations

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
_U64 = np.uint64


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([seed, tag])


def hash01(ids: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer id (vectorised)."""
    x = ids.astype(np.int64).view(np.uint64) + _U64(salt * 0x9E3779B97F4A7C15 % 2**64)
    x ^= x >> _U64(31)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(29)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(32)
    return (x >> _U64(11)).astype(np.float64) * (1.0 / 2**53)


def smooth_noise(rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
    """A smooth random field (float32, ~N(0, 0.5)) with features about ``cell`` px wide."""
    g = rng.standard_normal((int(n / cell) + 3, int(n / cell) + 3)).astype(np.float32)
    t = np.arange(n, dtype=np.float32) / cell
    i = t.astype(np.int64)
    f = t - i
    f = f * f * (3 - 2 * f)  # smoothstep
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]  # (n, gw)
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def fbm(rng: np.random.Generator, n: int, cell: float, octaves: int = 3) -> np.ndarray:
    out = smooth_noise(rng, n, cell)
    for k in range(1, octaves):
        out += smooth_noise(rng, n, cell / 2**k) * (0.5**k)
    return out


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n, dtype=np.float32)[:, None]
    x = np.arange(n, dtype=np.float32)[None, :]
    return y, x


def window(n: int, cy: float, cx: float, half: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The part of the grid within ``half`` px of (cy, cx): slices, and y, x relative to it."""
    y0, y1 = int(max(0, cy - half)), int(min(n, cy + half + 1))
    x0, x1 = int(max(0, cx - half)), int(min(n, cx + half + 1))
    y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
    y0, x0 = min(y0, n - 1), min(x0, n - 1)
    y1, x1 = min(max(y1, y0 + 1), n), min(max(x1, x0 + 1), n)
    wy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    wx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    return (slice(y0, y1), slice(x0, x1)), wy, wx


def _strips(rng: np.random.Generator, v: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut coordinate ``v`` into strips of random width in [lo, hi): (index, distance to edge)."""
    vmin, vmax = float(v.min()) - hi, float(v.max()) + hi
    edges = vmin + np.cumsum(rng.integers(lo, hi, size=int((vmax - vmin) / lo) + 2))
    idx = np.searchsorted(edges, v)
    below = edges[np.maximum(idx - 1, 0)]
    dist = np.minimum(v - below, edges[idx] - v)
    return idx, dist


def _parcels(n: int, seed: int, angle: float, lo: int, hi: int, wlo: int, whi: int,
             warp: float) -> tuple[np.ndarray, np.ndarray]:
    """Rectangular parcels in a rotated, slightly warped frame: (parcel id, edge distance)."""
    rng = _rng(seed, 11)
    y, x = grid(n)
    c, s = np.cos(angle), np.sin(angle)
    u = x * c + y * s + smooth_noise(rng, n, 400) * warp
    v = y * c - x * s + smooth_noise(rng, n, 400) * warp
    row, dv = _strips(rng, v, lo, hi)
    u += (hash01(row, seed + 5) * 1000).astype(np.float32)
    col, du = _strips(rng, u, wlo, whi)
    return row.astype(np.int64) * 1_000_003 + col, np.minimum(du, dv)


def build_ground(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class map (uint8 1..8), material map (uint8) and brightness gain (float32)."""
    rng = _rng(seed, 1)
    y, x = grid(n)
    classes = np.full((n, n), AGRI, np.uint8)
    px = _rng(seed, 2).random((n, n), dtype=np.float32)  # per-pixel dice

    # -- fields: parcels of several crops, grass margins
    pid, edge = _parcels(n, seed, rng.uniform(-0.5, 0.5), 25, 70, 7, 32, 12)
    crop = np.array([M["crop_green"], M["crop_ripe"], M["bare_soil"], M["grass"],
                     M["crop_young"]], np.uint8)
    h = hash01(pid, seed + 1)
    cover = crop[np.searchsorted([0.3, 0.5, 0.65, 0.82], h)].astype(np.uint8)
    cover[edge < 0.9] = M["grass"]
    gain = (0.88 + 0.24 * hash01(pid, seed + 2)).astype(np.float32)
    del pid, edge, h

    # -- forest patches
    f = fbm(rng, n, 140)
    forest = f > np.quantile(f[::7, ::7], 0.78)
    kind = smooth_noise(rng, n, 220) > 0
    classes[forest] = FOREST
    cover[forest] = np.where(kind[forest], M["conifer"], M["deciduous"])
    cover[forest & (px < 0.04)] = M["grass"]
    del f, kind, forest

    # -- the city: blocks of housing, industrial estates, parks
    cy, cx = n * rng.uniform(0.45, 0.55), n * rng.uniform(0.45, 0.55)
    radius = min(0.3 * n, 1400.0)
    d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / radius + 0.25 * smooth_noise(rng, n, radius / 3)
    city = d < 1.0
    bid, bedge = _parcels(n, seed + 1, rng.uniform(-0.6, 0.6), 14, 34, 14, 34, 3)
    street = bedge < 1.0
    hb = hash01(bid, seed + 3)
    ind_zone = (smooth_noise(rng, n, radius / 5) + 0.25 * (d - 0.5)) > 0.3
    park = (hb < 0.13) | (smooth_noise(rng, n, 40) > 0.75)
    urb = city & ~ind_zone & ~park
    ind = city & ind_zone & ~(park & (hb < 0.05))
    grn = city & park & ~ind
    classes[urb] = URBAN
    classes[ind] = INDUSTRIAL
    classes[grn] = GREEN
    # housing: roofs, paved yards and gardens mixed at pixel level, denser in the centre
    garden = px < np.clip(0.15 + 0.3 * d, 0.15, 0.4)
    roof = px > 0.55 - 0.1 * (d < 0.4)
    red = hash01(bid, seed + 4) < 0.55
    m_urb = np.where(garden, np.where(px < 0.06, M["deciduous"], M["grass"]),
                     np.where(roof, np.where(red, M["roof_red"], M["roof_grey"]), M["asphalt"]))
    cover[urb] = m_urb[urb]
    # industry: one large hall per block on paved lots
    lu = (hash01(bid, seed + 6) * 0.3).astype(np.float32)
    hall = (bedge > 2.5 + 3 * lu) & (hash01(bid, seed + 7) < 0.85)
    m_ind = np.where(hall, np.where(hash01(bid, seed + 8) < 0.5, M["roof_bright"], M["roof_grey"]),
                     np.where(px < 0.06, M["grass"], M["asphalt"]))
    cover[ind] = m_ind[ind]
    # parks: lawns with clumps of trees and a few paths
    trees = smooth_noise(rng, n, 5) > 0.15
    m_grn = np.where(trees, M["deciduous"], M["grass"])
    cover[grn] = m_grn[grn]
    cover[grn & (px > 0.985)] = M["asphalt"]
    cover[city & street & ~grn] = M["asphalt"]
    gain[city] = 1.0 + 0.08 * (hash01(bid, seed + 9)[city] - 0.5)
    del bid, bedge, street, hb, ind_zone, park, urb, ind, grn, garden, roof, red, m_urb, lu, hall
    del m_ind, trees, m_grn

    # -- mines and dumps: irregular pits with terraces, on the city's outskirts
    area = (n / 1000.0) ** 2
    for k in range(max(1, int(round(2 * area)))):
        ang = rng.uniform(0, 2 * np.pi)
        dist = radius * rng.uniform(0.85, 1.25)
        mr = rng.uniform(22, 60)
        win, wy, wx = window(n, cy + dist * np.sin(ang), cx + dist * np.cos(ang), 2.2 * mr)
        r = np.sqrt(wy**2 + (wx * rng.uniform(0.6, 1.4)) ** 2) / mr
        r = r + 0.35 * smooth_noise(rng, max(r.shape), mr / 2)[:r.shape[0], :r.shape[1]]
        pit = r < 1.0
        ring = (np.floor(r * 6) % 3).astype(np.int64)
        mats = np.array([M["sand"], M["bare_soil"], M["spoil"]], np.uint8)
        classes[win][pit] = MINE
        cover[win][pit] = mats[ring[pit]]
        gain[win][pit] = 1.0
    # -- the river (through the city) with wetlands on its banks outside the centre
    amp, wl, ph = rng.uniform(0.05, 0.12) * n, rng.uniform(0.6, 1.2) * n, rng.uniform(0, 6.28)
    yc = cy + amp * np.sin(2 * np.pi * x / wl + ph) + 25 * smooth_noise(rng, n, 300)[:1, :]
    slope = np.gradient(yc[0])[None, :]
    dist = np.abs(y - yc) / np.sqrt(1 + slope**2)
    width = rng.uniform(5, 7.5)
    wet_w = 6 + 12 * (smooth_noise(rng, n, 60) + 0.5)
    wet = (dist < width + wet_w) & (smooth_noise(rng, n, 25) > -0.2)
    wet |= (dist < min(220, 0.1 * n)) & (smooth_noise(rng, n, 45) > 0.5)  # floodplain marshes
    wet &= d > 0.7
    _set_wetland(classes, cover, gain, wet, px)
    river = dist < width
    classes[river] = WATER
    cover[river] = M["water_turbid"]
    gain[river] = 1.0
    # -- lakes in the countryside, with reed belts
    for k in range(max(1, int(round(2.5 * area)))):
        for _ in range(20):
            ly, lx = rng.uniform(0.05, 0.95, 2) * n
            if np.hypot(ly - cy, lx - cx) > radius * 0.9:
                break
        lr = rng.uniform(12, 40)
        win, wy, wx = window(n, ly, lx, 2.2 * lr)
        r = np.sqrt((wy / rng.uniform(0.6, 1.0)) ** 2 + wx**2) / lr
        r = r + 0.25 * smooth_noise(rng, max(r.shape), lr / 2)[:r.shape[0], :r.shape[1]]
        reeds = (r < 1.7) & (r >= 1.0) & (smooth_noise(rng, max(r.shape), 10)[:r.shape[0], :r.shape[1]] > -0.3)
        _set_wetland(classes[win], cover[win], gain[win], reeds, px[win])
        lake = r < 1.0
        classes[win][lake] = WATER
        cover[win][lake] = M["water"]
        gain[win][lake] = 1.0
    gain *= 1.0 + TEXTURE[cover] * fbm(rng, n, 12, 2)
    return classes, cover, gain


def _set_wetland(classes: np.ndarray, cover: np.ndarray, gain: np.ndarray, where: np.ndarray,
                 px: np.ndarray) -> None:
    where = where & (classes != WATER)
    classes[where] = WETLAND
    cover[where] = np.where(px[where] < 0.55, M["reed"],
                            np.where(px[where] < 0.9, M["grass"], M["water"]))
    gain[where] = 1.0
