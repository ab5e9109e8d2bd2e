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

import json
import logging
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from rasterio.windows import Window

from s2pipe.cluster.tasks import absolute, gather
from s2pipe.errors import LabelError, OptionError, TileError
from s2pipe.labels import LABEL_COLUMN, LabelReport, in_grid, rasterize_labels, read_labels
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.profiles import gdal_env
from s2pipe.sentinel2 import DEFAULT_SCL_MASK, Scene, open_scene, write_stack
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION, ResamplingName
from s2pipe.sentinel2.metadata import ProductInfo
from s2pipe.sentinel2.reader import as_product
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
from s2pipe.tiles.split import GroundGrid, TileBlocks, assign_ground_splits, outline
from s2pipe.tiles.tiling import default_block_size, tile_id, tile_windows, write_image_tile, write_label_tile

if TYPE_CHECKING:
    from s2pipe.cluster.tasks import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileRule:
    """How tiles are cut and dealt out (the same for every product of a set)."""

    tile_size: int = 256
    stride: int | None = None          # None: the tile size
    min_labelled: float = 0.05
    max_nodata: float = 0.5
    split: tuple[float, ...] = (0.8, 0.1, 0.1)
    block_size: int | None = None      # px; None: 4, 3, 2 or 1 tiles (see default_block_size)
    seed: int = 0
    all_touched: bool = False

    @property
    def step(self) -> int:
        return self.stride or self.tile_size

    def check(self) -> None:
        if self.tile_size < 16 or self.tile_size % 16:
            raise OptionError(f"--tile-size {self.tile_size}: use a multiple of 16 (the U-Net needs it)")
        if not 0 < self.step <= self.tile_size:
            raise OptionError(f"--stride {self.step}: use 1..{self.tile_size} (the tile size)")
        for name, v in (("--min-labelled", self.min_labelled), ("--max-nodata", self.max_nodata)):
            if not 0.0 <= v <= 1.0:
                raise OptionError(f"{name} {v}: use a fraction between 0 and 1")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or sum(self.split) <= 0:
            raise OptionError(f"--split {','.join(map(str, self.split))}: give three non-negative "
                              "fractions train,val,test, e.g. 0.8,0.1,0.1")


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


@dataclass
class _Candidates:
    """Pass 1 of one product: its windows with enough labels and their ground blocks."""

    path: Path
    key: str
    windows: list[Window]
    blocks: list[TileBlocks]
    report: LabelReport
    counts: dict[str, Any]


@dataclass
class _Pass1:
    """What pass 1 learnt of one product."""

    info: ProductInfo
    candidates: _Candidates | None   # None: no label feature over the product
    label: np.ndarray | None         # its label raster, when asked to keep it
    ground: GroundGrid
    block_px: int


def product_key(info: Any, taken: set[str]) -> str:
    """``T33UYS_20180607``: the tile and sensing date (else the product name), made unique."""
    date = re.sub(r"\D", "", info.sensing_time)[:8]
    key = f"T{info.tile}_{date}" if info.tile and date else re.sub(r"[^A-Za-z0-9]+", "_", info.name)
    unique, k = key, 2
    while unique in taken:
        unique, k = f"{key}_{k}", k + 1
    taken.add(unique)
    return unique


def _labels_of(scene: Scene, gdf: Any, report: LabelReport) -> tuple[Any, LabelReport]:
    """The label features over one product, and the report of what happened to them."""
    mine, outside = in_grid(gdf, scene.grid)
    counts = mine[LABEL_COLUMN].value_counts()
    return mine, replace(report, outside_scene=outside, used=len(mine),
                         class_features={str(int(k)): int(v) for k, v in sorted(counts.items())})


def _candidates(scene: Scene, path: Path, key: str, gdf: Any, report: LabelReport, ground: GroundGrid,
                rule: TileRule) -> tuple[_Candidates, np.ndarray]:
    grid = scene.grid
    label = rasterize_labels(gdf, grid, all_touched=rule.all_touched)
    windows = tile_windows(grid.width, grid.height, rule.tile_size, rule.step)
    t = rule.tile_size
    need = max(1.0, rule.min_labelled * t * t)
    keep = [w for w in windows if np.count_nonzero(label[int(w.row_off):int(w.row_off) + t,
                                                         int(w.col_off):int(w.col_off) + t]) >= need]
    blocks = [ground.blocks(*outline(w, grid.transform), grid.crs) for w in keep]
    counts = {"windows": len(windows), "candidates": len(keep)}
    return _Candidates(path, key, keep, blocks, report, counts), label


def prepare_tiles(products: Sequence[str | os.PathLike], labels: str | os.PathLike,
                  out_dir: str | os.PathLike, *, layer: str | None = None,
                  class_field: str | None = None,
                  class_map: str | os.PathLike | Mapping[Any, Any] | None = None,
                  resampling: ResamplingName = "bilinear",
                  mask_scl: Sequence[int] = DEFAULT_SCL_MASK, rule: TileRule = TileRule(),
                  stack: str | os.PathLike | None = None, trust_pixels: bool = False,
                  overwrite: bool = False, progress: Callable[[int], None] | None = None,
                  runner: Runner | None = None) -> PrepareResult:
    """Cut ``products`` into labelled tiles in ``out_dir`` (see the module docstring).

    Only tiles with at least ``rule.min_labelled`` labelled and at most ``rule.max_nodata``
    no-data pixels are written. ``stack`` (one product only) also writes its 10 m stack.
    Nothing is left behind on error. ``trust_pixels``: where a product's pixels contradict
    the offset its metadata states, follow the pixels instead of raising
    :class:`RadiometryError`. ``progress`` gets the number of tile rows done, or with a
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
    read = dict(resampling=resampling, mask_scl=mask_scl, trust_pixels=trust_pixels)
    with ExitStack() as ctx:
        ctx.enter_context(gdal_env())
        gdf, report = read_labels(labels, layer=layer, class_field=class_field, class_map=class_map)
        shared = runner.share(gdf) if runner is not None else gdf
        found, cached, ground, block_px = _find_candidates(paths, labels, shared, report, read, rule,
                                                           runner, progress)
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
                                           read, rule, prefix=len(found) > 1,
                                           progress=progress)
                records.append(record)
                tiles += cut
        else:
            jobs = []
            for c in found:
                jobs.append((c, splits[first:first + len(c.windows)], absolute(tmp),
                             tmp_stack and absolute(tmp_stack), shared, read, rule, len(found) > 1))
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
        options = {**asdict(rule), "stride": rule.step, "block_size": block_px, "resampling": resampling,
                   "mask_scl": sorted(int(v) for v in mask_scl), "labels": str(labels), "layer": layer,
                   "class_field": class_field, "stack": str(stack) if stack else None,
                   "trust_pixels": trust_pixels,
                   "class_map": class_map if isinstance(class_map, Mapping) else
                   (str(class_map) if class_map else None), "products": [str(p) for p in paths]}
        manifest = TileManifest(
            bands=list(BANDS), legend=DEFAULT_LEGEND, tile_size=rule.tile_size, tiles=tiles,
            radiometry=records[0].radiometry if len(records) == 1 else
            {"convention": RADIOMETRY_CONVENTION, "resampling": resampling},
            products=records, resampling=resampling, options=options, counts=counts)
        write_footprints(tmp / FOOTPRINTS_NAME, tiles, records, rule.tile_size, ground.crs)
        manifest.write(tmp)
    seconds = time.perf_counter() - t0
    log.info("prepare: %d tiles from %d products in %.1f s", len(tiles), len(records), seconds)
    return PrepareResult(
        out_dir, out_dir / MANIFEST_NAME, out_dir / FOOTPRINTS_NAME, Path(stack) if stack else None,
        ", ".join(str(r.info.get("name")) for r in records), len(tiles), counts,
        LabelReport(**records[0].labels), round(seconds, 2), {s: counts[s] for s in SPLITS},
        [ProductTiles(r.key, str(r.info.get("name")), str(r.info.get("tile")),
                      str(r.info.get("sensing_time", ""))[:10], int(r.info.get("epsg") or 0),
                      r.counts["written"], {s: r.counts[s] for s in SPLITS}) for r in records])


def _ground(grid: Any, rule: TileRule) -> tuple[GroundGrid, int]:
    """The ground grid of the split, laid on ``grid`` (the first product's), and its block."""
    block_px = rule.block_size or default_block_size(grid.width, grid.height, rule.tile_size)
    return GroundGrid(grid.crs, grid.transform.c, grid.transform.f, block_px * abs(grid.transform.a)), block_px


def _pass1(path: Path, gdf: Any, report: LabelReport, read: dict[str, Any], rule: TileRule,
           ground: tuple[GroundGrid, int] | None, keep_label: bool) -> _Pass1:
    """Pass 1 of one product (a task on a cluster); ``ground`` None: lay it on this one."""
    with gdal_env(), open_scene(path, **read) as scene:
        grid, block_px = ground or _ground(scene.grid, rule)
        mine, mine_report = _labels_of(scene, gdf, report)
        if not len(mine):
            return _Pass1(scene.info, None, None, grid, block_px)
        cand, label = _candidates(scene, path, "", mine, mine_report, grid, rule)
        return _Pass1(scene.info, cand, label if keep_label else None, grid, block_px)


def _pass1_here(paths: list[Path], gdf: Any, report: LabelReport, read: dict[str, Any],
                rule: TileRule) -> Iterator[_Pass1]:
    ground = None
    for path in paths:
        done = _pass1(path, gdf, report, read, rule, ground, keep_label=len(paths) == 1)
        ground = done.ground, done.block_px
        yield done


def _find_candidates(paths: list[Path], labels: Any, gdf: Any, report: LabelReport, read: dict[str, Any],
                     rule: TileRule, runner: Runner | None = None,
                     progress: Callable[[int], None] | None = None,
                     ) -> tuple[list[_Candidates], dict[str, np.ndarray], GroundGrid, int]:
    """Pass 1: each product's windows with enough labels, on one ground grid (the first
    product's CRS and corner). Keeps the label raster when there is one product only. A
    product the labels do not overlap is an error alone, and skipped among several. With a
    ``runner``, ``gdf`` is its handle of the labels and each product is a task (its path
    made absolute: workers do not share this process's folder)."""
    found: list[_Candidates] = []
    cached: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    if runner is None:
        done: Any = _pass1_here(paths, gdf, report, read, rule)
    else:
        with open_scene(paths[0], **read) as first:
            laid = _ground(first.grid, rule)
        done = gather(runner.map(_pass1, [(absolute(p), gdf, report, read, rule, laid, False) for p in paths],
                                 names=[str(p) for p in paths], progress=progress), "products")
    for path, p1 in zip(paths, done):
        ground, block_px = p1.ground, p1.block_px
        if p1.candidates is None:
            msg = (f"{labels}: no feature overlaps the scene of {path}; check that the labels and the "
                   "product cover the same area")
            if len(paths) == 1:
                raise LabelError(msg)
            log.warning("%s; the product is left out", msg)
            continue
        key = product_key(p1.info, taken)
        cand = replace(p1.candidates, key=key)
        if p1.label is not None:
            cached[key] = p1.label
        found.append(cand)
        log.info("%s (%s): %d of %d windows labelled", key, path, len(cand.windows), cand.counts["windows"])
    if not found:
        raise LabelError(f"{labels}: no feature overlaps any of the {len(paths)} products; check that "
                         "the labels and the products cover the same area")
    return found, cached, ground, block_px


def _cut_product(c: _Candidates, splits: list[str | None], label: np.ndarray | None, out: Path,
                 stack: Path | None, gdf: Any, read: dict[str, Any], rule: TileRule, *, prefix: bool,
                 progress: Callable[[int], None] | None) -> tuple[ProductRecord, list[TileRecord]]:
    """Pass 2: write one product's tiles of the splits given."""
    with ExitStack() as ctx:
        scene = ctx.enter_context(open_scene(c.path, **read))
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


def _cut_task(c: _Candidates, splits: list[str | None], out: Path, stack: Path | None, gdf: Any,
              read: dict[str, Any], rule: TileRule, prefix: bool) -> tuple[ProductRecord, list[TileRecord]]:
    """Pass 2 of one product, on a worker; a rerun rewrites the same tiles."""
    with gdal_env():
        return _cut_product(c, splits, None, out, stack, gdf, read, rule, prefix=prefix, progress=None)


def _write_tiles(source: Scene, scene: Scene, label: np.ndarray, c: _Candidates,
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
    tags = {"S2PIPE_RADIOMETRY": json.dumps(scene.radiometry)}
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


def prepare_scene(product: str | os.PathLike, labels: str | os.PathLike, out_dir: str | os.PathLike, *,
                  tile_size: int = 256, stride: int | None = None, min_labelled: float = 0.05,
                  max_nodata: float = 0.5, split: Sequence[float] = (0.8, 0.1, 0.1),
                  block_size: int | None = None, seed: int = 0, all_touched: bool = False,
                  **options: Any) -> PrepareResult:
    """:func:`prepare_tiles` of one product, with the tile rule as keyword options."""
    rule = TileRule(tile_size, stride, min_labelled, max_nodata, tuple(split), block_size, seed, all_touched)
    return prepare_tiles([product], labels, out_dir, rule=rule, **options)
