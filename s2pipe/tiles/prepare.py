"""``prepare``: a product and label polygons to labelled training tiles and a manifest.

Output folder (what ``train`` reads)::

    OUT/images/<id>.tif   12-band uint16, B01..B12, DN = 10000 * reflectance, nodata 0
    OUT/labels/<id>.tif   uint8 classes 1..8, 0 = unlabelled / masked, colour table
    OUT/tiles.gpkg        one footprint per tile: id, row, col, split, fractions, class counts
    OUT/prepare.json      product, bands, radiometry, resampling, legend, options, counts, tiles

``<id>`` is ``r<row>_c<col>``, the tile's top-left pixel in the scene's 10 m grid.
The image is read one strip of tiles at a time; only the full-scene label raster
(1 byte per pixel) is held in memory.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from s2pipe.errors import OptionError, TileError
from s2pipe.labels import LabelReport, rasterize_labels, read_labels
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.profiles import gdal_env
from s2pipe.sentinel2 import DEFAULT_SCL_MASK, Scene, open_scene, write_stack
from s2pipe.sentinel2.facts import ResamplingName
from s2pipe.tiles.manifest import (
    FOOTPRINTS_NAME,
    IMAGES_DIR,
    LABELS_DIR,
    MANIFEST_NAME,
    SPLITS,
    TileManifest,
    TileRecord,
)
from s2pipe.tiles.tiling import (
    assign_splits,
    default_block_size,
    tile_id,
    tile_windows,
    write_image_tile,
    write_label_tile,
)

log = logging.getLogger(__name__)


@dataclass
class PrepareResult:
    out_dir: Path
    manifest: Path
    tiles_gpkg: Path
    stack: Path | None
    product: str
    tiles: int
    counts: dict[str, Any]
    labels: LabelReport
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)


def _check_options(tile_size: int, stride: int, min_labelled: float, max_nodata: float,
                   split: Sequence[float]) -> None:
    if tile_size < 16 or tile_size % 16:
        raise OptionError(f"--tile-size {tile_size}: use a multiple of 16 (the U-Net needs it)")
    if not 0 < stride <= tile_size:
        raise OptionError(f"--stride {stride}: use 1..{tile_size} (the tile size)")
    for name, v in (("--min-labelled", min_labelled), ("--max-nodata", max_nodata)):
        if not 0.0 <= v <= 1.0:
            raise OptionError(f"{name} {v}: use a fraction between 0 and 1")
    if len(split) != 3 or any(s < 0 for s in split) or sum(split) <= 0:
        raise OptionError(f"--split {','.join(map(str, split))}: give three non-negative "
                          "fractions train,val,test, e.g. 0.8,0.1,0.1")


def prepare_scene(product: str | os.PathLike, labels: str | os.PathLike,
                  out_dir: str | os.PathLike, *, layer: str | None = None,
                  class_field: str | None = None,
                  class_map: str | os.PathLike | Mapping[Any, Any] | None = None,
                  resampling: ResamplingName = "bilinear",
                  mask_scl: Sequence[int] = DEFAULT_SCL_MASK, tile_size: int = 256,
                  stride: int | None = None, min_labelled: float = 0.05,
                  max_nodata: float = 0.5, split: Sequence[float] = (0.8, 0.1, 0.1),
                  block_size: int | None = None, seed: int = 0, all_touched: bool = False,
                  stack: str | os.PathLike | None = None, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> PrepareResult:
    """Cut ``product`` into labelled tiles in ``out_dir`` (see the module docstring).

    Only tiles with at least ``min_labelled`` labelled and at most ``max_nodata``
    no-data pixels are written. Nothing is left behind on error. ``progress`` gets the
    number of tile rows done.
    """
    import time

    t0 = time.perf_counter()
    stride = stride or tile_size
    _check_options(tile_size, stride, min_labelled, max_nodata, split)
    out_dir = check_writable(out_dir, overwrite=overwrite)
    if stack is not None:
        stack = check_writable(stack, overwrite=overwrite)
    options = dict(resampling=resampling, mask_scl=sorted(int(c) for c in mask_scl),
                   tile_size=tile_size, stride=stride, min_labelled=min_labelled,
                   max_nodata=max_nodata, split=list(split), seed=seed, all_touched=all_touched,
                   layer=layer, class_field=class_field,
                   class_map=class_map if isinstance(class_map, Mapping) else
                   (str(class_map) if class_map else None),
                   labels=str(labels), stack=str(stack) if stack else None)
    with ExitStack() as stack_ctx:
        stack_ctx.enter_context(gdal_env())
        scene = stack_ctx.enter_context(open_scene(product, resampling=resampling, mask_scl=mask_scl))
        grid = scene.grid
        gdf, report = read_labels(labels, layer=layer, class_field=class_field,
                                  class_map=class_map, grid=grid)
        block_size = block_size or default_block_size(grid.width, grid.height, tile_size)
        options["block_size"] = block_size
        # The tile folder is entered first so that it is renamed into place last: when it
        # exists, the stack is complete too (workflows skip finished steps by that).
        tmp = stack_ctx.enter_context(atomic_output(out_dir, overwrite=overwrite, directory=True))
        source: Scene = scene
        if stack is not None:  # tiles are then cut from the stack: no second JP2 decode
            tmp_stack = stack_ctx.enter_context(atomic_output(stack, overwrite=overwrite))
            write_stack(scene, tmp_stack)
            source = stack_ctx.enter_context(open_scene(tmp_stack))
        tiles, counts = _cut_tiles(source, scene, gdf, tmp, tile_size=tile_size, stride=stride,
                                   min_labelled=min_labelled, max_nodata=max_nodata,
                                   split=split, block_size=block_size, seed=seed,
                                   all_touched=all_touched, progress=progress)
        manifest = TileManifest(bands=list(scene.bands), legend=DEFAULT_LEGEND,
                                radiometry=scene.radiometry, tile_size=tile_size, tiles=tiles,
                                product=asdict(scene.info), resampling=resampling,
                                options=options, labels=asdict(report), counts=counts)
        _write_footprints(tmp / FOOTPRINTS_NAME, tiles, grid, tile_size)
        manifest.write(tmp)
    seconds = time.perf_counter() - t0
    log.info("prepare: %d tiles in %.1f s", len(tiles), seconds)
    return PrepareResult(out_dir, out_dir / MANIFEST_NAME, out_dir / FOOTPRINTS_NAME,
                         Path(stack) if stack else None, scene.name, len(tiles), counts, report,
                         round(seconds, 2), {s: counts[s] for s in SPLITS})


def _cut_tiles(source: Scene, scene: Scene, gdf: Any, out: Path, *, tile_size: int, stride: int,
               min_labelled: float, max_nodata: float, split: Sequence[float], block_size: int,
               seed: int, all_touched: bool,
               progress: Callable[[int], None] | None) -> tuple[list[TileRecord], dict[str, Any]]:
    grid = scene.grid
    label = rasterize_labels(gdf, grid, all_touched=all_touched)
    windows = tile_windows(grid.width, grid.height, tile_size, stride)
    npx = tile_size * tile_size
    sl = [(slice(int(w.row_off), int(w.row_off) + tile_size),
           slice(int(w.col_off), int(w.col_off) + tile_size)) for w in windows]
    labelled0 = [np.count_nonzero(label[s]) for s in sl]  # before masking: an upper bound
    candidates = [i for i, n in enumerate(labelled0) if n >= max(1.0, min_labelled * npx)]
    splits = assign_splits([windows[i] for i in candidates], fractions=split,
                           block_size=block_size, seed=seed)
    counts: dict[str, Any] = {"windows": len(windows), "candidates": len(candidates),
                              "dropped_split_overlap": sum(s is None for s in splits),
                              "skipped_labelled": 0, "skipped_nodata": 0, "written": 0,
                              **{s: 0 for s in SPLITS},
                              "class_pixels": {str(c.value): 0 for c in DEFAULT_LEGEND}}
    rows: dict[int, list[tuple[int, str]]] = {}
    for i, s in zip(candidates, splits):
        if s is not None:
            rows.setdefault(int(windows[i].row_off), []).append((i, s))
    (out / IMAGES_DIR).mkdir()
    (out / LABELS_DIR).mkdir()
    tiles: list[TileRecord] = []
    pending: list[Future] = []
    tags = {"S2PIPE_RADIOMETRY": json.dumps(scene.radiometry)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for r0 in sorted(rows):
            strip = source.read(Window(0, r0, grid.width, tile_size))
            nodata_strip = (strip == 0).all(axis=0)
            for i, s in rows[r0]:
                w = windows[i]
                c0 = int(w.col_off)
                nod = nodata_strip[:, c0:c0 + tile_size]
                lab = label[sl[i]].copy()
                lab[nod] = 0
                nodata_fraction = float(nod.mean())
                labelled = int(np.count_nonzero(lab))
                if labelled < min_labelled * npx or labelled == 0:
                    counts["skipped_labelled"] += 1
                    continue
                if nodata_fraction > max_nodata:
                    counts["skipped_nodata"] += 1
                    continue
                tid = tile_id(w)
                img = np.ascontiguousarray(strip[:, :, c0:c0 + tile_size])
                transform = grid.window_transform(w)
                pending.append(pool.submit(write_image_tile, TileManifest.image_path(out, tid), img,
                                           crs=grid.crs, transform=transform, bands=scene.bands,
                                           tags=tags))
                pending.append(pool.submit(write_label_tile, TileManifest.label_path(out, tid), lab,
                                           crs=grid.crs, transform=transform))
                hist = np.bincount(lab.ravel(), minlength=256)
                class_counts = {str(c.value): int(hist[c.value]) for c in DEFAULT_LEGEND
                                if hist[c.value]}
                for k, v in class_counts.items():
                    counts["class_pixels"][k] += v
                counts[s] += 1
                tiles.append(TileRecord(tid, int(w.row_off), c0, s, round(labelled / npx, 6),
                                        round(nodata_fraction, 6), class_counts))
            if len(pending) > 64:
                for f in pending:
                    f.result()
                pending = []
            if progress is not None:
                progress(1)
        for f in pending:
            f.result()
    counts["written"] = len(tiles)
    if not tiles:
        raise TileError(f"no tile of {scene.name} has at least {min_labelled:g} labelled and at "
                        f"most {max_nodata:g} no-data pixels ({counts['candidates']} candidates); "
                        "lower --min-labelled or raise --max-nodata")
    return tiles, counts


def _write_footprints(path: Path, tiles: list[TileRecord], grid: Any, size: int) -> None:
    """``tiles.gpkg``: each tile's footprint with its manifest attributes."""
    import geopandas as gpd
    import shapely

    geoms = [shapely.box(*window_bounds(Window(t.col, t.row, size, size), grid.transform))
             for t in tiles]
    data: dict[str, list] = {k: [getattr(t, k) for t in tiles] for k in
                             ("id", "row", "col", "split", "labelled_fraction", "nodata_fraction")}
    for c in DEFAULT_LEGEND:
        data[f"class_{c.value}"] = [t.class_counts.get(str(c.value), 0) for t in tiles]
    gdf = gpd.GeoDataFrame(data, geometry=geoms, crs=grid.crs)
    gdf.to_file(path, driver="GPKG", layer="tiles", engine="pyogrio")
