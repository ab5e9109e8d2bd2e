"""The Sentinel-2 L2A reader: product metadata, band files, stacks, one harmonised grid.

The names below are loaded when first used, so that importing a plain-data module of this
package (``s2pipe.sentinel2.facts``, as the CLI does for its choices) imports no rasterio.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {"BANDS": "facts", "DEFAULT_SCL_MASK": "facts", "RADIOMETRY_CONVENTION": "facts",
          "ProductInfo": "metadata", "read_product_metadata": "metadata", "open_scene": "reader",
          "product_info": "reader", "Scene": "scene", "write_stack": "stack"}

__all__ = ["BANDS", "DEFAULT_SCL_MASK", "RADIOMETRY_CONVENTION", "Grid", "ProductInfo", "Scene",
           "open_scene", "product_info", "read_product_metadata", "write_stack"]


def __getattr__(name: str) -> Any:
    if name == "Grid":
        from s2pipe.raster.grid import Grid

        return Grid
    if name in _WHERE:
        return getattr(import_module(f"s2pipe.sentinel2.{_WHERE[name]}"), name)
    raise AttributeError(f"module 's2pipe.sentinel2' has no attribute {name!r}")
