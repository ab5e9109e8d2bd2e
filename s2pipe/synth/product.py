"""``s2pipe synth``: a synthetic Sentinel-2 L2A product, its land-cover vectors and truth raster.

The product is a SAFE folder laid out and named like a real one (JPEG2000 band files at
10/20/60 m, ``MTD_MSIL2A.xml``, ``MTD_TL.xml``, ``manifest.safe``) that GDAL's SENTINEL2
driver opens; its pixels come from :mod:`s2pipe.synth.landscape`. DNs follow the baseline:
``DN = round(10000 * reflectance)`` before 04.00 and ``+ 1000`` from 04.00 on, so the
same seed gives the same ground in every baseline.

Products of a region are windows of one *world* (a box in one CRS where a seed's ground is
laid out once): given the same seed and world, neighbouring tiles and other dates show the
same ground where they overlap, and the clouds of a date are the same in every tile of it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from s2pipe.errors import OptionError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster import profiles
from s2pipe.raster.maps import apply_legend, atomic_class_map, sidecar_paths, write_sidecars
from s2pipe.synth.changes import CHANGE_TRUTH_NAME, CHANGES_NAME, apply_changes, before_classes, write_change_truth
from s2pipe.synth.defaults import DEFAULT_DATE, FORMATS, ProductFormat
from s2pipe.synth.grid import DEFAULT_EPSG, DEFAULT_ORIGIN, PIXEL, WorldGrid, mgrs_tile
from s2pipe.synth.landscape import Landscape, make_layers, place_in_world
from s2pipe.synth.metadata import ProductNames
from s2pipe.synth.safe import write_safe
from s2pipe.synth.stac import item_id, write_stac_item

log = logging.getLogger(__name__)

LABELS_NAME = "landcover.gpkg"
LABELS_LAYER = "landcover"
TRUTH_NAME = "truth.tif"
MIN_SIZE, MAX_SIZE = 256, 10980
MAX_WORLD = 4 * MAX_SIZE  # px a side: a world of up to 4 x 4 tiles
FIRST_DATE, LAST_DATE = dt.date(2017, 3, 7), dt.date(2099, 12, 31)  # from Sentinel-2B's launch on
LABELLED_BOX = (0.09, 0.91)  # the labelled "city area": central 82% x 82% of the scene


@dataclass
class SynthResult:
    """What :func:`synth_product` wrote.

    ``tile``: the MGRS tile id in the names; ``date``: sensing date (YYYY-MM-DD); ``origin``:
    upper-left corner in EPSG:``epsg``; ``world``: the box (west, south, east, north) in
    EPSG:``world_epsg`` the ground was laid out in; ``band_files``: image files listed in
    MTD_MSIL2A.xml; ``polygons``: features in the GeoPackage; ``class_pixels``: truth pixels
    per class value over the whole scene; ``cloud_percent``/``nodata_percent``: of the
    scene's pixels (SCL 8/9, no-data strip). ``safe_path`` is the product to give
    ``prepare``/``predict``: the ``.SAFE`` folder, or with ``format`` stac the item JSON (in
    a folder of its COGs).
    """

    safe_path: Path
    labels_path: Path
    truth_path: Path
    product_name: str
    tile: str
    date: str
    size: int
    seed: int
    baseline: str
    origin: tuple[float, float]
    epsg: int
    world: tuple[float, float, float, float]
    world_epsg: int
    label_epsg: int
    band_files: int
    polygons: int
    class_pixels: dict[int, int] = field(default_factory=dict)
    cloud_percent: float = 0.0
    nodata_percent: float = 0.0
    format: str = "safe"
    stac_naming: str | None = None
    change_truth_path: Path | None = None  # with changes: the truth of what turned since before
    changes_path: Path | None = None


def write_truth(path: Path, land: Landscape, *, origin: tuple[float, float], epsg: int) -> None:
    """The full-scene truth raster: uint8 classes 1..8, nodata 0, carrying the legend."""
    import rasterio
    from rasterio.transform import from_origin

    with profiles.written(path), \
            rasterio.open(path, "w", **profiles.CLASS_RASTER, width=land.size, height=land.size,
                          count=1, crs=f"EPSG:{epsg}", transform=from_origin(*origin, 10, 10)) as dst:
        dst.write(np.ascontiguousarray(land.classes), 1)
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
    classes = np.ascontiguousarray(land.classes)
    mask &= classes > 0
    geoms, values = [], []
    for geom, value in shapes(classes, mask=mask, connectivity=4, transform=from_origin(*origin, 10, 10)):
        geoms.append(shape(geom))
        values.append(int(value))
    simplified = shapely.coverage_simplify(np.array(geoms, dtype=object), tolerance=5.0)
    names = {c.value: c.name for c in DEFAULT_LEGEND}
    gdf = gpd.GeoDataFrame({"class": np.array(values, dtype=np.int32),
                            "name": [names[v] for v in values]},
                           geometry=list(simplified), crs=f"EPSG:{epsg}").to_crs(epsg=label_epsg)
    gdf.to_file(path, layer=LABELS_LAYER, driver="GPKG")
    return len(gdf)


def _check_crs(code: int, what: str, *, metres: bool) -> None:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with profiles.gdal_env():  # PROJ's complaint goes to the log, not to stderr
            crs = CRS.from_epsg(code)
    except CRSError:
        raise OptionError(f"{what} {code}: EPSG:{code} is not a known CRS; give a valid EPSG code") from None
    if metres and not (crs.is_projected and crs.linear_units in ("metre", "meter")):
        raise OptionError(f"{what} {code}: the CRS must be projected in metres (e.g. 32633, WGS 84 / UTM zone 33N)")


def parse_date(value: dt.date | str) -> dt.date:
    """A sensing date from a date or "YYYY-MM-DD"; :class:`OptionError` when it is not one."""
    day: dt.date | None = None
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    elif re.fullmatch(r"\d{4}-\d\d-\d\d", str(value)):
        try:
            day = dt.date.fromisoformat(str(value))
        except ValueError:
            day = None
    if day is None:
        raise OptionError(f"date {value!r} is not a calendar date YYYY-MM-DD (e.g. 2018-06-17)")
    if not FIRST_DATE <= day <= LAST_DATE:
        raise OptionError(f"date {day} is out of range; choose {FIRST_DATE} (Sentinel-2B's launch) .. {LAST_DATE}")
    return day


def _world_grid(world: tuple[float, float, float, float] | None, world_epsg: int,
                origin: tuple[float, float], size: int, epsg: int) -> WorldGrid:
    if world is None:
        if world_epsg != epsg:
            raise OptionError(f"a world in EPSG:{world_epsg}, not the product's EPSG:{epsg}, needs a --world box")
        return WorldGrid.of_product(origin, size, epsg)
    west, south, east, north = (float(v) for v in world)
    grid = WorldGrid(west, south, east, north, world_epsg)
    if not (west < east and south < north):
        raise OptionError(f"world {west:g} {south:g} {east:g} {north:g}: give WEST SOUTH EAST NORTH "
                          f"with west < east and south < north")
    if max(grid.height, grid.width) > MAX_WORLD:
        raise OptionError(f"world of {grid.width} x {grid.height} px at 10 m is too large; "
                          f"keep each side within {MAX_WORLD} px ({MAX_WORLD * PIXEL / 1000:g} km)")
    return grid


@profiles.with_gdal_env
def synth_product(out_dir: str | Path, *, size: int = 2560, seed: int = 0, baseline: str = "02.08",
                  date: dt.date | str = DEFAULT_DATE, origin: tuple[float, float] = DEFAULT_ORIGIN,
                  epsg: int = DEFAULT_EPSG, world: tuple[float, float, float, float] | None = None,
                  world_epsg: int | None = None, label_epsg: int = 2180, format: ProductFormat = "safe",
                  stac_naming: str = "earth-search", changes: int = 0, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> SynthResult:
    """Write a synthetic L2A SAFE, ``landcover.gpkg`` and ``truth.tif`` into ``out_dir``.

    ``size`` is the 10 m grid in pixels (256..10980) with its upper-left corner at
    ``origin`` in EPSG:``epsg``; the tile id in the names is the MGRS square of the
    product's centre (T33UYS when ``epsg`` is not a WGS 84 / UTM zone). ``date`` (a date or
    "YYYY-MM-DD") is the sensing date. The ground is laid out for ``seed`` over ``world``
    (west, south, east, north in EPSG:``world_epsg``, default the product's own extent and
    CRS), which must contain the product: products given the same seed and world show the
    same ground where they overlap, in every ``baseline`` ("NN.NN") and on every date; the
    clouds follow (seed, date). Building the world costs time and memory in proportion to
    its area. ``format`` "stac" writes, instead of the SAFE, a folder of COGs and their STAC
    Item with the asset keys of ``stac_naming`` (:data:`s2pipe.sentinel2.stac.NAMINGS`).
    ``changes`` > 0 turns patches of the ground by change set ``changes``
    (:mod:`s2pipe.synth.changes`: the same in every product of the world that names it) and
    writes the truth of the change, ``change_truth.tif`` and ``changes.gpkg``. Nothing is
    left behind on failure; existing outputs are refused unless ``overwrite``.
    ``progress`` is called once per file written.
    """
    from s2pipe.sentinel2.stac import NAMINGS

    if format not in FORMATS or stac_naming not in NAMINGS:
        raise OptionError(f"format {format!r} / naming {stac_naming!r}: use formats {', '.join(FORMATS)} and "
                          f"namings {', '.join(NAMINGS)}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise OptionError(f"size {size} is out of range; choose {MIN_SIZE}..{MAX_SIZE} pixels")
    if not re.fullmatch(r"\d\d\.\d\d", baseline):
        raise OptionError(f"baseline {baseline!r} is not of the form NN.NN (e.g. 02.08 or 05.09)")
    day = parse_date(date)
    origin = (float(origin[0]), float(origin[1]))
    world_epsg = epsg if world_epsg is None else world_epsg
    _check_crs(epsg, "--epsg", metres=True)
    _check_crs(world_epsg, "--world-epsg", metres=True)
    _check_crs(label_epsg, "--label-epsg", metres=False)
    grid = _world_grid(world, world_epsg, origin, size, epsg)
    grid.check_contains(origin, size, epsg)
    tile = mgrs_tile(epsg, *origin, extent=size * PIXEL)
    if tile is None:
        tile = ProductNames().tile
        log.info("EPSG:%d is not a UTM zone of the MGRS grid: the product keeps tile id %s", epsg, tile)
    out_dir = Path(out_dir)
    names = ProductNames.for_product(baseline, day=day, tile=tile)
    safe_path = out_dir / f"{names.product}.SAFE"
    if format == "stac":
        safe_path = out_dir / item_id(names.product, stac_naming)
    product_path = safe_path
    labels_path, truth_path = out_dir / LABELS_NAME, out_dir / TRUTH_NAME
    if changes < 0:
        raise OptionError(f"--changes {changes}: give 0 (none) or the number of a change set")
    change_paths: tuple[Path, ...] = (out_dir / CHANGE_TRUTH_NAME, out_dir / CHANGES_NAME) if changes else ()
    for p in (safe_path, labels_path, truth_path, *sidecar_paths(truth_path), *change_paths,
              *(sidecar_paths(change_paths[0]) if changes else ())):
        check_writable(p, overwrite=overwrite)
    log.info("building a %d x %d px world for a %d px product (seed %d, %s)", grid.width, grid.height, size,
             seed, day)
    sky = None if day == DEFAULT_DATE else day.toordinal()
    layers = make_layers(grid.height, grid.width, seed, sky)
    before = None
    if changes:
        patches = apply_changes(layers, seed, changes)
        world_before = replace(layers, classes=before_classes(layers, patches))
        before = place_in_world(grid, world_before, origin=origin, size=size, epsg=epsg, seed=seed).classes
        log.info("change set %d: %d patches turned", changes, len(patches))
    land = place_in_world(grid, layers, origin=origin, size=size, epsg=epsg, seed=seed,
                          tag=() if sky is None else (sky,))
    with ExitStack() as stack:
        tmp_out = stack.enter_context(atomic_output(safe_path, overwrite=overwrite, directory=True))
        tmp_truth = stack.enter_context(atomic_class_map(truth_path, overwrite=overwrite))
        tmp_labels = stack.enter_context(atomic_output(labels_path, overwrite=overwrite))
        if format == "stac":
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=tmp_out, prefix=".safe-")))
            tmp_safe = work / f"{names.product}.SAFE"
        else:
            tmp_safe = tmp_out
        written = write_safe(tmp_safe, land, names, origin=origin, epsg=epsg, progress=progress)
        if format == "stac":
            item = write_stac_item(tmp_safe, tmp_out, naming=stac_naming)
            product_path = safe_path / item.name
        write_truth(tmp_truth, land, origin=origin, epsg=epsg)
        if before is not None:
            tmp_change = stack.enter_context(atomic_class_map(change_paths[0], overwrite=overwrite))
            tmp_polys = stack.enter_context(atomic_output(change_paths[1], overwrite=overwrite))
            write_change_truth(tmp_change, tmp_polys, before, np.ascontiguousarray(land.classes),
                               origin=origin, epsg=epsg)
        polygons = write_labels(tmp_labels, land, origin=origin, epsg=epsg, label_epsg=label_epsg)
    counts = np.bincount(land.classes.ravel(), minlength=9)
    scl = land.scl()
    return SynthResult(safe_path=product_path, labels_path=labels_path, truth_path=truth_path,
                       product_name=names.product, tile=tile, date=day.isoformat(), size=size, seed=seed,
                       baseline=baseline, origin=origin, epsg=epsg,
                       world=(grid.west, grid.south, grid.east, grid.north), world_epsg=world_epsg,
                       label_epsg=label_epsg, band_files=len(written), polygons=polygons,
                       class_pixels={c: int(counts[c]) for c in range(1, 9)},
                       cloud_percent=round(float(np.isin(scl, (8, 9)).mean() * 100), 3),
                       nodata_percent=round(float((~land.valid).mean() * 100), 3), format=format,
                       stac_naming=stac_naming if format == "stac" else None,
                       change_truth_path=change_paths[0] if changes else None,
                       changes_path=change_paths[1] if changes else None)
