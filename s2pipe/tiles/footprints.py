"""``tiles.gpkg``: every tile's footprint with its manifest attributes, in one CRS.

The footprints of all products are written in the ground grid's CRS (the first
product's), so a set of several UTM zones opens as one layer; ``epsg`` keeps each
tile's own CRS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.tiles.manifest import ProductRecord, TileRecord


def write_footprints(path: Path, tiles: Sequence[TileRecord], products: Sequence[ProductRecord],
                     size: int, crs: CRS | None) -> None:
    import geopandas as gpd
    import shapely

    info = {p.key: p.info for p in products}
    parts = []
    for key in dict.fromkeys(t.product for t in tiles):
        mine = [t for t in tiles if t.product == key]
        transform = Affine(*info[key]["transform"][:6])
        boxes = []
        for t in mine:
            x0, y0 = transform * (t.col, t.row)
            x1, y1 = transform * (t.col + size, t.row + size)
            boxes.append(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        epsg = int(info[key]["epsg"])
        data: dict[str, Any] = {k: [getattr(t, k) for t in mine] for k in
                                ("id", "product", "row", "col", "split", "labelled_fraction",
                                 "nodata_fraction")}
        data["epsg"] = [epsg] * len(mine)
        for c in DEFAULT_LEGEND:
            data[f"class_{c.value}"] = [t.class_counts.get(str(c.value), 0) for t in mine]
        part = gpd.GeoDataFrame(data, geometry=boxes, crs=f"EPSG:{epsg}")
        parts.append(part.to_crs(crs) if crs is not None else part)
    gdf = gpd.GeoDataFrame(gpd.pd.concat(parts, ignore_index=True), crs=parts[0].crs)
    gdf.to_file(path, driver="GPKG", layer="tiles", engine="pyogrio")
