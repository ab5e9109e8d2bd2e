"""A STAC Item describing a map s2pipe wrote, beside it (``landcover.tif`` ->
``landcover.json``), so that the maps are found by the catalogue tools that find the scenes.

Whatever the map's kind (:data:`s2pipe.raster.maps.MAP_KINDS`, read by
:func:`~s2pipe.raster.maps.open_map`), the Item states its grid (``proj``), its bands
(``raster``: data type, no data, resolution, scale of probabilities), the classes its
pixels are (``classification``: value, name, colour, as published land-cover products
describe theirs) where the legend names pixel values, its lineage (``processing``: s2pipe
and its version; ``derived_from`` links to the Items of the source scenes and of the maps
it joins) and the model's contract (``s2pipe:model``: bands, normalisation, tile size,
architecture, radiometry and legend, as the checkpoint states them). Extension schema
versions are those of the published land-cover Items; the Items validate against them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from s2pipe import __version__
from s2pipe.outputs import atomic_output
from s2pipe.raster.maps import MAP_KINDS, MapKind, MapRaster, open_map

CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: Kinds whose pixels are probabilities (1/255), not the legend's class values.
PROBABILITY_KINDS: tuple[str, ...] = ("probabilities", "confidence")
#: The fields of a model's metadata that make its contract with predict.
CONTRACT_FIELDS = ("bands", "legend", "normalization", "tile_size", "arch", "radiometry")
_SENSING = re.compile(r"_(\d{8}T\d{6})_")
_LINEAGE = {"classes": "land-cover classes predicted by a U-Net from Sentinel-2 L2A reflectances",
            "probabilities": "class probabilities of a U-Net from Sentinel-2 L2A reflectances",
            "confidence": "the probability of the predicted class (U-Net, Sentinel-2 L2A)",
            "sources": "which scene weighed most in a mosaic of s2pipe maps, and how many were valid",
            "stack": "12 harmonised Sentinel-2 L2A bands (s2pipe prepare --stack)",
            "change": "land-cover change, from -> to, between two s2pipe maps (s2pipe change)"}


def _mosaic(m: MapRaster) -> bool:
    return m.kind != "change" and m.provenance.rule is not None


def stac_item_path(map_path: str | os.PathLike) -> Path:
    """Where the Item of ``map_path`` is written: beside it, ``.json`` for its suffix."""
    return Path(map_path).with_suffix(".json")


def read_model_contract(model_path: str | os.PathLike) -> dict[str, Any]:
    """The contract (:data:`CONTRACT_FIELDS`) of an s2pipe model, ``.pt`` or ``.onnx``
    (imports torch or ONNX Runtime)."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        from s2pipe.model.onnx import open_onnx

        meta = open_onnx(path).meta
    else:
        from s2pipe.model.checkpoint import read_checkpoint

        meta = read_checkpoint(path).meta
    data = meta.to_dict()
    return {k: data[k] for k in CONTRACT_FIELDS if k in data}


def _href(target: str | os.PathLike, start: Path) -> str:
    text = str(target)
    if "://" in text:
        return text
    return os.path.relpath(Path(text).resolve(), start.parent.resolve())


def _source_items(m: MapRaster) -> list[str]:
    """The Items a map derives from: its scene's Item; for maps of maps (mosaic, change),
    the Items s2pipe wrote beside them, else their scenes' Items."""
    from s2pipe.sentinel2.stac import is_stac_item

    prov = m.provenance
    out = [prov.scene] if prov.scene and is_stac_item(prov.scene) else []
    for entry in prov.scenes or ():
        source = str(entry.get("map") or "")
        if not source:
            continue
        if stac_item_path(source).is_file():
            out.append(str(stac_item_path(source)))
            continue
        try:
            inner = open_map(source, MAP_KINDS)
        except Exception:  # noqa: BLE001 - a moved or damaged input only loses its link
            continue
        if inner.provenance.scene and is_stac_item(inner.provenance.scene):
            out.append(inner.provenance.scene)
    return list(dict.fromkeys(out))


def _products(m: MapRaster) -> list[str]:
    names = [m.provenance.product] if m.provenance.product else []
    names += [str(s.get("product")) for s in m.provenance.scenes or () if s.get("product")]
    return list(dict.fromkeys(names))


def _times(products: Sequence[str], path: Path) -> tuple[dt.datetime | None, dict[str, str]]:
    """(datetime, start/end properties): the sensing time of one product, the span of
    several; the file's time when no product name states one."""
    found = sorted(dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
                   for p in products if (m := _SENSING.search(f"_{p}_")))
    if len(found) == 1:
        return found[0], {}
    if found:
        return None, {"start_datetime": _iso(found[0]), "end_datetime": _iso(found[-1])}
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc), {}


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _footprint(m: MapRaster) -> dict[str, Any]:
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    ring = box(*m.grid.bounds).exterior
    dense = [ring.interpolate(i / 16, normalized=True) for i in range(17)]  # edges bend in lon/lat
    poly = {"type": "Polygon", "coordinates": [[(p.x, p.y) for p in dense]]}
    lonlat = mapping(shape(transform_geom(m.grid.crs, "EPSG:4326", poly)))
    return {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in lonlat["coordinates"][0]]]}


def _classes(m: MapRaster) -> list[dict[str, Any]] | None:
    if m.legend is None or m.kind in PROBABILITY_KINDS:
        return None
    classes: list[dict[str, Any]] = []
    if m.nodata is not None and int(m.nodata) not in {c.value for c in m.legend}:
        classes.append({"value": int(m.nodata), "name": "nodata", "description": "No data"})
    for c in m.legend:
        classes.append({"value": c.value, "name": re.sub(r"[^a-z0-9]+", "-", c.name.lower()).strip("-"),
                        "description": c.name, "color_hint": c.color.lstrip("#").upper()})
    return classes


def _bands(m: MapRaster) -> list[dict[str, Any]]:
    res = abs(float(m.grid.transform.a))
    bands = []
    for i in range(m.count):
        band: dict[str, Any] = {"data_type": m.dtype, "spatial_resolution": res}
        if m.nodata is not None:
            band["nodata"] = int(m.nodata) if float(m.nodata).is_integer() else m.nodata
        if m.kind in PROBABILITY_KINDS:
            band.update(scale=round(1 / 255, 8), offset=0.0)
        if i < len(m.descriptions) and m.descriptions[i]:
            band["s2pipe:description"] = m.descriptions[i]
        bands.append(band)
    return bands


def _model(m: MapRaster, contract: Mapping[str, Any] | None) -> dict[str, Any] | None:
    p = m.provenance
    made = {"file": p.model, "s2pipe_version": p.model_version, "tile_size": p.tile_size, "runtime": p.runtime,
            "precision": p.precision, "tta": p.tta, "overlap": p.overlap, "mask_clouds": p.mask_clouds,
            "radiometry": p.radiometry.to_dict() if p.radiometry else None}
    out: dict[str, Any] = {k: v for k, v in made.items() if v is not None}
    if contract:
        out.update(dict(contract))
    elif p.legend is not None:
        out["legend"] = [{"value": c.value, "name": c.name, "color": c.color} for c in p.legend]
    return out or None


def describe_map(path: str | os.PathLike, *, sources: Sequence[str | os.PathLike] = (),
                 model: Mapping[str, Any] | None = None, collection: str | None = None,
                 kinds: Sequence[MapKind] = MAP_KINDS, write: bool = True, overwrite: bool = False) -> Any:
    """The STAC Item (pystac) of the map at ``path``, written to :func:`stac_item_path`
    unless ``write`` is false (refused if it exists, unless ``overwrite``; written whole
    or not at all).

    ``sources`` are Items (paths or URLs) it derives from, beyond those its provenance
    names; ``model`` the model's contract (:func:`read_model_contract`), else what the map
    records of it; ``collection`` the id of a Collection it belongs to.
    """
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    m = open_map(path, kinds)
    out = stac_item_path(m.path)
    when, span = _times(_products(m), m.path)
    geometry = _footprint(m)
    from shapely.geometry import shape

    item = pystac.Item(id=m.path.stem, geometry=geometry, bbox=list(shape(geometry).bounds), datetime=when,
                       properties={**span}, collection=collection)
    item.properties.update({
        "s2pipe:kind": m.kind,
        "processing:software": {"s2pipe": m.provenance.version or __version__},
        "processing:lineage": _LINEAGE.get(m.kind, f"an s2pipe map ({m.kind})")
        + (f", a mosaic of {len(m.provenance.scenes or ())} scene maps" if _mosaic(m) else ""),
        "processing:datetime": _iso(dt.datetime.fromtimestamp(m.path.stat().st_mtime, dt.timezone.utc)),
    })
    products = _products(m)
    if products:
        item.properties["s2pipe:products"] = products
    contract = _model(m, model) if m.kind not in ("sources", "stack") else None
    if contract:
        item.properties["s2pipe:model"] = contract
    if _mosaic(m):
        item.properties["s2pipe:mosaic"] = {"rule": m.provenance.rule, "feather": m.provenance.feather}
    if m.kind == "change":
        p = m.provenance
        item.properties["s2pipe:change"] = {"before": p.before, "after": p.after, "rule": p.rule,
                                            "min_confidence": p.min_confidence, "mmu_ha": p.mmu_ha}
    asset = pystac.Asset(href=_href(m.path, out), media_type=pystac.MediaType.COG, roles=["data"],
                         title=f"{m.kind} ({m.path.name})")
    item.add_asset("data", asset)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = m.grid.crs.to_epsg()
    proj.apply(epsg=epsg, wkt2=None if epsg else m.grid.crs.to_wkt(), shape=[m.grid.height, m.grid.width],
               transform=list(m.grid.transform)[:6], bbox=list(m.grid.bounds))
    RasterExtension.ext(asset, add_if_missing=True).apply([RasterBand.create(**{k: v for k, v in b.items()
                                                                            if ":" not in k}) for b in _bands(m)])
    for band, extra in zip(asset.extra_fields["raster:bands"], _bands(m)):
        band.update({k: v for k, v in extra.items() if ":" in k})
    classes = _classes(m)
    if classes:
        item.stac_extensions.append(CLASSIFICATION_SCHEMA)
        asset.extra_fields["classification:classes"] = classes
    item.stac_extensions.append(PROCESSING_SCHEMA)
    for src in [*_source_items(m), *map(str, sources)]:
        item.add_link(pystac.Link("derived_from", _href(src, out), media_type=pystac.MediaType.GEOJSON))
    if write:
        import json

        with atomic_output(out, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1),
                           encoding="utf-8")
    return item
