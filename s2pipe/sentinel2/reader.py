"""One entry point for every scene s2pipe reads: ``open_scene`` and ``product_info``.

``open_scene`` takes a ``.SAFE`` folder, a zipped SAFE (read in place via /vsizip/), an
``MTD_MSIL2A.xml`` path, a STAC Item (``.json`` file or URL) of a scene's COGs, or a
12-band stack written by ``prepare --stack``, and returns
a :class:`s2pipe.sentinel2.scene.Scene`: the 10 m grid and harmonised uint16 windows of
the 12 bands (DN = 10000 * reflectance whatever the baseline, 0 = no data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from s2pipe.errors import InputNotFoundError, OptionError
from s2pipe.provenance import OffsetCheck
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


@dataclass(frozen=True)
class ReadOptions:
    """How a product is read: band resampling to 10 m, SCL classes masked, and whether the
    pixels win over a stated offset they contradict (:mod:`s2pipe.sentinel2.radiometry`)."""

    resampling: ResamplingName = "bilinear"
    mask_scl: tuple[int, ...] = DEFAULT_SCL_MASK
    trust_pixels: bool = False

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLING_NAMES:
            raise OptionError(f"resampling {self.resampling!r} is unknown; use one of "
                              f"{', '.join(RESAMPLING_NAMES)}")
        object.__setattr__(self, "mask_scl", tuple(sorted(int(c) for c in self.mask_scl)))


@dataclass(frozen=True)
class Product:
    """A product as opening it learnt it: metadata parsed (or the Item fetched) and the
    offset checked against the pixels. Picklable: planning steps hand it to the work and
    to cluster tasks, and :func:`open_scene` reopens its files without parsing or checking
    again."""

    path: Path
    format: Literal["safe", "stac", "stack"]
    info: ProductInfo                 # offsets as applied (after the check)
    offset_check: OffsetCheck | None  # None for a stack: already harmonised
    read: ReadOptions

    @property
    def name(self) -> str:
        return self.info.name


def open_scene(source: str | os.PathLike | Product, read: ReadOptions = ReadOptions()) -> Scene:
    """Open a product or stack for windowed, harmonised reading of the 12 bands.

    ``source`` is a path or URL (parsed and checked here), or the :class:`Product` of an
    earlier open (its files reopened as they were read then; ``read`` is then its own).
    The scene's ``product`` is what this open learnt.

    Raises :class:`InputNotFoundError`, :class:`SafeFormatError` (unreadable metadata,
    L1C, not Sentinel-2), :class:`MissingBandError` (a band file missing, not matching
    the grid, or - when read - truncated or corrupt), :class:`RadiometryError` (the pixels
    contradict the stated offset; ``read.trust_pixels`` follows the pixels instead).
    """
    if isinstance(source, Product):
        if source.format == "stack":
            scene: Scene = open_stack(source.path)
        else:
            opener = open_stac if source.format == "stac" else open_safe
            scene = opener(source.info, resampling=source.read.resampling, mask_scl=source.read.mask_scl,
                           checked=source.offset_check)
        scene.product = source
        return scene
    path = as_product(source)
    if is_stac_item(path):
        stac = open_stac(read_stac_item(path), resampling=read.resampling, mask_scl=read.mask_scl,
                         trust_pixels=read.trust_pixels)
        stac.product = Product(path, "stac", stac.info, stac.offset_check, read)
        return stac
    if _is_stack(path):
        stack = open_stack(path)
        stack.product = Product(path, "stack", stack.info, None, read)
        return stack
    safe = open_safe(read_product_metadata(path), resampling=read.resampling, mask_scl=read.mask_scl,
                     trust_pixels=read.trust_pixels)
    safe.product = Product(path, "safe", safe.info, safe.offset_check, read)
    return safe


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
