"""A product as a STAC Item of Cloud-Optimized GeoTIFFs, as the cloud catalogues serve it.

:func:`write_stac_item` turns a SAFE (the synthetic one of :mod:`s2pipe.synth.product`)
into a folder holding one COG per band at its native resolution (the same DNs, the same
baseline convention) and the item JSON, with the asset keys and properties of Earth
Search (``sentinel-2-l2a``: ``coastal`` ... ``swir22``, ``scl``, ``earthsearch:`` and
``raster:bands``) or of the Planetary Computer (``B01`` ... ``B12``, ``SCL``, no offsets
stated). Asset hrefs are relative to the item, so the folder can be moved or uploaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from s2pipe.raster import profiles
from s2pipe.sentinel2.assets import SCL_RESOLUTION, asset_key
from s2pipe.sentinel2.facts import BAND_RESOLUTION, BANDS, DEFAULT_OFFSET_N0400, QUANTIFICATION, has_offset
from s2pipe.sentinel2.metadata import ProductInfo, read_product_metadata

#: STAC extensions the written items use.
EXTENSIONS = ("https://stac-extensions.github.io/eo/v1.1.0/schema.json",
              "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
              "https://stac-extensions.github.io/raster/v1.1.0/schema.json")
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def item_id(product: str, naming: str) -> str:
    """The item id a catalogue gives product ``S2B_MSIL2A_20180607T095029_N0208_R079_T33UYS_...``:
    ``S2B_33UYS_20180607_0_L2A`` (Earth Search) or the name without the baseline
    (Planetary Computer)."""
    if naming == "earth-search":
        m = re.match(r"(S2[A-D])_MSIL2A_(\d{8})T\d{6}_N\d{4}_R\d{3}_T(\w{5})_", product)
        if m:
            return f"{m.group(1)}_{m.group(3)}_{m.group(2)}_0_L2A"
    return re.sub(r"_N\d{4}_", "_", product)


def _file_name(band: str, naming: str, info: ProductInfo) -> str:
    res = BAND_RESOLUTION.get(band, SCL_RESOLUTION)
    if naming == "earth-search":
        return f"{band}.tif"
    start = re.search(r"_(\d{8}T\d{6})_", info.name)
    return f"T{info.tile}_{start.group(1) if start else ''}_{band}_{res}m.tif"


def _geometry(info: ProductInfo) -> tuple[dict[str, Any], list[float]]:
    from rasterio.warp import transform_geom

    a, _, c, _, e, f = info.transform[:6]
    x0, y0, x1, y1 = c, f + e * info.height, c + a * info.width, f
    box = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    geom = transform_geom(f"EPSG:{info.epsg}", "EPSG:4326", box)
    ring = geom["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return geom, [min(lons), min(lats), max(lons), max(lats)]


def _asset(band: str, href: str, src: Any, info: ProductInfo, naming: str) -> dict[str, Any]:
    res = BAND_RESOLUTION.get(band, SCL_RESOLUTION)
    asset: dict[str, Any] = {"href": href, "type": COG_TYPE, "title": f"{band} - {res}m",
                             "roles": ["data"], "gsd": res,
                             "proj:shape": [src.height, src.width],
                             "proj:transform": list(src.transform)[:6]}
    if band == "SCL":
        asset["title"] = "Scene classification map (SCL)"
        if naming == "earth-search":
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}]
        return asset
    asset["eo:bands"] = [{"name": asset_key(band, naming)}]
    asset["roles"] = ["data", "reflectance"] if naming == "earth-search" else ["data"]
    if naming == "earth-search":
        offset = DEFAULT_OFFSET_N0400 / QUANTIFICATION if has_offset(info.baseline) else 0.0
        asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                  "spatial_resolution": res, "scale": 1 / QUANTIFICATION,
                                  "offset": offset}]
    return asset


def write_stac_item(safe: Path, out_dir: Path, *, naming: str,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Write the 12 bands and SCL of ``safe`` as COGs into ``out_dir`` (created) and the
    item JSON beside them; returns the item's path."""
    import pystac
    import rasterio
    import rasterio.shutil

    info = read_product_metadata(safe)
    cloud = re.search(r"<Cloud_Coverage_Assessment>([\d.]+)<", (Path(safe) / "MTD_MSIL2A.xml").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    assets: dict[str, pystac.Asset] = {}
    sources = {**{b: info.band_files[b] for b in BANDS}, "SCL": info.scl_file}
    for band, band_path in sources.items():
        name = _file_name(band, naming, info)
        opts = dict(profiles.COG_BAND, OVERVIEW_RESAMPLING="NEAREST" if band == "SCL" else "AVERAGE")
        with rasterio.open(str(band_path)) as src:
            rasterio.shutil.copy(src, out_dir / name, **opts)
            fields = _asset(band, name, src, info, naming)
        href = fields.pop("href")
        assets[asset_key(band, naming)] = pystac.Asset(href, title=fields.pop("title"), media_type=fields.pop("type"),
                                                       roles=fields.pop("roles"), extra_fields=fields)
        if progress is not None:
            progress(1)
    geometry, bbox = _geometry(info)
    tile = info.tile
    props: dict[str, Any] = {"platform": info.spacecraft.lower() if naming == "earth-search" else info.spacecraft,
                             "constellation": "sentinel-2" if naming == "earth-search" else "Sentinel 2",
                             "instruments": ["msi"], "proj:epsg": info.epsg,
                             "s2:product_uri": f"{info.name}.SAFE", "s2:product_type": info.product_type,
                             "s2:processing_baseline": info.baseline}
    if cloud:  # the scene's cloud cover, as every catalogue states it
        props["eo:cloud_cover"] = round(float(cloud.group(1)), 3)
    if naming == "earth-search":
        props.update({"mgrs:utm_zone": int(tile[:2]), "mgrs:latitude_band": tile[2],
                      "mgrs:grid_square": tile[3:], "grid:code": f"MGRS-{tile}",
                      "earthsearch:boa_offset_applied": False})
    else:
        props["s2:mgrs_tile"] = tile
    when = datetime.fromisoformat(info.sensing_time.replace("Z", "+00:00"))
    item = pystac.Item(item_id(info.name, naming), geometry, bbox, when, props, stac_extensions=list(EXTENSIONS),
                       collection="sentinel-2-l2a", assets=assets)
    path = out_dir / f"{item.id}.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1),
                    encoding="utf-8")
    return path
