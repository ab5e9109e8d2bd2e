"""Every raster file format s2pipe writes, as data, and the GDAL settings it runs with.

A profile holds the creation options of one kind of output; writers add only what
depends on the data (size, count, dtype, CRS, transform). Changing how s2pipe stores a
kind of raster is a change here and nowhere else.
"""

from __future__ import annotations

import os
from typing import Any

from rasterio.env import Env

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
#: Creation options of the Cloud-Optimized GeoTIFF maps (``predict``).
COG_BLOCK = 512
COG: dict[str, Any] = dict(driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=COG_BLOCK, BIGTIFF="IF_SAFER")
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
#: predictable, JPEG2000 decodes on all cores, and opening a file does not list its folder
#: (slow for SAFE folders and remote files). A variable set in the environment wins.
GDAL_DEFAULTS: dict[str, Any] = {"GDAL_CACHEMAX": 256, "GDAL_NUM_THREADS": "ALL_CPUS",
                                 "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def gdal_env(**overrides: Any) -> Env:
    """A ``rasterio.Env`` with s2pipe's GDAL settings, for the duration of one job.

    ``overrides`` are s2pipe's own choices for that job (e.g. a cache sized for it); the
    user's environment variables still win over the defaults, not over the overrides.
    """
    options = {k: v for k, v in GDAL_DEFAULTS.items() if k not in os.environ}
    options.update(overrides)
    return Env(**options)
