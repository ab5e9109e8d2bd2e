"""``s2pipe synth``: a synthetic Sentinel-2 L2A product, its land-cover vectors and truth raster.

The product is a SAFE folder laid out and named like a real one (JPEG2000 band files at
10/20/60 m, ``MTD_MSIL2A.xml``, ``MTD_TL.xml``, ``manifest.safe``) that GDAL's SENTINEL2
driver opens; its pixels come from :mod:`s2pipe.landscape`. DNs follow the baseline:
``DN = round(10000 * reflectance)`` before 04.00 and ``+ 1000`` from 04.00 on, so the
same seed gives the same ground in every baseline.
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import OptionError
from .landscape import BANDS, Landscape, band_reflectance, make_landscape
from .legend import DEFAULT_LEGEND, colormap
from .outputs import atomic_output, check_writable
from .terrain import Noise
from .safe_xml import ProductNames, baseline_number, manifest, mtd_msil2a, mtd_tl

log = logging.getLogger(__name__)

RESOLUTIONS = (10, 20, 60)
LABELS_NAME = "landcover.gpkg"
LABELS_LAYER = "landcover"
TRUTH_NAME = "truth.tif"
JP2_OPTIONS = {"QUALITY": "100", "REVERSIBLE": "YES", "YCC": "NO"}
MIN_SIZE, MAX_SIZE = 256, 10980
LABELLED_BOX = (0.09, 0.91)  # the labelled "city area": central 82% x 82% of the scene


def band_files(baseline: str) -> dict[int, tuple[str, ...]]:
    """Band file names per resolution that a real L2A product of ``baseline`` holds."""
    r20 = ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL", "AOT", "WVP", "TCI")
    if baseline_number(baseline) >= 4.0:
        r20 = ("B01",) + r20
    return {10: ("B02", "B03", "B04", "B08", "AOT", "WVP", "TCI"),
            20: r20,
            60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12",
                 "SCL", "AOT", "WVP", "TCI")}


@dataclass
class SynthResult:
    """What :func:`synth_product` wrote."""

    safe_path: Path
    labels_path: Path
    truth_path: Path
    product_name: str
    size: int
    seed: int
    baseline: str
    epsg: int
    label_epsg: int
    band_files: int
    polygons: int
    class_pixels: dict[int, int] = field(default_factory=dict)
    cloud_percent: float = 0.0
    nodata_percent: float = 0.0


def dn_from_reflectance(refl: np.ndarray, valid: np.ndarray, baseline: str) -> np.ndarray:
    """uint16 DN of the baseline's convention; 0 (no data) outside ``valid``."""
    offset = 1000 if baseline_number(baseline) >= 4.0 else 0
    dn = np.rint(refl * 10000.0)
    np.clip(dn, 1, 65535 - 1000, out=dn)
    dn += offset
    out = dn.astype(np.uint16)
    out[~valid] = 0
    return out


def block_mean(a: np.ndarray, valid: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels in f x f blocks (edge blocks may be partial) and block validity."""
    if f == 1:
        return a, valid
    n = a.shape[0]
    m = -(-n // f)
    w = valid.astype(np.float32)
    s = a * w
    if m * f != n:
        s = np.pad(s, ((0, m * f - n), (0, m * f - n)))
        w = np.pad(w, ((0, m * f - n), (0, m * f - n)))
    total = s.reshape(m, f, m, f).sum(axis=(1, 3))
    count = w.reshape(m, f, m, f).sum(axis=(1, 3))
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
        with rasterio.open(path, "w", driver="JP2OpenJPEG", width=arr.shape[2], height=arr.shape[1],
                           count=arr.shape[0], dtype=arr.dtype, crs=self.crs,
                           transform=from_origin(*self.origin, res, res),
                           BLOCKXSIZE=block, BLOCKYSIZE=block, **JP2_OPTIONS) as dst:
            dst.write(arr)
        if self.progress:
            self.progress(1)


def _write_bands(w: _Writer, land: Landscape, baseline: str) -> None:
    files = band_files(baseline)
    factors = {10: 1, 20: 2, 60: 6}
    tci: dict[int, list[np.ndarray]] = {r: [] for r in RESOLUTIONS}
    for band in BANDS:
        refl = band_reflectance(land, band)
        for res in RESOLUTIONS:
            if band not in files[res] and not (band in ("B02", "B03", "B04")):
                continue
            plane, ok = block_mean(refl, land.valid, factors[res])
            if band in files[res]:
                w.write(band, res, dn_from_reflectance(plane, ok, baseline))
            if band in ("B04", "B03", "B02"):
                tci[res].insert(0, _tci(plane, ok))  # B04, B03, B02 order (R, G, B)
        del refl
    rng = np.random.default_rng([land.seed, 21])
    aot = 0.11 + 0.02 * Noise(rng, land.size, 400).grid(land.size, land.size)
    wvp = 1.9 + 0.25 * Noise(rng, land.size, 600).grid(land.size, land.size)
    scl = land.scl()
    for res in RESOLUTIONS:
        f = factors[res]
        a, ok = block_mean(aot, land.valid, f)
        v, _ = block_mean(wvp, land.valid, f)
        if res in (20, 60):
            w.write("SCL", res, _subsample(scl, f))
            cloud, _ = block_mean(land.cloud.astype(np.float32) * np.float32(100 / 255), land.valid, f)
            w.write_mask("MSK_CLDPRB", res, np.rint(cloud).astype(np.uint8))
            w.write_mask("MSK_SNWPRB", res, np.zeros_like(cloud, dtype=np.uint8))
        for name, arr in (("AOT", a), ("WVP", v)):
            q = np.rint(arr * 1000).astype(np.uint16)
            q[~ok] = 0
            w.write(name, res, q)
        w.write("TCI", res, np.stack(tci[res]))


def _footprint(origin: tuple[float, float], extent: float, epsg: int) -> list[tuple[float, float]]:
    from rasterio.warp import transform

    x0, y0 = origin
    xs, ys = [x0, x0 + extent, x0 + extent, x0], [y0, y0, y0 - extent, y0 - extent]
    lon, lat = transform(f"EPSG:{epsg}", "EPSG:4326", xs, ys)
    return list(zip(lon, lat))


def write_safe(safe: Path, land: Landscape, names: ProductNames, *, origin: tuple[float, float],
               epsg: int, progress: Callable[[int], None] | None = None) -> list[str]:
    """Write the whole SAFE folder for ``land`` into ``safe``; returns the band files (MTD names)."""
    from rasterio.crs import CRS

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
    cs_name = CRS.from_epsg(epsg).to_wkt().split('"')[1]
    (granule / "MTD_TL.xml").write_text(mtd_tl(names, epsg, cs_name, *origin, sizes, percent, w.masks),
                                        encoding="utf-8")
    (safe / "MTD_MSIL2A.xml").write_text(
        mtd_msil2a(names, w.written, _footprint(origin, land.size * 10.0, epsg), percent), encoding="utf-8")
    (safe / "manifest.safe").write_text(manifest(safe, names), encoding="utf-8")
    return w.written


def write_truth(path: Path, land: Landscape, *, origin: tuple[float, float], epsg: int) -> None:
    """The full-scene truth raster: uint8 classes 1..8, nodata 0, with the legend's colours."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=land.size, height=land.size, count=1,
                       dtype="uint8", nodata=0, crs=f"EPSG:{epsg}", transform=from_origin(*origin, 10, 10),
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(land.classes, 1)
        dst.write_colormap(1, colormap())
        dst.update_tags(1, **{f"CLASS_{c.value}": c.name for c in DEFAULT_LEGEND})
        dst.set_band_description(1, "land cover class (0 = no data)")


def write_labels(path: Path, land: Landscape, *, origin: tuple[float, float], epsg: int,
                 label_epsg: int) -> int:
    """Truth polygons of the central labelled area, in ``label_epsg``; returns their count."""
    import geopandas as gpd
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import from_origin
    from shapely.geometry import shape

    n = land.size
    lo, hi = int(LABELLED_BOX[0] * n), int(LABELLED_BOX[1] * n)
    mask = np.zeros((n, n), bool)
    mask[lo:hi, lo:hi] = True
    mask &= land.classes > 0
    geoms, values = [], []
    for geom, value in shapes(land.classes, mask=mask, connectivity=4, transform=from_origin(*origin, 10, 10)):
        geoms.append(shape(geom))
        values.append(int(value))
    simplified = shapely.coverage_simplify(np.array(geoms, dtype=object), tolerance=5.0)
    names = {c.value: c.name for c in DEFAULT_LEGEND}
    gdf = gpd.GeoDataFrame({"class": np.array(values, dtype=np.int32),
                            "name": [names[v] for v in values]},
                           geometry=list(simplified), crs=f"EPSG:{epsg}").to_crs(epsg=label_epsg)
    gdf.to_file(path, layer=LABELS_LAYER, driver="GPKG")
    return len(gdf)


def _check_crs(epsg: int, label_epsg: int) -> None:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    for code, what in ((epsg, "--epsg"), (label_epsg, "--label-epsg")):
        try:
            crs = CRS.from_epsg(code)
        except CRSError:
            raise OptionError(f"{what} {code}: EPSG:{code} is not a known CRS; give a valid EPSG code") from None
        if code == epsg and not (crs.is_projected and crs.linear_units in ("metre", "meter")):
            raise OptionError(f"{what} {code}: the image CRS must be projected in metres "
                              f"(e.g. 32633, WGS 84 / UTM zone 33N)")


def synth_product(out_dir: str | Path, *, size: int = 2560, seed: int = 0, baseline: str = "02.08",
                  origin: tuple[float, float] = (599980.0, 5700000.0), epsg: int = 32633,
                  label_epsg: int = 2180, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> SynthResult:
    """Write a synthetic L2A SAFE, ``landcover.gpkg`` and ``truth.tif`` into ``out_dir``.

    ``size`` is the 10 m grid in pixels (256..10980), the same ``seed`` gives the same
    ground in every ``baseline`` ("NN.NN"). Nothing is left behind on failure; existing
    outputs are refused unless ``overwrite``. ``progress`` is called once per file written.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise OptionError(f"size {size} is out of range; choose {MIN_SIZE}..{MAX_SIZE} pixels")
    if not re.fullmatch(r"\d\d\.\d\d", baseline):
        raise OptionError(f"baseline {baseline!r} is not of the form NN.NN (e.g. 02.08 or 05.09)")
    _check_crs(epsg, label_epsg)
    out_dir = Path(out_dir)
    names = ProductNames.for_baseline(baseline)
    safe_path = out_dir / f"{names.product}.SAFE"
    labels_path, truth_path = out_dir / LABELS_NAME, out_dir / TRUTH_NAME
    for p in (safe_path, labels_path, truth_path):
        check_writable(p, overwrite=overwrite)
    log.info("building a %d x %d px landscape (seed %d)", size, size, seed)
    land = make_landscape(size, seed)
    with ExitStack() as stack:
        tmp_safe = stack.enter_context(atomic_output(safe_path, overwrite=overwrite, directory=True))
        tmp_truth = stack.enter_context(atomic_output(truth_path, overwrite=overwrite))
        tmp_labels = stack.enter_context(atomic_output(labels_path, overwrite=overwrite))
        written = write_safe(tmp_safe, land, names, origin=origin, epsg=epsg, progress=progress)
        write_truth(tmp_truth, land, origin=origin, epsg=epsg)
        polygons = write_labels(tmp_labels, land, origin=origin, epsg=epsg, label_epsg=label_epsg)
    counts = np.bincount(land.classes.ravel(), minlength=9)
    scl = land.scl()
    return SynthResult(safe_path=safe_path, labels_path=labels_path, truth_path=truth_path,
                       product_name=names.product, size=size, seed=seed, baseline=baseline, epsg=epsg,
                       label_epsg=label_epsg, band_files=len(written), polygons=polygons,
                       class_pixels={c: int(counts[c]) for c in range(1, 9)},
                       cloud_percent=round(float(np.isin(scl, (8, 9)).mean() * 100), 3),
                       nodata_percent=round(float((~land.valid).mean() * 100), 3))
