"""``s2pipe synth``: a synthetic Sentinel-2 L2A product, its land-cover vectors and truth raster.

The product is a SAFE folder laid out and named like a real one (JPEG2000 band files at
10/20/60 m, ``MTD_MSIL2A.xml``, ``MTD_TL.xml``, ``manifest.safe``) that GDAL's SENTINEL2
driver opens; its pixels come from :mod:`s2pipe.synth.landscape`. DNs follow the baseline:
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

from s2pipe.errors import OptionError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster import profiles
from s2pipe.raster.classmap import apply_legend, atomic_class_map, sidecar_paths, write_sidecars
from s2pipe.synth.landscape import Landscape, make_landscape
from s2pipe.synth.metadata import ProductNames
from s2pipe.synth.safe import write_safe

log = logging.getLogger(__name__)

LABELS_NAME = "landcover.gpkg"
LABELS_LAYER = "landcover"
TRUTH_NAME = "truth.tif"
MIN_SIZE, MAX_SIZE = 256, 10980
LABELLED_BOX = (0.09, 0.91)  # the labelled "city area": central 82% x 82% of the scene


@dataclass
class SynthResult:
    """What :func:`synth_product` wrote.

    ``band_files``: image files listed in MTD_MSIL2A.xml; ``polygons``: features in the
    GeoPackage; ``class_pixels``: truth pixels per class value over the whole scene;
    ``cloud_percent``/``nodata_percent``: of the scene's pixels (SCL 8/9, no-data strip).
    """

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


def write_truth(path: Path, land: Landscape, *, origin: tuple[float, float], epsg: int) -> None:
    """The full-scene truth raster: uint8 classes 1..8, nodata 0, carrying the legend."""
    import rasterio
    from rasterio.transform import from_origin

    with profiles.gdal_write_errors(path), \
            rasterio.open(path, "w", **profiles.CLASS_RASTER, width=land.size, height=land.size,
                          count=1, crs=f"EPSG:{epsg}", transform=from_origin(*origin, 10, 10)) as dst:
        dst.write(land.classes, 1)
        apply_legend(dst, DEFAULT_LEGEND)
    write_sidecars(path, DEFAULT_LEGEND)


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
            with profiles.gdal_env():  # PROJ's complaint goes to the log, not to stderr
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
    for p in (safe_path, labels_path, truth_path, *sidecar_paths(truth_path)):
        check_writable(p, overwrite=overwrite)
    log.info("building a %d x %d px landscape (seed %d)", size, size, seed)
    land = make_landscape(size, seed)
    with ExitStack() as stack:
        tmp_safe = stack.enter_context(atomic_output(safe_path, overwrite=overwrite, directory=True))
        tmp_truth = stack.enter_context(atomic_class_map(truth_path, overwrite=overwrite))
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
