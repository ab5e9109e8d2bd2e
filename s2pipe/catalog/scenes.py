"""What the choices need to know of a scene's Item: tile, time, cloud cover, baseline,
which product it is, how much of the area it covers and how cloudy it is there.

Tile, product name and baseline are read by :mod:`s2pipe.sentinel2.stac` (the one owner of
the catalogues' Item dialects). The cloud over the area is measured from the Item's SCL
asset where it has one (read at a coarse overview: a few KB per scene).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from s2pipe.catalog.area import Area
from s2pipe.sentinel2.stac import item_baseline, item_product_id, item_tile

log = logging.getLogger(__name__)

#: SCL classes counted as cloud over the area: cloud shadow, cloud medium/high, cirrus.
CLOUD_SCL = (3, 8, 9, 10)
#: The longest side, in pixels, of the SCL read to measure the cloud over the area.
CLOUD_READ_PX = 256


@dataclass
class Scene:
    """One scene found: its Item id and collection, product name, MGRS tile, sensing time
    (ISO), the scene's cloud cover (%), the cloud over the area (%, None when not
    measured), baseline, the share of the area it covers (0..1), and where its Item was
    written (None until written)."""

    item_id: str
    collection: str
    product: str
    tile: str
    datetime: str
    cloud: float | None
    aoi_cloud: float | None
    baseline: str
    coverage: float
    item_path: str | None = None

    @property
    def date(self) -> dt.date:
        return dt.datetime.fromisoformat(self.datetime.replace("Z", "+00:00")).date()

    @property
    def ranking_cloud(self) -> float:
        """The cloud that ranks scenes: over the area where measured, else the scene's."""
        value = self.aoi_cloud if self.aoi_cloud is not None else self.cloud
        return 100.0 if value is None else float(value)


@dataclass
class Candidate:
    """A :class:`Scene` with its pystac Item and footprint (shapely, EPSG:4326)."""

    scene: Scene
    item: Any = field(repr=False)
    footprint: Any = field(repr=False)

    @property
    def product_key(self) -> tuple[str, str, str]:
        """The same datatake over the same tile, whatever the collection and baseline:
        (spacecraft, sensing time to the second, tile)."""
        props = self.item.properties
        m = re.match(r"(S2[A-D])_", self.scene.product)
        platform = str(props.get("platform") or "").lower()
        craft = m.group(1) if m else ("S2" + platform[-1].upper() if platform.startswith("sentinel-2") else platform)
        when = self.item.datetime.strftime("%Y%m%dT%H%M%S") if self.item.datetime else self.scene.datetime
        return craft, when, self.scene.tile


def candidate(item: Any, area: Area) -> Candidate:
    """The :class:`Candidate` of pystac ``item`` over ``area``."""
    from shapely.geometry import shape

    footprint = shape(item.geometry) if item.geometry else None
    if footprint is None and item.bbox:
        from shapely.geometry import box

        footprint = box(*item.bbox[:4])
    cloud = item.properties.get("eo:cloud_cover")
    when = item.datetime or dt.datetime.fromisoformat(str(item.properties.get("start_datetime")).replace("Z", "+00:00"))
    scene = Scene(item_id=item.id, collection=str(item.collection_id or ""), product=item_product_id(item),
                  tile=item_tile(item), datetime=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  cloud=None if cloud is None else float(cloud), aoi_cloud=None, baseline=item_baseline(item),
                  coverage=area.share(footprint) if footprint is not None else 0.0)
    return Candidate(scene, item, footprint)


def asset_href(asset: Any) -> str:
    """Where an asset is: its href made absolute against its Item, except a local absolute
    path that exists (a user's archive served by a local API), which stays a path."""
    href = str(asset.href)
    if os.path.isabs(href) and os.path.exists(href):
        return href
    return str(asset.get_absolute_href() or href)


def cloud_over_area(item: Any, area: Area) -> float | None:
    """The cloud (SCL shadow, cloud and cirrus classes) in % of the valid pixels of
    ``item``'s SCL asset inside ``area``; None when the Item has no SCL asset, it cannot be
    read, or no valid pixel lies in the area."""
    import numpy as np
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom
    from rasterio.windows import Window, from_bounds
    from shapely.geometry import mapping, shape

    from s2pipe.remote import gdal_path

    asset = next((a for k, a in item.assets.items() if k.lower() in ("scl", "scl_20m")), None)
    if asset is None:
        return None
    path = gdal_path(asset_href(asset))
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                return None
            geom = shape(transform_geom("EPSG:4326", src.crs, mapping(area.geometry)))
            win = from_bounds(*geom.bounds, transform=src.transform).intersection(Window(0, 0, src.width, src.height))
            win = win.round_offsets().round_lengths()
            if win.width < 1 or win.height < 1:
                return None
            scale = max(1.0, max(win.width, win.height) / CLOUD_READ_PX)
            shape_out = (max(1, int(win.height / scale)), max(1, int(win.width / scale)))
            scl = src.read(1, window=win, out_shape=shape_out)
            transform = src.window_transform(win) * rasterio.Affine.scale(win.width / shape_out[1],
                                                                          win.height / shape_out[0])
    except (RasterioError, ValueError) as exc:
        log.info("%s: the SCL could not be read (%s); ranked by the scene's cloud cover", item.id, exc)
        return None
    inside = ~geometry_mask([mapping(geom)], out_shape=scl.shape, transform=transform, all_touched=True)
    valid = inside & (scl != 0)
    if not valid.any():
        return None
    return round(float(np.isin(scl[valid], CLOUD_SCL).mean() * 100.0), 3)
