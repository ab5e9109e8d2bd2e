"""``prepare``: products and label polygons to labelled training tiles and a manifest.

Output folder (what ``train`` reads)::

    OUT/images/<id>.tif   12-band uint16, B01..B12, DN = 10000 * reflectance, nodata 0
    OUT/labels/<id>.tif   uint8 classes 1..8, 0 = unlabelled / masked, colour table
    OUT/tiles.gpkg        one footprint per tile: id, product, EPSG, split, fractions, class counts
    OUT/prepare.json      products, bands, radiometry, legend, options, counts, tiles

Several products (tiles, UTM zones, dates, baselines) make one tile set: each is read and
harmonised by the one reader in its own CRS (imagery is never resampled across CRSs), and
the split is laid on one ground grid shared by all (:mod:`s2pipe.tiles.split`), so the
same ground falls in one split whichever product shows it. Products are read one after
the other, each one strip of tiles at a time; only a product's label raster (1 byte per
pixel) is held whole. Given a ``runner`` (:mod:`s2pipe.cluster`), each product is a task
of each pass on a cluster's workers, which write their tiles into the temporary tile folder
(on a file system they share with the client); the split is dealt here, between the passes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.windows import Window

from s2pipe.cluster.tasks import absolute, gather
from s2pipe.errors import OptionError, TileError
from s2pipe.labels import LabelReport, in_grid, rasterize_labels, read_labels
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.provenance import Radiometry
from s2pipe.raster.maps import tile_tags
from s2pipe.raster.profiles import gdal_env
from s2pipe.sentinel2 import Scene, open_scene, write_stack
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION
from s2pipe.sentinel2.reader import ReadOptions, as_product
from s2pipe.tiles.candidates import Candidates, TileRule, find_candidates
from s2pipe.tiles.footprints import write_footprints
from s2pipe.tiles.manifest import (
    FOOTPRINTS_NAME,
    IMAGES_DIR,
    LABELS_DIR,
    MANIFEST_NAME,
    SPLITS,
    ProductRecord,
    TileManifest,
    TileRecord,
)
from s2pipe.tiles.split import assign_ground_splits
from s2pipe.tiles.tiling import tile_id, write_image_tile, write_label_tile

if TYPE_CHECKING:
    from s2pipe.cluster.tasks import Runner

log = logging.getLogger(__name__)


@dataclass
class ProductTiles:
    """What one product gave."""

    key: str
    name: str
    tile: str
    date: str
    epsg: int
    tiles: int
    splits: dict[str, int]


@dataclass
class PrepareResult:
    out_dir: Path
    manifest: Path
    tiles_gpkg: Path
    stack: Path | None
    product: str                      # the product's name; with several, their names joined
    tiles: int
    counts: dict[str, Any]
    labels: LabelReport               # of the first product
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)
    products: list[ProductTiles] = field(default_factory=list)


def prepare_tiles(products: Sequence[str | os.PathLike], labels: str | os.PathLike,
                  out_dir: str | os.PathLike, *, layer: str | None = None,
                  class_field: str | None = None,
                  class_map: str | os.PathLike | Mapping[Any, Any] | None = None,
                  read: ReadOptions = ReadOptions(), rule: TileRule = TileRule(),
                  stack: str | os.PathLike | None = None, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None,
                  runner: Runner | None = None) -> PrepareResult:
    """Cut ``products`` into labelled tiles in ``out_dir`` (see the module docstring).

    Only tiles with at least ``rule.min_labelled`` labelled and at most ``rule.max_nodata``
    no-data pixels are written. ``stack`` (one product only) also writes its 10 m stack.
    Nothing is left behind on error. ``read`` says how products are read (resampling, SCL
    classes masked, and ``trust_pixels``: where a product's pixels contradict the offset
    its metadata states, follow the pixels instead of raising :class:`RadiometryError`);
    each product is opened and checked once. ``progress`` gets the number of tile rows done, or with a
    ``runner`` each task done (two per product); there a product that fails makes the whole
    set fail (:class:`TaskError`), naming every product that did.
    """
    t0 = time.perf_counter()
    rule.check()
    paths = [as_product(p) for p in products]
    if not paths:
        raise OptionError("no product given; pass at least one SAFE folder, zip or stack")
    if stack is not None and len(paths) > 1:
        raise OptionError("--stack writes the stack of one product; leave it out with several")
    out_dir = check_writable(out_dir, overwrite=overwrite)
    if stack is not None:
        stack = check_writable(stack, overwrite=overwrite)
    with ExitStack() as ctx:
        ctx.enter_context(gdal_env())
        gdf, report = read_labels(labels, layer=layer, class_field=class_field, class_map=class_map)
        shared = runner.share(gdf) if runner is not None else gdf
        pass1 = find_candidates(paths, labels, shared, report, read, rule, runner, progress)
        found, cached = pass1.candidates, pass1.labels
        splits = assign_ground_splits([b for c in found for b in c.blocks], fractions=rule.split,
                                      seed=rule.seed)
        # The tile folder is entered first so that it is renamed into place last: when it
        # exists, the stack is complete too (workflows skip finished steps by that).
        tmp = ctx.enter_context(atomic_output(out_dir, overwrite=overwrite, directory=True))
        (tmp / IMAGES_DIR).mkdir()
        (tmp / LABELS_DIR).mkdir()
        tmp_stack = ctx.enter_context(atomic_output(stack, overwrite=overwrite)) if stack else None
        records, tiles, first = [], [], 0
        if runner is None:
            for c in found:
                mine = splits[first:first + len(c.windows)]
                first += len(c.windows)
                record, cut = _cut_product(c, mine, cached.pop(c.key, None), tmp, tmp_stack, gdf,
                                           rule, prefix=len(found) > 1, progress=progress)
                records.append(record)
                tiles += cut
        else:
            jobs = []
            for c in found:
                jobs.append((c, splits[first:first + len(c.windows)], absolute(tmp),
                             tmp_stack and absolute(tmp_stack), shared, rule, len(found) > 1))
                first += len(c.windows)
            for record, cut in gather(runner.map(_cut_task, jobs, names=[str(c.path) for c in found],
                                                 progress=progress), "products"):
                records.append(record)
                tiles += cut
        if not tiles:
            raise TileError(f"no tile has at least {rule.min_labelled:g} labelled and at most "
                            f"{rule.max_nodata:g} no-data pixels ({sum(len(c.windows) for c in found)} "
                            "candidates); lower --min-labelled or raise --max-nodata")
        counts = _total_counts(records, tiles)
        options = {**asdict(rule), "stride": rule.step, "block_size": pass1.block_px,
                   "resampling": read.resampling, "mask_scl": list(read.mask_scl), "labels": str(labels),
                   "layer": layer, "class_field": class_field, "stack": str(stack) if stack else None,
                   "trust_pixels": read.trust_pixels,
                   "class_map": class_map if isinstance(class_map, Mapping) else
                   (str(class_map) if class_map else None), "products": [str(p) for p in paths]}
        manifest = TileManifest(
            bands=list(BANDS), legend=DEFAULT_LEGEND, tile_size=rule.tile_size, tiles=tiles,
            radiometry=records[0].radiometry if len(records) == 1 else
            Radiometry(convention=RADIOMETRY_CONVENTION, resampling=read.resampling),
            products=records, resampling=read.resampling, options=options, counts=counts)
        write_footprints(tmp / FOOTPRINTS_NAME, tiles, records, rule.tile_size, pass1.ground.crs)
        manifest.write(tmp)
    seconds = time.perf_counter() - t0
    log.info("prepare: %d tiles from %d products in %.1f s", len(tiles), len(records), seconds)
    return PrepareResult(
        out_dir, out_dir / MANIFEST_NAME, out_dir / FOOTPRINTS_NAME, Path(stack) if stack else None,
        ", ".join(r.name for r in records), len(tiles), counts,
        LabelReport(**records[0].labels), round(seconds, 2), {s: counts[s] for s in SPLITS},
        [ProductTiles(r.key, r.name, r.tile, r.date, r.epsg, r.counts["written"],
                      {s: r.counts[s] for s in SPLITS}) for r in records])


def _cut_product(c: Candidates, splits: list[str | None], label: np.ndarray | None, out: Path,
                 stack: Path | None, gdf: Any, rule: TileRule, *, prefix: bool,
                 progress: Callable[[int], None] | None) -> tuple[ProductRecord, list[TileRecord]]:
    """Pass 2: write one product's tiles of the splits given."""
    with ExitStack() as ctx:
        scene = ctx.enter_context(open_scene(c.product))  # as pass 1 opened it: not parsed again
        if label is None:
            label = rasterize_labels(in_grid(gdf, scene.grid)[0], scene.grid, all_touched=rule.all_touched)
        source: Scene = scene
        if stack is not None:  # tiles are then cut from the stack: no second JP2 decode
            write_stack(scene, stack)
            source = ctx.enter_context(open_scene(stack))
        counts: dict[str, Any] = {**c.counts, "dropped_split_overlap": sum(s is None for s in splits)}
        tiles = _write_tiles(source, scene, label, c, splits, out, rule, counts,
                             prefix=c.key if prefix else None, progress=progress)
    record = ProductRecord(c.key, asdict(scene.info), scene.radiometry, asdict(c.report), counts)
    return record, tiles


def _cut_task(c: Candidates, splits: list[str | None], out: Path, stack: Path | None, gdf: Any,
              rule: TileRule, prefix: bool) -> tuple[ProductRecord, list[TileRecord]]:
    """Pass 2 of one product, on a worker; a rerun rewrites the same tiles."""
    with gdal_env():
        return _cut_product(c, splits, None, out, stack, gdf, rule, prefix=prefix, progress=None)


def _write_tiles(source: Scene, scene: Scene, label: np.ndarray, c: Candidates,
                 splits: list[str | None], out: Path, rule: TileRule, counts: dict[str, Any], *,
                 prefix: str | None, progress: Callable[[int], None] | None) -> list[TileRecord]:
    grid, t = scene.grid, rule.tile_size
    npx = t * t
    counts.update({"skipped_labelled": 0, "skipped_nodata": 0, "written": 0, **{s: 0 for s in SPLITS},
                   "class_pixels": {str(k.value): 0 for k in DEFAULT_LEGEND}})
    rows: dict[int, list[tuple[Window, str]]] = {}
    for w, s in zip(c.windows, splits):
        if s is not None:
            rows.setdefault(int(w.row_off), []).append((w, s))
    tiles: list[TileRecord] = []
    pending: list[Future] = []
    tags = tile_tags(scene.radiometry)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for r0 in sorted(rows):
            strip = source.read(Window(0, r0, grid.width, t))
            nodata_strip = (strip == 0).all(axis=0)
            for w, s in rows[r0]:
                c0 = int(w.col_off)
                nod = nodata_strip[:, c0:c0 + t]
                lab = label[r0:r0 + t, c0:c0 + t].copy()
                lab[nod] = 0
                labelled = int(np.count_nonzero(lab))
                if labelled < rule.min_labelled * npx or labelled == 0:
                    counts["skipped_labelled"] += 1
                    continue
                if float(nod.mean()) > rule.max_nodata:
                    counts["skipped_nodata"] += 1
                    continue
                tid = f"{prefix}_{tile_id(w)}" if prefix else tile_id(w)
                transform = grid.window_transform(w)
                pending.append(pool.submit(write_image_tile, TileManifest.image_path(out, tid),
                                           np.ascontiguousarray(strip[:, :, c0:c0 + t]), crs=grid.crs,
                                           transform=transform, bands=scene.bands, tags=tags))
                pending.append(pool.submit(write_label_tile, TileManifest.label_path(out, tid), lab,
                                           crs=grid.crs, transform=transform))
                hist = np.bincount(lab.ravel(), minlength=256)
                class_counts = {str(k.value): int(hist[k.value]) for k in DEFAULT_LEGEND if hist[k.value]}
                for k, v in class_counts.items():
                    counts["class_pixels"][k] += v
                counts[s] += 1
                tiles.append(TileRecord(tid, r0, c0, s, round(labelled / npx, 6), round(float(nod.mean()), 6),
                                        class_counts, c.key))
            if len(pending) > 64:
                for f in pending:
                    f.result()
                pending = []
            if progress is not None:
                progress(1)
        for f in pending:
            f.result()
    counts["written"] = len(tiles)
    return tiles


def _total_counts(records: list[ProductRecord], tiles: list[TileRecord]) -> dict[str, Any]:
    """Counts over all products, and the class coverage of each split (pixels per class)."""
    keys = ("windows", "candidates", "dropped_split_overlap", "skipped_labelled", "skipped_nodata",
            "written", *SPLITS)
    total: dict[str, Any] = {k: sum(int(r.counts.get(k, 0)) for r in records) for k in keys}
    total["class_pixels"] = {str(c.value): sum(int(r.counts["class_pixels"].get(str(c.value), 0))
                                               for r in records) for c in DEFAULT_LEGEND}
    by_split = {s: {str(c.value): 0 for c in DEFAULT_LEGEND} for s in SPLITS}
    for t in tiles:
        for k, v in t.class_counts.items():
            by_split[t.split][k] += v
    total["class_pixels_by_split"] = by_split
    missing = {s: [k for k, v in by_split[s].items() if v == 0] for s in SPLITS if total[s]}
    for s, absent in missing.items():
        if absent:
            log.info("the %s split holds no pixel of class(es) %s", s, ", ".join(absent))
    return total
