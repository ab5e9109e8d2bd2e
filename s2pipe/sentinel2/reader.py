"""One entry point for every scene s2pipe reads: ``open_scene`` and ``product_info``.

``open_scene`` takes a ``.SAFE`` folder, a zipped SAFE (read in place via /vsizip/), an
``MTD_MSIL2A.xml`` path, a STAC Item (``.json`` file or URL) of a scene's COGs, or a
12-band stack written by ``prepare --stack``, and returns
a :class:`s2pipe.sentinel2.scene.Scene`: the 10 m grid and harmonised uint16 windows of
the 12 bands (DN = 10000 * reflectance whatever the baseline, 0 = no data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, cast

from s2pipe.errors import InputNotFoundError, OptionError
from s2pipe.raster.profiles import with_gdal_env
from s2pipe.remote import is_url
from s2pipe.sentinel2.facts import DEFAULT_SCL_MASK, RESAMPLING_NAMES, ResamplingName
from s2pipe.sentinel2.metadata import ProductInfo, read_product_metadata
from s2pipe.sentinel2.safe import open_safe
from s2pipe.sentinel2.scene import Scene
from s2pipe.sentinel2.stac import is_stac_item, open_stac, read_stac_item
from s2pipe.sentinel2.stack import open_stack

STACK_SUFFIXES = (".tif", ".tiff")


def _is_stack(path: str | os.PathLike) -> bool:
    if is_url(path):
        return str(path).lower().endswith(STACK_SUFFIXES)
    return Path(path).suffix.lower() in STACK_SUFFIXES and Path(path).is_file()


def as_product(path: str | os.PathLike) -> Path:
    """``path`` as the commands keep it: a Path, or a URL left as it is (a Path would
    fold its ``//``); both are accepted wherever a product is."""
    return cast(Path, str(path)) if is_url(path) else Path(path)


def open_scene(path: str | os.PathLike, *, resampling: ResamplingName = "bilinear",
               mask_scl: Sequence[int] = DEFAULT_SCL_MASK, trust_pixels: bool = False) -> Scene:
    """Open a product or stack for windowed, harmonised reading of the 12 bands.

    Raises :class:`InputNotFoundError`, :class:`SafeFormatError` (unreadable metadata,
    L1C, not Sentinel-2), :class:`MissingBandError` (a band file missing, not matching
    the grid, or - when read - truncated or corrupt), :class:`RadiometryError` (the pixels
    contradict the stated offset; ``trust_pixels`` follows the pixels instead) or
    :class:`OptionError`.
    """
    if resampling not in RESAMPLING_NAMES:
        raise OptionError(f"resampling {resampling!r} is unknown; use one of "
                          f"{', '.join(RESAMPLING_NAMES)}")
    if is_stac_item(path):
        return open_stac(read_stac_item(path), resampling=resampling, mask_scl=mask_scl,
                         trust_pixels=trust_pixels)
    if _is_stack(path):
        return open_stack(path)
    return open_safe(read_product_metadata(path), resampling=resampling, mask_scl=mask_scl,
                     trust_pixels=trust_pixels)


@with_gdal_env
def product_info(path: str | os.PathLike) -> ProductInfo:
    """What s2pipe reads from a product (metadata only), a STAC Item or a ``prepare --stack`` file."""
    if is_stac_item(path):
        return read_stac_item(path)
    if _is_stack(path):
        with open_stack(path) as scene:
            return scene.info
    return read_product_metadata(path)


def read_product_list(path: str | os.PathLike) -> list[Path]:
    """The products listed in a text file, one path per line; blank lines and ``#`` comments
    are skipped, relative paths are relative to the file's folder."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputNotFoundError(f"{path}: cannot read the product list ({exc})") from None
    entries = [line.split("#", 1)[0].strip() for line in lines]
    return [as_product(e) if is_url(e) or Path(e).is_absolute() else path.parent / e for e in entries if e]
