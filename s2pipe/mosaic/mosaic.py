"""``mosaic``: per-scene maps of ``predict`` joined into one Cloud-Optimized GeoTIFF.

The output grid (:mod:`s2pipe.mosaic.grid`) is cut into blocks of 1024 px, each computed
from the maps that cover it alone (:func:`s2pipe.mosaic.blend.mosaic_block`), so memory is
bounded by a block whatever the region's size, and blocks can run anywhere. The map
carries the legend (colours, class names, QGIS style) and lists every contributing scene
in its ``S2PIPE_SCENES`` tag; ``sources`` optionally records, per pixel, which scene
weighed most and how many had a valid pixel. Given a ``runner`` (:mod:`s2pipe.cluster`),
groups of blocks are computed by a cluster's workers (:mod:`s2pipe.mosaic.groups`) and
written here in order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s2pipe import __version__
from s2pipe.errors import OptionError
from s2pipe.mosaic.blend import mosaic_block
from s2pipe.mosaic.grid import BLOCK, blocks, clip_mask, output_grid, parse_crs, read_clip
from s2pipe.mosaic.groups import MosaicJob, block_groups, blocks_on
from s2pipe.mosaic.inputs import MapInput, open_inputs
from s2pipe.mosaic.options import MosaicOptions
from s2pipe.outputs import check_writable
from s2pipe.raster.maps import SOURCES_LAYOUT, Provenance, class_layout, map_files, probability_layout, write_map
from s2pipe.raster.profiles import gdal_env
from s2pipe.resources import peak_rss_mb

if TYPE_CHECKING:
    from s2pipe.cluster.tasks import Runner

log = logging.getLogger(__name__)

THREADS = 2  # blocks computed at once (numpy and GDAL release the GIL); each holds ~300 MB


class _Datasets:
    """The input maps opened once per thread (a rasterio dataset is not shared by threads)."""

    def __init__(self, inputs: Sequence[MapInput]) -> None:
        self.inputs, self.local, self.lock = inputs, threading.local(), threading.Lock()
        self.all: list[Any] = []

    def mine(self) -> list[Any]:
        import rasterio

        if not hasattr(self.local, "datasets"):
            self.local.datasets = [rasterio.open(m.path) for m in self.inputs]
            with self.lock:
                self.all += self.local.datasets
        return self.local.datasets

    def __enter__(self) -> _Datasets:
        return self

    def __exit__(self, *exc: object) -> None:
        for ds in self.all:
            ds.close()


def _in_order(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Sequence[Any],
              ahead: int) -> Iterator[Any]:
    """``fn`` of each item, computed by ``pool`` at most ``ahead`` items ahead, in order."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass
class MosaicResult:
    """What :func:`mosaic_maps` wrote and measured."""

    output: Path
    sources: Path | None
    probabilities: Path | None
    crs: str
    width: int
    height: int
    resolution: float
    rule: str
    scenes: list[dict[str, Any]]
    blocks: int
    seconds: float
    peak_rss_mb: float
    class_pixels: dict[int, int] = field(default_factory=dict)
    nodata_pixels: int = 0


def _provenance(inputs: Sequence[MapInput], rule: str, feather: int) -> Provenance:
    return Provenance(version=__version__, rule=rule, feather=feather,
                      scenes=tuple({"index": m.index, "product": m.product, "map": str(m.path)} for m in inputs))


def mosaic_maps(maps: Sequence[str | os.PathLike], out: str | os.PathLike,
                options: MosaicOptions = MosaicOptions(), *, progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None, runner: Runner | None = None) -> MosaicResult:
    """Join ``maps`` (probabilities of ``predict --probabilities-all``, or class maps) into
    one map at ``out`` on the grid ``options`` describe. ``out`` and ``options.sources``
    may be URLs (``s3://`` ...): written locally, uploaded when complete
    (:mod:`s2pipe.remote`). ``progress`` gets the blocks done; ``on_total`` their number.
    With a ``runner`` its workers compute groups of blocks (the unit of ``progress`` and
    ``on_total`` then); they must reach the maps by the same paths."""
    from s2pipe.remote import staged_outputs, with_urls

    sources, probs = options.sources, options.probabilities
    with staged_outputs(out, sources, probs, overwrite=options.overwrite) as (local_out, local_sources, local_probs):
        result = _mosaic_local(maps, Path(local_out),
                               replace(options, sources=None if local_sources is None else Path(local_sources),
                                       probabilities=None if local_probs is None else Path(local_probs)),
                               progress, on_total, runner)
    return with_urls(result, (out, sources, probs), (local_out, local_sources, local_probs))


def _mosaic_local(maps: Sequence[str | os.PathLike], out: Path, o: MosaicOptions,
                  progress: Callable[[int], None] | None, on_total: Callable[[int], None] | None,
                  runner: Runner | None) -> MosaicResult:
    t0 = time.perf_counter()
    sources, overwrite, feather, resolution = o.sources, o.overwrite, o.feather, o.resolution
    targets = [*map_files(out, "classes"), *([Path(sources)] if sources else []),
               *([Path(o.probabilities)] if o.probabilities else [])]
    if len(set(map(os.path.abspath, targets))) != len(targets):
        raise OptionError("--sources and --probabilities must be other files than the map and each other")
    for t in targets:
        check_writable(t, overwrite=overwrite)
    inputs = open_inputs(maps)
    out_crs = parse_crs(o.crs, inputs[0].crs)
    clip_polys = read_clip(o.clip, out_crs) if o.clip is not None else None
    grid = output_grid(inputs, out_crs, resolution, o.bounds, clip_polys)
    rule = "probabilities" if inputs[0].kind == "probabilities" else "classes"
    if o.probabilities is not None and rule != "probabilities":
        raise OptionError("--probabilities blends class probabilities: give the probabilities of "
                          "predict --probabilities P --probabilities-all, not class maps")
    work = list(blocks(grid, BLOCK))
    if on_total is not None:
        on_total(len(work) if runner is None else len(block_groups(work)))
    counts = np.zeros(256, dtype=np.int64)
    made = _provenance(inputs, rule, feather)
    with ExitStack() as stack:  # exits in reverse: writers close, then outputs are renamed
        stack.enter_context(gdal_env())
        opened = stack.enter_context(_Datasets(inputs)) if runner is None else None
        writer = stack.enter_context(write_map(out, grid, class_layout(inputs[0].legend), made,
                                               overwrite=overwrite))
        src_writer = prob_writer = None
        if sources is not None:
            src_writer = stack.enter_context(write_map(sources, grid, SOURCES_LAYOUT, made, overwrite=overwrite))
        if o.probabilities is not None:
            prob_writer = stack.enter_context(write_map(
                o.probabilities, grid, probability_layout(inputs[0].legend, every_class=True),
                replace(made, legend=inputs[0].legend), overwrite=overwrite))

        def compute(window: Any) -> Any:
            assert opened is not None
            return mosaic_block(inputs, opened.mine(), grid, window, feather,
                                clip_mask(clip_polys, grid, window), probabilities=prob_writer is not None)

        if runner is None:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=THREADS))
            done = _in_order(pool, compute, work, ahead=2 * THREADS)
        else:
            done = blocks_on(runner, MosaicJob(inputs, grid, feather, clip_polys, prob_writer is not None), work,
                             progress)
        for block in done:
            window = block.window
            counts += np.bincount(block.classes.ravel(), minlength=256)
            writer.write_rows(block.classes, int(window.col_off))
            if src_writer is not None:
                src_writer.write_rows(np.stack([block.source, block.count]), int(window.col_off))
            if prob_writer is not None:
                assert block.probabilities is not None
                prob_writer.write_rows(block.probabilities, int(window.col_off))
            if progress is not None and runner is None:
                progress(1)
        writer.finish()
        if src_writer is not None:
            src_writer.finish()
        if prob_writer is not None:
            prob_writer.finish()
    legend = inputs[0].legend
    return MosaicResult(
        output=out, sources=Path(sources) if sources else None,
        probabilities=Path(o.probabilities) if o.probabilities else None, crs=grid.crs.to_string(),
        width=grid.width, height=grid.height, resolution=resolution, rule=rule,
        scenes=[{"index": m.index, "product": m.product, "map": str(m.path)} for m in inputs],
        blocks=len(work), seconds=round(time.perf_counter() - t0, 2), peak_rss_mb=round(peak_rss_mb(), 1),
        class_pixels={c.value: int(counts[c.value]) for c in legend}, nodata_pixels=int(counts[0]))
