"""Every raster file format s2pipe writes, as data, and the GDAL settings it runs with.

A profile holds the creation options of one kind of output; writers add only what
depends on the data (size, count, dtype, CRS, transform). Changing how s2pipe stores a
kind of raster is a change here and nowhere else.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from rasterio.env import Env

from s2pipe.raster import gdal_messages

#: 12-band uint16 10 m stack of ``prepare --stack`` (read back by ``open_scene``).
STACK: dict[str, Any] = dict(driver="GTiff", dtype="uint16", nodata=0, tiled=True,
                             blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                             interleave="pixel", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
#: Training image tile (12-band uint16); blocks are chosen per tile size by :func:`tile_blocks`.
IMAGE_TILE: dict[str, Any] = dict(driver="GTiff", dtype="uint16", nodata=0, compress="deflate",
                                  predictor=2, interleave="pixel")
#: Training label tile (uint8 classes, 0 = unlabelled).
LABEL_TILE: dict[str, Any] = dict(driver="GTiff", dtype="uint8", nodata=0, compress="deflate")
#: Whole-scene class raster written at once (``synth``'s truth).
CLASS_RASTER: dict[str, Any] = dict(driver="GTiff", dtype="uint8", nodata=0, tiled=True,
                                    blockxsize=256, blockysize=256, compress="deflate")
#: Staging GeoTIFF of :class:`s2pipe.raster.cog.MapWriter` (fast compression: it is rewritten).
STAGE_BLOCK = 256
STAGE: dict[str, Any] = dict(driver="GTiff", tiled=True, blockxsize=STAGE_BLOCK,
                             blockysize=STAGE_BLOCK, compress="deflate", zlevel=1,
                             bigtiff="if_safer")
#: The same uncompressed, for single-band maps that are cheap to hold raw while written
#: (change maps: 1-2 s less per Sentinel-2 tile, for 150 MB of temporary disk).
STAGE_RAW: dict[str, Any] = {k: v for k, v in STAGE.items() if k not in ("compress", "zlevel")}
#: Creation options of the Cloud-Optimized GeoTIFF maps (``predict``).
COG_BLOCK = 512
COG: dict[str, Any] = dict(driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=COG_BLOCK, BIGTIFF="IF_SAFER")
#: DEFLATE level of change maps (the COG's default is 6): on a Sentinel-2 tile's change map
#: level 4 compresses 4x faster for ~10% more bytes (bench/RESULTS.md, issue 19).
CHANGE_DEFLATE_LEVEL = 4
#: Band files of ``synth --format stac``: COGs as the cloud catalogues serve them (lossless).
COG_BAND: dict[str, Any] = dict(driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=512,
                                BIGTIFF="IF_SAFER")
#: Band files of the synthetic SAFE: lossless JPEG2000 like ESA's (tiles of up to 1024 px).
JP2_BAND: dict[str, Any] = dict(driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES", YCC="NO")


def tile_blocks(size: int) -> dict[str, Any]:
    """Internal tiling of a square tile of ``size`` px: the largest block that divides it."""
    for b in (128, 256, 64, 32, 16):
        if size % b == 0:
            return {"tiled": True, "blockxsize": b, "blockysize": b}
    return {"tiled": False}


#: GDAL settings s2pipe reads and writes with: a bounded block cache keeps peak memory
#: predictable, JPEG2000 and deflate decode on the job's threads (``GDAL_NUM_THREADS``, set
#: per job from :func:`s2pipe.resources.thread_count`), and opening a file does not list its
#: folder (slow for SAFE folders and remote files). A variable set in the environment wins.
#: ``GDAL_CACHEMAX`` is in MB here, as GDAL reads it (see :func:`gdal_env`).
GDAL_DEFAULTS: dict[str, Any] = {"GDAL_CACHEMAX": 256, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
#: GDAL's own rule: a ``GDAL_CACHEMAX`` below this is MB, above it bytes.
_CACHE_MB_BELOW = 100_000


P = ParamSpec("P")
R = TypeVar("R")


def with_gdal_env(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a library entry point inside :func:`gdal_env` (s2pipe's GDAL settings)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with gdal_env():
            return fn(*args, **kwargs)

    return wrapper


def gdal_env(**overrides: Any) -> Env:
    """A ``rasterio.Env`` with s2pipe's GDAL settings, for the duration of one job.

    ``overrides`` are s2pipe's own choices for that job (e.g. a cache sized for it); the
    user's environment variables still win over the defaults, not over the overrides.
    """
    from s2pipe.resources import thread_count

    gdal_messages.route()
    defaults = {**GDAL_DEFAULTS, "GDAL_NUM_THREADS": str(thread_count())}
    options = {k: v for k, v in defaults.items() if k not in os.environ}
    options.update(overrides)
    cache = options.get("GDAL_CACHEMAX")
    if isinstance(cache, int) and cache < _CACHE_MB_BELOW:
        # rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, in bytes: 256 meant a
        # 256-byte cache, and every decimated or band-subset read decoded each block again
        # (a quick-look of the demo's stack took 135 s of CPU instead of under 1 s)
        options["GDAL_CACHEMAX"] = cache * 2**20
    return Env(**options)


#: The loggers through which rasterio reports the GDAL errors it does not raise (CE_Failure
#: at INFO level, e.g. a failed flush when a written dataset is closed).
GDAL_ERROR_LOGGERS = ("rasterio._env", "rasterio._err")
_GDAL_FAILURE = "GDAL signalled an error"
#: Failures that mean the bytes did not reach the file (GDAL also signals benign ones, such
#: as "Cannot modify tag ... while writing", on writes that succeed).
WRITE_FAILURE = re.compile(r"write error|error writing|fail\w* to write|write fail|cannot write|"
                           r"seek error|no space|disk full|free disk space|compress tile failed|"
                           r"TIFFWriteDirectory|TIFFRewriteDirectory|TIFFAppendToStrip|flush",
                           re.IGNORECASE)


def note_gdal_failure(message: str) -> None:
    """A failure GDAL or libtiff reported outside rasterio's handling (see
    :mod:`s2pipe.raster.gdal_messages`): a write failure fails the writes being checked by
    :func:`gdal_write_errors`, this thread's, or every one when the thread has none (GDAL
    writes from worker threads of its own)."""
    if not WRITE_FAILURE.search(message):
        return
    with _failures.lock:
        mine = _failures.captures.get(threading.get_ident())
        for found in [mine] if mine is not None else list(_failures.captures.values()):
            found.append(message.strip())


class _GdalFailures(logging.Filter):
    """Collects, per thread, the GDAL failures rasterio logs while a write is checked; lets
    through to the log handlers only what the loggers' own level would have let through."""

    def __init__(self) -> None:
        super().__init__()
        self.captures: dict[int, list[str]] = {}
        self.levels: dict[str, int] = {}  # effective level of each logger before
        self.own: dict[str, int] = {}  # the level set on each logger before
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "GDAL signalled an error: err_no=%r, msg=%r" or \
                str(record.msg).startswith(_GDAL_FAILURE):
            found = self.captures.get(record.thread or 0)
            if found is not None and isinstance(record.args, tuple) and len(record.args) == 2 \
                    and WRITE_FAILURE.search(str(record.args[1])):
                found.append(str(record.args[1]).strip())
        return record.levelno >= self.levels.get(record.name, logging.NOTSET)


_failures = _GdalFailures()
gdal_messages.route()  # GDAL and libtiff talk through logging from here on


@contextmanager
def gdal_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Raise ``OSError`` (``filename=path``) for GDAL failures during the block that rasterio
    only logs: wrap the writing of a dataset, its closing included (GDAL flushes its block
    cache and writes the file's directory when the dataset is closed).

    A failure while the disk is full (GDAL keeps no errno) is raised as ``OSError(ENOSPC)``
    at once, before cleaning up frees the space again.
    """
    from s2pipe.errors import S2PipeError
    from s2pipe.outputs import nearly_full
    ident = threading.get_ident()
    with _failures.lock:
        if not _failures.captures:
            for name in GDAL_ERROR_LOGGERS:
                logger = logging.getLogger(name)
                _failures.levels[name] = logger.getEffectiveLevel()
                _failures.own[name] = logger.level
                logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
                logger.addFilter(_failures)
        found: list[str] = []
        _failures.captures[ident] = found
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, (S2PipeError, OSError)) and nearly_full(path):
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})", str(path)) from exc
        raise
    finally:
        with _failures.lock:
            del _failures.captures[ident]
            if not _failures.captures:
                for name in GDAL_ERROR_LOGGERS:
                    logger = logging.getLogger(name)
                    logger.removeFilter(_failures)
                    logger.setLevel(_failures.own[name])
    if found:
        code = errno.ENOSPC if nearly_full(path) else errno.EIO
        raise OSError(code, f"{os.strerror(code)} ({found[0]})", str(Path(path)))


@contextmanager
def written(path: str | os.PathLike) -> Iterator[None]:
    """Wrap the whole writing of the GeoTIFF at ``path`` (its closing included): GDAL's and
    libtiff's failures raise as in :func:`gdal_write_errors`, and the file is then read back
    (:func:`verify_written`), the check every writer makes before its output is renamed
    into place."""
    with gdal_write_errors(path):
        yield
    verify_written(path)


def gdal_reason(exc: BaseException) -> str:
    """What GDAL said behind a rasterio error: rasterio's own message often only says
    "See previous exception for details", an exception the user never sees."""
    reason, e, seen = str(exc), exc.__cause__ or exc.__context__, 0
    while e is not None and seen < 10:
        reason, e, seen = str(e) or reason, e.__cause__ or e.__context__, seen + 1
    return " ".join(reason.split())


def verify_written(path: str | os.PathLike) -> None:
    """Raise ``OSError`` (``filename=path``) unless the GeoTIFF at ``path`` is whole: it opens,
    every block of every band and overview lies inside the file, and its last block decodes.

    The check a writer makes before its output is renamed into place: a write that failed
    without GDAL noticing (libtiff on a full disk) leaves a file that is shorter than its
    own directory says, or no directory at all.
    """
    import rasterio
    from rasterio.windows import Window

    from s2pipe.outputs import nearly_full

    path = Path(path)

    def broken(why: str) -> OSError:
        code = errno.ENOSPC if nearly_full(path) else errno.EIO
        return OSError(code, f"{os.strerror(code)} ({why})", str(path))

    try:
        size = path.stat().st_size
        with rasterio.open(path) as ds:
            interleaved = ds.interleaving is None or ds.interleaving.name == "PIXEL"
            levels = [None, *range(len(ds.overviews(1)))]
            for band in [1] if interleaved else list(ds.indexes):
                for ovr in levels:
                    h, w = (ds.height, ds.width) if ovr is None else _overview_shape(ds, band, ovr)
                    bh, bw = ds.block_shapes[band - 1]
                    for r in range(-(-h // bh)):
                        for c in range(-(-w // bw)):
                            offset = ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=band, ovr=ovr)
                            count = ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=band, ovr=ovr)
                            if offset is None or count is None:
                                continue  # not a TIFF, or a sparse block GDAL reads as no data
                            if int(offset) + int(count) > size:
                                raise broken(f"block {c},{r} ends past the end of the file")
            bh, bw = ds.block_shapes[0]
            last = Window((ds.width - 1) // bw * bw, (ds.height - 1) // bh * bh,
                          ds.width - (ds.width - 1) // bw * bw, ds.height - (ds.height - 1) // bh * bh)
            ds.read(window=last)
    except Exception as exc:  # rasterio's errors: no directory, a block that does not decode
        if isinstance(exc, OSError) and exc.filename == str(path):
            raise
        raise broken(gdal_reason(exc)) from exc


def _overview_shape(ds: Any, band: int, ovr: int) -> tuple[int, int]:
    factor = ds.overviews(band)[ovr]
    return -(-ds.height // factor), -(-ds.width // factor)
