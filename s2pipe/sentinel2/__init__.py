"""The Sentinel-2 L2A reader: product metadata, band files, stacks, one harmonised grid."""

from s2pipe.raster.grid import Grid
from s2pipe.sentinel2.facts import BANDS, DEFAULT_SCL_MASK, RADIOMETRY_CONVENTION
from s2pipe.sentinel2.metadata import ProductInfo, read_product_metadata
from s2pipe.sentinel2.reader import open_scene, product_info
from s2pipe.sentinel2.scene import Scene
from s2pipe.sentinel2.stack import write_stack

__all__ = ["BANDS", "DEFAULT_SCL_MASK", "RADIOMETRY_CONVENTION", "Grid", "ProductInfo", "Scene",
           "open_scene", "product_info", "read_product_metadata", "write_stack"]
