"""Mosaic blocks as cluster tasks: groups of blocks of one column, computed where they run.

Each task opens only the maps that reach its blocks and returns their
:class:`~s2pipe.mosaic.blend.BlockResult` arrays (uint8); the client writes them in order
with the one :class:`~s2pipe.raster.cog.MapWriter`, so the map is written in one place.
Tasks are kept at most two per worker thread ahead of the block being written: the
client holds one group's arrays, the workers a few more, whatever the region's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace

import rasterio
from rasterio.windows import Window

from s2pipe.cluster.tasks import Runner, absolute, values
from s2pipe.mosaic.blend import BlockResult, mosaic_block
from s2pipe.mosaic.grid import Clip, clip_mask
from s2pipe.mosaic.inputs import MapInput
from s2pipe.raster.grid import Grid
from s2pipe.raster.profiles import gdal_env

#: Blocks of one column per task: 4 Mpx of output, 12 MB of arrays to send back.
GROUP_BLOCKS = 4


@dataclass(frozen=True)
class MosaicJob:
    """What every task of one mosaic shares (sent to the workers once)."""

    inputs: Sequence[MapInput]
    grid: Grid
    feather: int
    clip: Clip | None
    probabilities: bool = False  # send the blended probabilities back too


def block_groups(work: Sequence[Window], size: int = GROUP_BLOCKS) -> list[list[Window]]:
    """Consecutive blocks (in the writer's order) of one column, at most ``size`` each."""
    groups: list[list[Window]] = []
    for w in work:
        if not groups or groups[-1][0].col_off != w.col_off or len(groups[-1]) == size:
            groups.append([])
        groups[-1].append(w)
    return groups


def _reaching(job: MosaicJob, windows: Sequence[Window]) -> list[MapInput]:
    """The maps whose footprint comes within two pixels (theirs and the output's) of the
    blocks: any other map has weight 0 there, and leaves the blocks as they are."""
    t = job.grid.transform
    c0, r0 = min(int(w.col_off) for w in windows), min(int(w.row_off) for w in windows)
    c1 = max(int(w.col_off + w.width) for w in windows)
    r1 = max(int(w.row_off + w.height) for w in windows)
    west, north = t * (c0, r0)
    east, south = t * (c1, r1)
    mine = []
    for m in job.inputs:
        pad = 2 * (abs(t.a) + abs(m.transform.a))
        b = m.bounds_in(job.grid.crs)
        if b[0] < east + pad and west - pad < b[2] and b[1] < north + pad and south - pad < b[3]:
            mine.append(m)
    return mine


def mosaic_group(job: MosaicJob, windows: list[Window]) -> list[BlockResult]:
    """The blocks ``windows`` of the mosaic, on a worker."""

    with gdal_env(), ExitStack() as stack:
        inputs = _reaching(job, windows)
        datasets = [stack.enter_context(rasterio.open(m.path)) for m in inputs]
        return [mosaic_block(inputs, datasets, job.grid, w, job.feather, clip_mask(job.clip, job.grid, w),
                             probabilities=job.probabilities) for w in windows]


def blocks_on(runner: Runner, job: MosaicJob, work: Sequence[Window],
              progress: Callable[[int], None] | None = None) -> Iterator[BlockResult]:
    """Every block of ``work``, in order, computed by ``runner``'s workers (``progress``
    gets each group done); the first failed group raises :class:`TaskError`."""
    groups = block_groups(work)
    shared = runner.share(replace(job, inputs=[replace(m, path=absolute(m.path)) for m in job.inputs]))
    names = [f"blocks at column {int(g[0].col_off)}, rows {int(g[0].row_off)}-"
             f"{int(g[-1].row_off + g[-1].height)}" for g in groups]
    outcomes = runner.map(mosaic_group, [(shared, g) for g in groups], names=names,
                          in_flight=2 * runner.slots, progress=progress)
    for blocks in values(outcomes, "a block of the mosaic"):
        yield from blocks
