"""Writing a synthetic landscape as a Sentinel-2 L2A SAFE folder (used by :mod:`s2pipe.synth.product`).

Band files are lossless, tiled JPEG2000 (GDAL's JP2OpenJPEG) on the 10/20/60 m grids; the
20 m and 60 m bands are block means of the 10 m reflectance, SCL is sampled at block
centres. Metadata comes from :mod:`s2pipe.synth.metadata` and lists exactly the files written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from s2pipe.raster import profiles
from s2pipe.sentinel2.facts import BANDS, DEFAULT_OFFSET_N0400, NODATA_DN, QUANTIFICATION, SATURATED_DN, has_offset
from s2pipe.synth.landscape import Landscape, band_reflectance
from s2pipe.synth.manifest import manifest
from s2pipe.synth.metadata import ProductNames, mtd_msil2a, mtd_tl
from s2pipe.synth.terrain import Noise

log = logging.getLogger(__name__)

RESOLUTIONS = (10, 20, 60)
FACTORS = {10: 1, 20: 2, 60: 6}  # 10 m pixels per pixel side at each resolution
STRIPE = 1020  # 10 m rows resampled at a time; a multiple of 6 so no 20/60 m block straddles two


def band_files(baseline: str) -> dict[int, tuple[str, ...]]:
    """Band file names per resolution that a real L2A product of ``baseline`` holds."""
    r20: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL", "AOT",
                            "WVP", "TCI")
    if has_offset(baseline):
        r20 = ("B01",) + r20
    return {10: ("B02", "B03", "B04", "B08", "AOT", "WVP", "TCI"),
            20: r20,
            60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12",
                 "SCL", "AOT", "WVP", "TCI")}


def dn_from_reflectance(refl: np.ndarray, valid: np.ndarray, baseline: str) -> np.ndarray:
    """uint16 DN of the baseline's convention; 0 (no data) outside ``valid``."""
    offset = -DEFAULT_OFFSET_N0400 if has_offset(baseline) else 0
    dn = np.rint(refl * float(QUANTIFICATION))
    np.clip(dn, 1, SATURATED_DN + DEFAULT_OFFSET_N0400, out=dn)
    dn += offset
    out = dn.astype(np.uint16)
    out[~valid] = NODATA_DN
    return out


def _block_sum(a: np.ndarray, f: int) -> np.ndarray:
    rows, cols = np.arange(0, a.shape[0], f), np.arange(0, a.shape[1], f)
    return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)


def block_mean(a: np.ndarray, valid: np.ndarray, f: int,
               count: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels in f x f blocks (edge blocks may be partial) and block validity.

    ``count`` (valid pixels per block) may be passed in when it is reused across bands.
    """
    if f == 1:
        return a, valid
    if count is None:
        count = _block_sum(valid.astype(np.float32), f)
    total = _block_sum(a * valid, f)
    return total / np.maximum(count, 1), count > 0


def _subsample(a: np.ndarray, f: int) -> np.ndarray:
    """Nearest-neighbour value at the centre of each f x f block (for class-like rasters)."""
    if f == 1:
        return a
    n = a.shape[0]
    idx = np.minimum(np.arange(-(-n // f)) * f + f // 2, n - 1)
    return a[np.ix_(idx, idx)]


def _tci(refl: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """8-bit true-colour value: reflectance 0..0.2 stretched to 1..255, 0 = no data."""
    v = np.clip(np.rint(refl * (255 / 0.2)), 1, 255).astype(np.uint8)
    v[~valid] = 0
    return v


class _Writer:
    """Writes the band files of one granule and remembers their names."""

    def __init__(self, safe: Path, names: ProductNames, origin: tuple[float, float], epsg: int,
                 progress: Callable[[int], None] | None) -> None:
        from rasterio.crs import CRS

        self.safe, self.names, self.origin = safe, names, origin
        self.crs = CRS.from_epsg(epsg)
        self.written: list[str] = []
        self.masks: list[tuple[str, str]] = []
        self.progress = progress

    def write(self, band: str, res: int, data: np.ndarray) -> None:
        """Write one IMG_DATA band file (listed in MTD_MSIL2A.xml)."""
        rel = self.names.band_file(band, res)
        self._jp2(self.safe / f"{rel}.jp2", res, data)
        self.written.append(rel)

    def write_mask(self, kind: str, res: int, data: np.ndarray) -> None:
        """Write a QI_DATA mask (MSK_CLDPRB, MSK_SNWPRB), listed in MTD_TL.xml."""
        rel = self.names.mask_file(kind, res)
        self._jp2(self.safe / rel, res, data)
        self.masks.append((kind, rel))

    def _jp2(self, path: Path, res: int, data: np.ndarray) -> None:
        import rasterio
        from rasterio.transform import from_origin

        path.parent.mkdir(parents=True, exist_ok=True)
        arr = data if data.ndim == 3 else data[None]
        block = min(1024, arr.shape[2])
        with profiles.gdal_write_errors(path), \
                rasterio.open(path, "w", **profiles.JP2_BAND, width=arr.shape[2], height=arr.shape[1],
                              count=arr.shape[0], dtype=arr.dtype, crs=self.crs,
                              transform=from_origin(*self.origin, res, res),
                              BLOCKXSIZE=block, BLOCKYSIZE=block) as dst:
            dst.write(arr)
        if self.progress:
            self.progress(1)


def _smooth(field: Noise, base: float, amp: float, land: Landscape, r0: int, r1: int) -> np.ndarray:
    """``base + amp * field`` over the product's rows ``r0 .. r1 - 1`` (aerosol and water vapour maps),
    the field laid out on the grid the product lies in."""
    cols = np.arange(land.col, land.col + land.size)
    return base + amp * field.at(np.arange(land.row + r0, land.row + r1), cols)


Target = tuple[int, Callable[[np.ndarray, np.ndarray], np.ndarray], np.ndarray]


def _resample(land: Landscape, values: Callable[[int, int], np.ndarray], targets: list[Target],
              counts: dict[int, np.ndarray]) -> None:
    """Fill each (resolution, encode, out) target from 10 m ``values(r0, r1)``, stripe by stripe."""
    n = land.size
    for r0 in range(0, n, STRIPE):
        r1 = min(n, r0 + STRIPE)
        plane, valid = values(r0, r1), land.valid[r0:r1]
        for res, encode, out in targets:
            f = FACTORS[res]
            rows = slice(r0 // f, -(-r1 // f))
            mean, ok = block_mean(plane, valid, f, counts[res][rows] if f > 1 else None)
            out[rows] = encode(mean, ok)


def _write_bands(w: _Writer, land: Landscape, baseline: str) -> None:
    files = band_files(baseline)
    n = land.size
    size = {r: -(-n // f) for r, f in FACTORS.items()}
    counts = {r: np.concatenate([_block_sum(land.valid[r0:r0 + STRIPE].astype(np.float32), f)
                                 for r0 in range(0, n, STRIPE)]) for r, f in FACTORS.items() if f > 1}
    tci = {r: np.zeros((3, size[r], size[r]), np.uint8) for r in RESOLUTIONS}
    rgb = {"B04": 0, "B03": 1, "B02": 2}

    def dn(mean: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return dn_from_reflectance(mean, ok, baseline)

    for band in BANDS:
        out = {r: np.zeros((size[r], size[r]), np.uint16) for r in RESOLUTIONS if band in files[r]}
        targets: list[Target] = [(r, dn, a) for r, a in out.items()]
        if band in rgb:
            targets += [(r, _tci, tci[r][rgb[band]]) for r in RESOLUTIONS]
        _resample(land, partial(band_reflectance, land, band), targets, counts)
        for res, arr in out.items():
            w.write(band, res, arr)
    rng = np.random.default_rng([land.seed, 21, *land.tag])
    side = max(land.grid.cover.shape)
    for name, field, base, amp in (("AOT", Noise(rng, side, 400), 0.11, 0.02),
                                   ("WVP", Noise(rng, side, 600), 1.9, 0.25)):
        out = {r: np.zeros((size[r], size[r]), np.uint16) for r in RESOLUTIONS}
        _resample(land, partial(_smooth, field, base, amp, land),
                  [(r, _quantified, a) for r, a in out.items()], counts)
        for res, arr in out.items():
            w.write(name, res, arr)
    scl = land.scl()
    cloud = {r: np.zeros((size[r], size[r]), np.uint8) for r in (20, 60)}
    _resample(land, lambda r0, r1: land.cloud[r0:r1].astype(np.float32) * np.float32(100 / 255),
              [(r, lambda mean, ok: np.rint(mean).astype(np.uint8), a) for r, a in cloud.items()], counts)
    for res in (20, 60):
        w.write("SCL", res, _subsample(scl, FACTORS[res]))
        w.write_mask("MSK_CLDPRB", res, cloud[res])
        w.write_mask("MSK_SNWPRB", res, np.zeros_like(cloud[res]))
    for res in RESOLUTIONS:
        w.write("TCI", res, tci[res])


def _quantified(mean: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """AOT/WVP as written by ESA: value x 1000 in uint16, 0 = no data."""
    q = np.rint(mean * 1000).astype(np.uint16)
    q[~ok] = 0
    return q


def _ordered(files: list[str], baseline: str) -> list[str]:
    """Band files grouped by resolution, each group in the order real products list them."""
    order = band_files(baseline)

    def key(rel: str) -> tuple[int, int]:
        band, res = rel.rsplit("_", 2)[-2:]
        r = int(res.rstrip("m"))
        return RESOLUTIONS.index(r), order[r].index(band)

    return sorted(files, key=key)


def _footprint(origin: tuple[float, float], extent: float, epsg: int) -> list[tuple[float, float]]:
    from rasterio.warp import transform

    x0, y0 = origin
    xs, ys = [x0, x0 + extent, x0 + extent, x0], [y0, y0, y0 - extent, y0 - extent]
    lon, lat = transform(f"EPSG:{epsg}", "EPSG:4326", xs, ys)
    return list(zip(lon, lat))


def write_safe(safe: Path, land: Landscape, names: ProductNames, *, origin: tuple[float, float],
               epsg: int, progress: Callable[[int], None] | None = None) -> list[str]:
    """Write the whole SAFE folder for ``land`` into ``safe``; returns the band files (MTD names)."""
    from pyproj import CRS  # (comes with geopandas)

    w = _Writer(safe, names, origin, epsg, progress)
    _write_bands(w, land, names.baseline)
    granule = safe / "GRANULE" / names.granule
    for sub in ("QI_DATA", "AUX_DATA"):
        (granule / sub).mkdir(parents=True, exist_ok=True)
    scl = land.scl()
    percent = list(np.bincount(scl.ravel(), minlength=12)[:12] / scl.size * 100)
    valid = max(100.0 - percent[0], 1e-9)
    percent = [percent[0]] + [p * 100.0 / valid for p in percent[1:]]  # QI over valid pixels
    sizes = {r: -(-land.size * 10 // r) for r in RESOLUTIONS}
    cs_name = CRS.from_epsg(epsg).name
    (granule / "MTD_TL.xml").write_text(mtd_tl(names, epsg, cs_name, *origin, sizes, percent, w.masks),
                                        encoding="utf-8")
    (safe / "MTD_MSIL2A.xml").write_text(
        mtd_msil2a(names, _ordered(w.written, names.baseline), _footprint(origin, land.size * 10.0, epsg),
                   percent), encoding="utf-8")
    (safe / "manifest.safe").write_text(manifest(safe, names), encoding="utf-8")
    return w.written
