"""PNG quick-looks of Sentinel-2 products (SAFE folder, zipped SAFE, MTD_MSIL2A.xml, STAC
Item): true colour from the product's own B04, B03 and B02 files, each read decimated
(JPEG2000 resolution levels, COG overviews), drawn by :mod:`s2pipe.raster.quicklook`.

The 2-98 percentile stretch makes the product's radiometric offset irrelevant, so it is not
applied; DN 0 is no data (transparent).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from s2pipe.errors import OptionError, RasterError
from s2pipe.raster.profiles import gdal_reason, with_gdal_env
from s2pipe.raster.quicklook import TRUE_COLOUR, Quicklook, render_array


def is_product(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Sentinel-2 product (SAFE folder, zipped SAFE, its
    MTD_MSIL2A.xml or a STAC Item JSON) rather than a raster s2pipe wrote."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in (".zip", ".xml", ".json")


def _true_colour(product: Path, max_size: int) -> tuple[np.ndarray, int]:
    """B04, B03, B02 read decimated to ``max_size``: (3, h, w) DNs and the decimation."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    from s2pipe.sentinel2.reader import product_info

    files = product_info(product).band_files
    missing = [b for b in TRUE_COLOUR if b not in files]
    if missing:
        raise RasterError(f"{product} has no {', '.join(missing)} band file; a quick-look needs B04, B03, B02")
    bands, decimation = [], 1
    for band in TRUE_COLOUR:
        try:
            with rasterio.open(files[band]) as ds:
                decimation = max(1, math.ceil(max(ds.width, ds.height) / max_size))
                shape = (max(1, ds.height // decimation), max(1, ds.width // decimation))
                bands.append(ds.read(1, out_shape=shape, resampling=Resampling.nearest))
        except RasterioError as exc:
            raise RasterError(f"{files[band]} ({band} of {product}) cannot be read ({gdal_reason(exc)})") from None
    return np.stack(bands), decimation


@with_gdal_env
def render_product_quicklook(product: str | os.PathLike, out_png: str | os.PathLike, *,
                             max_size: int = 1500, overwrite: bool = False) -> Quicklook:
    """Render ``product`` in true colour as a PNG at ``out_png``, at most ``max_size`` px a side."""
    if max_size < 16:
        raise OptionError(f"max_size {max_size} is too small; use at least 16 pixels")
    product = Path(product)
    data, decimation = _true_colour(product, max_size)
    return render_array(product, out_png, "rgb", data, np.all(data > 0, axis=0), [], decimation,
                        overwrite=overwrite)
