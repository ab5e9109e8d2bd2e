"""Pass 1 of ``prepare``: each product's windows with enough labels, on one ground grid.

Each product is opened here once (metadata parsed or Item fetched, offset checked); what
that learnt (its :class:`s2pipe.sentinel2.reader.Product`) travels with its candidates to
pass 2, in this process or on a cluster's workers, which reopen its files without parsing
or checking again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.windows import Window

from s2pipe.cluster.tasks import absolute, gather
from s2pipe.errors import LabelError, OptionError
from s2pipe.labels import LABEL_COLUMN, LabelReport, in_grid, rasterize_labels
from s2pipe.raster.profiles import gdal_env
from s2pipe.sentinel2.metadata import ProductInfo
from s2pipe.sentinel2.reader import Product, ReadOptions, open_scene
from s2pipe.sentinel2.scene import Scene
from s2pipe.tiles.split import GroundGrid, TileBlocks, outline
from s2pipe.tiles.tiling import default_block_size, tile_windows

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
class Candidates:
    """Pass 1 of one product: its windows with enough labels and their ground blocks."""

    product: Product
    key: str
    windows: list[Window]
    blocks: list[TileBlocks]
    report: LabelReport
    counts: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.product.path


@dataclass
class _Pass1:
    """What pass 1 learnt of one product."""

    product: Product
    candidates: Candidates | None    # None: no label feature over the product
    label: np.ndarray | None         # its label raster, when asked to keep it
    ground: GroundGrid
    block_px: int


@dataclass
class Found:
    """Pass 1 of every product: the candidates, label rasters kept, and the ground grid."""

    candidates: list[Candidates]
    labels: dict[str, np.ndarray]
    ground: GroundGrid
    block_px: int


def product_key(info: ProductInfo, taken: set[str]) -> str:
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


def _candidates(scene: Scene, product: Product, gdf: Any, report: LabelReport, ground: GroundGrid,
                rule: TileRule) -> tuple[Candidates, np.ndarray]:
    grid = scene.grid
    label = rasterize_labels(gdf, grid, all_touched=rule.all_touched)
    windows = tile_windows(grid.width, grid.height, rule.tile_size, rule.step)
    t = rule.tile_size
    need = max(1.0, rule.min_labelled * t * t)
    keep = [w for w in windows if np.count_nonzero(label[int(w.row_off):int(w.row_off) + t,
                                                         int(w.col_off):int(w.col_off) + t]) >= need]
    blocks = [ground.blocks(*outline(w, grid.transform), grid.crs) for w in keep]
    counts = {"windows": len(windows), "candidates": len(keep)}
    return Candidates(product, "", keep, blocks, report, counts), label


def _ground(grid: Any, rule: TileRule) -> tuple[GroundGrid, int]:
    """The ground grid of the split, laid on ``grid`` (the first product's), and its block."""
    block_px = rule.block_size or default_block_size(grid.width, grid.height, rule.tile_size)
    return GroundGrid(grid.crs, grid.transform.c, grid.transform.f, block_px * abs(grid.transform.a)), block_px


def _pass1(source: Path | Product, gdf: Any, report: LabelReport, read: ReadOptions, rule: TileRule,
           ground: tuple[GroundGrid, int] | None, keep_label: bool) -> _Pass1:
    """Pass 1 of one product (a task on a cluster); ``ground`` None: lay it on this one."""
    with gdal_env(), open_scene(source, read) as scene:
        assert scene.product is not None
        grid, block_px = ground or _ground(scene.grid, rule)
        mine, mine_report = _labels_of(scene, gdf, report)
        if not len(mine):
            return _Pass1(scene.product, None, None, grid, block_px)
        cand, label = _candidates(scene, scene.product, mine, mine_report, grid, rule)
        return _Pass1(scene.product, cand, label if keep_label else None, grid, block_px)


def _pass1_here(paths: list[Path], gdf: Any, report: LabelReport, read: ReadOptions,
                rule: TileRule) -> Iterator[_Pass1]:
    ground = None
    for path in paths:
        done = _pass1(path, gdf, report, read, rule, ground, keep_label=len(paths) == 1)
        ground = done.ground, done.block_px
        yield done


def find_candidates(paths: list[Path], labels: Any, gdf: Any, report: LabelReport, read: ReadOptions,
                    rule: TileRule, runner: Runner | None = None,
                    progress: Callable[[int], None] | None = None) -> Found:
    """Pass 1: each product's windows with enough labels, on one ground grid (the first
    product's CRS and corner). Keeps the label raster when there is one product only. A
    product the labels do not overlap is an error alone, and skipped among several. With a
    ``runner``, ``gdf`` is its handle of the labels and each product is a task (its path
    made absolute: workers do not share this process's folder); the first product, opened
    here to lay the ground grid, goes to its task as opened."""
    found: list[Candidates] = []
    cached: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    if runner is None:
        done: Any = _pass1_here(paths, gdf, report, read, rule)
    else:
        with open_scene(absolute(paths[0]), read) as first:
            laid = _ground(first.grid, rule)
            sources: list[Path | Product] = [first.product or absolute(paths[0]), *map(absolute, paths[1:])]
        done = gather(runner.map(_pass1, [(s, gdf, report, read, rule, laid, False) for s in sources],
                                 names=[str(p) for p in paths], progress=progress), "products")
    ground, block_px = None, 0
    for path, p1 in zip(paths, done):
        ground, block_px = p1.ground, p1.block_px
        if p1.candidates is None:
            msg = (f"{labels}: no feature overlaps the scene of {path}; check that the labels and the "
                   "product cover the same area")
            if len(paths) == 1:
                raise LabelError(msg)
            log.warning("%s; the product is left out", msg)
            continue
        key = product_key(p1.product.info, taken)
        cand = replace(p1.candidates, key=key)
        if p1.label is not None:
            cached[key] = p1.label
        found.append(cand)
        log.info("%s (%s): %d of %d windows labelled", key, path, len(cand.windows), cand.counts["windows"])
    if not found or ground is None:
        raise LabelError(f"{labels}: no feature overlaps any of the {len(paths)} products; check that "
                         "the labels and the products cover the same area")
    return Found(found, cached, ground, block_px)
