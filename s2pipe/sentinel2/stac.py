"""STAC Items of Sentinel-2 L2A scenes as products: a :class:`ProductInfo` from the item.

Catalogues describe the same scene differently, and this module owns those differences:

- asset keys: Earth Search (``sentinel-2-l2a``, ``sentinel-2-c1-l2a``) names bands by
  common name (``coastal``, ``blue`` ... ``swir22``, ``scl``) with JPEG2000 twins
  (``blue-jp2``); Planetary Computer by band id (``B01`` ... ``B12``, ``SCL``); the
  Copernicus Data Space by id and resolution (``B02_10m``, ``SCL_20m``, JPEG2000 files).
  Assets are chosen by band (``eo:bands`` name or common name, else the key) and resolution
  (``gsd``, ``proj:transform``, a ``_20m`` suffix): native first, a COG over its JP2 twin
  (:func:`band_assets`); a band offered only coarser is read so and resampled, and noted.
- the baseline: ``s2:processing_baseline``, ``processing:version``, or only in the product
  id (``..._N0509_...``).
- the offset: ``earthsearch:boa_offset_applied`` (or the older ``sentinel:`` name), asset
  ``raster:bands`` (STAC 1.0) or asset-level ``raster:offset``/``raster:scale`` (STAC 1.1),
  item-level ``raster:bands``, or nothing (then the baseline decides, as for a SAFE).
- the CRS: ``proj:epsg`` or ``proj:code`` on the item or on each asset.

Bands are then read like a SAFE's band files (:mod:`s2pipe.sentinel2.safe`): same grid
checks, resampling, offsets and masks. Hrefs become GDAL paths through
:func:`s2pipe.remote.gdal_path` (local files, ``/vsicurl/``, ``/vsis3/`` ...).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from s2pipe.errors import MissingBandError, RemoteError, SafeFormatError
from s2pipe.provenance import OffsetCheck
from s2pipe.remote import gdal_path, is_unsigned_blob, is_url, read_bytes
from s2pipe.sentinel2.assets import asset_keys, find_asset
from s2pipe.sentinel2.facts import (
    BAND_RESOLUTION,
    BANDS,
    DEFAULT_OFFSET_N0400,
    QUANTIFICATION,
    STAC_NAMINGS,
    baseline_number,
    has_offset,
)
from s2pipe.sentinel2.metadata import ProductInfo
from s2pipe.sentinel2.safe import SafeScene, open_safe

log = logging.getLogger(__name__)

#: The naming of asset keys ``synth --format stac`` can write, by catalogue.
NAMINGS = STAC_NAMINGS
_PRODUCT_ID = re.compile(r"S2[A-D]_MSIL(?P<level>1C|2A)_(?P<time>\d{8}T\d{6})_N(?P<n>\d{4})_R\d{3}_"
                         r"T(?P<tile>\d{2}[A-Z]{3})_\d{8}T\d{6}")
_OFFSET_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
_BASELINE_FIELDS = ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline")
_ID_FIELDS = ("s2:product_uri", "sentinel:product_id", "s2:product_id")


def is_stac_item(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a STAC Item (a ``.json`` file or URL)."""
    return str(path).lower().split("?", 1)[0].endswith(".json")


def load_item(href: str | os.PathLike) -> Any:
    """The :class:`pystac.Item` at ``href`` (a local path or URL), asset hrefs made absolute."""
    import pystac

    href = str(href)
    try:
        data = json.loads(read_bytes(href))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SafeFormatError(f"{href}: not a JSON document ({exc}); give a STAC Item of a "
                              "Sentinel-2 L2A scene") from None
    if not isinstance(data, dict) or data.get("type") != "Feature":
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise SafeFormatError(f"{href}: a {kind or 'JSON'} object, not a STAC Item (type Feature); give "
                              "one item of a Sentinel-2 L2A scene")
    try:
        item = pystac.Item.from_dict(data, migrate=False, preserve_dict=True)
    except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
        raise SafeFormatError(f"{href}: not a readable STAC Item ({exc})") from None
    item.set_self_href(href if is_url(href) else os.path.abspath(href))
    return item


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) not in (None, "")), None)


def _check_sentinel2_l2a(item: Any, product_id: str, where: str) -> None:
    props = item.properties
    platform = str(props.get("platform") or "").lower()
    constellation = str(props.get("constellation") or "").lower().replace(" ", "-")
    collection = str(item.collection_id or "").lower()
    s2 = platform.startswith("sentinel-2") or constellation == "sentinel-2" or "sentinel-2" in collection
    if not s2:
        what = platform or constellation or collection or "unknown"
        raise SafeFormatError(f"{where}: an item of {what} (collection {item.collection_id or '?'}), not "
                              "Sentinel-2; s2pipe needs a Sentinel-2 L2A item")
    ptype = str(_first(props, "s2:product_type", "product:type") or "")
    m = _PRODUCT_ID.search(product_id)
    if "l1c" in collection or ptype.endswith("1C") or (m and m.group("level") == "1C"):
        raise SafeFormatError(f"{where}: a Level-1C item (collection {item.collection_id or '?'}); s2pipe "
                              "needs Level-2A (surface reflectance), e.g. collection sentinel-2-l2a")


def _raster(asset: Any, props: dict[str, Any]) -> tuple[float | None, float | None]:
    """(scale, offset) of an asset in reflectance units, wherever the item states them."""
    fields = asset.extra_fields
    if "raster:scale" in fields or "raster:offset" in fields:  # raster extension 2 (STAC 1.1)
        return fields.get("raster:scale"), fields.get("raster:offset")
    for bands in (fields.get("raster:bands"), fields.get("bands"), props.get("raster:bands")):
        if isinstance(bands, list) and bands and isinstance(bands[0], dict):
            b = bands[0]
            scale, offset = _first(b, "scale", "raster:scale"), _first(b, "offset", "raster:offset")
            if scale is not None or offset is not None:
                return scale, offset
    return None, None


def _epsg(item: Any, asset: Any | None) -> int | None:
    for fields in (asset.extra_fields if asset is not None else {}, item.properties):
        if fields.get("proj:epsg"):
            return int(fields["proj:epsg"])
        code = str(fields.get("proj:code") or "")
        if code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
    return None


def _grid(item: Any, asset: Any, path: str, where: str) -> tuple[int, list[float], int, int]:
    """(EPSG, 10 m transform, width, height) from ``proj:`` fields, else from the file."""
    epsg = _epsg(item, asset)
    for fields in (asset.extra_fields, item.properties):
        t, shape = fields.get("proj:transform"), fields.get("proj:shape")
        if t and shape and abs(float(t[0]) - 10.0) < 1e-6 and epsg:
            return epsg, [float(v) for v in t[:6]], int(shape[1]), int(shape[0])
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            crs_epsg = src.crs.to_epsg() if src.crs else None
            return epsg or int(crs_epsg or 0), list(src.transform)[:6], src.width, src.height
    except RasterioError as exc:
        raise SafeFormatError(f"{where}: no proj:transform/proj:shape of the 10 m grid and {path} cannot be "
                              f"opened ({exc})") from None


def _offsets(item: Any, band_assets: dict[str, Any], baseline: str) -> tuple[dict[str, int], float, dict[str, Any]]:
    """DN offsets to add per band, the quantification value, and what the item said.

    A known baseline before 04.00 means no offset whatever the item states (ESA added none);
    otherwise an "offset applied" flag means none, then the assets' raster offset, then the
    baseline's convention. :mod:`s2pipe.sentinel2.radiometry` checks the result on the pixels.
    """
    props = item.properties
    flag_key = next((k for k in _OFFSET_FLAGS if isinstance(props.get(k), bool)), None)
    applied = props[flag_key] if flag_key else None
    stated = {b: _raster(a, props) for b, a in band_assets.items()}
    scales = {float(s) for s, _ in stated.values() if s}
    quantification = float(round(1.0 / scales.pop())) if len(scales) == 1 else float(QUANTIFICATION)
    raster_offset = {b: float(o) for b, (_, o) in stated.items() if o is not None}
    record: dict[str, Any] = {"offset_flag": flag_key, "offset_applied_flag": applied,
                              "raster_offset": raster_offset}
    pre_offset = baseline_number(baseline) is not None and not has_offset(baseline)
    offsets: dict[str, int] = {}
    for band in BANDS:
        scale, offset = stated.get(band, (None, None))
        if pre_offset or applied is True:
            offsets[band] = 0
        elif offset is not None:
            offsets[band] = int(round(float(offset) / float(scale or 1.0 / quantification)))
        else:
            offsets[band] = DEFAULT_OFFSET_N0400 if has_offset(baseline) else 0
    if pre_offset:
        record["source"] = f"processing baseline {baseline}: no offset before 04.00"
        if any(raster_offset.values()) or applied is False:
            record["note"] = "the item's raster offset / offset flag ignored: ESA added no offset before 04.00"
    elif applied is True:
        record["source"] = f"{flag_key}: true (DNs are already 10000 * reflectance)"
    elif raster_offset:
        record["source"] = "raster offset of the assets" + (f" ({flag_key}: false)" if flag_key else "")
    else:
        record["source"] = (f"processing baseline {baseline or '(unknown)'}"
                            + (f" ({flag_key}: false)" if flag_key else ""))
    return offsets, quantification, record


def _spacecraft(platform: str) -> str:
    m = re.fullmatch(r"sentinel[- ]?2([a-d])", platform.strip().lower())
    return f"Sentinel-2{m.group(1).upper()}" if m else platform


def item_product_id(item: Any) -> str:
    """The ESA product name of a pystac Item (``S2B_MSIL2A_..._N0509_...``), else its id."""
    return re.sub(r"\.SAFE$", "", str(_first(item.properties, *_ID_FIELDS) or item.id))


def item_baseline(item: Any) -> str:
    """The processing baseline of a pystac Item (``05.09``), from its properties or its
    product id; ``""`` when neither states one."""
    baseline = str(_first(item.properties, *_BASELINE_FIELDS) or "")
    m = _PRODUCT_ID.search(item_product_id(item)) or _PRODUCT_ID.search(item.id)
    if not baseline and m:
        baseline = f"{m.group('n')[:2]}.{m.group('n')[2:]}"
    return baseline


def item_tile(item: Any) -> str:
    """The MGRS tile of a pystac Item (``33UYS``): ``s2:mgrs_tile``, ``grid:code``, the
    ``mgrs:`` fields or the product id; ``""`` when none states it."""
    props = item.properties
    tile = str(_first(props, "s2:mgrs_tile") or "")
    if not tile:
        grid_code = str(props.get("grid:code") or "")
        mgrs = "".join(str(props.get(k) or "") for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"))
        tile = grid_code.split("-", 1)[1].lstrip("T") if grid_code.startswith("MGRS-") else mgrs
    if not tile:
        m = _PRODUCT_ID.search(item_product_id(item)) or _PRODUCT_ID.search(item.id)
        tile = m.group("tile") if m else ""
    return tile


def read_stac_item(href: str | os.PathLike) -> ProductInfo:
    """What s2pipe reads from a STAC Item of a Sentinel-2 L2A scene (no pixels read,
    except the header of a 10 m band when the item states no ``proj:`` grid).

    Raises :class:`InputNotFoundError`/:class:`RemoteError` when it cannot be read and
    :class:`SafeFormatError` for an item of another mission or level. Bands without an
    asset are listed in ``missing_bands`` with the keys looked for.
    """
    item = load_item(href)
    where = str(href)
    props = item.properties
    product_id = item_product_id(item)
    _check_sentinel2_l2a(item, f"{product_id} {item.id}", where)
    baseline = item_baseline(item)
    if not baseline:
        log.warning("%s: no processing baseline in the item or its product id", where)
    files: dict[str, str] = {}
    missing: list[str] = []
    found: dict[str, Any] = {}
    coarser: dict[str, int] = {}
    chosen: dict[str, str] = {}
    for band in BANDS:
        hit = find_asset(item.assets, band)
        if hit is None:
            missing.append(band)
            files[band] = f"(no asset {' / '.join(asset_keys(band))} in the item)"
            continue
        found[band] = hit.asset
        files[band] = gdal_path(hit.asset.get_absolute_href())
        chosen[band] = hit.label
        if hit.resolution is not None and hit.resolution > BAND_RESOLUTION[band] + 1e-6:
            coarser[band] = int(round(hit.resolution))
    scl = find_asset(item.assets, "SCL")
    if scl is not None:
        chosen["SCL"] = scl.label
    log.info("%s: assets read: %s", where, ", ".join(f"{b} {k}" for b, k in chosen.items()))
    unsigned = [b for b, a in found.items() if is_unsigned_blob(str(a.get_absolute_href()))]
    if unsigned:
        raise RemoteError(f"{where}: the Planetary Computer's asset hrefs ({unsigned[0]}, ...) are not signed, and "
                          "it refuses unsigned reads; get the Item from s2pipe search --catalog planetary-computer "
                          "(pip install 's2pipe[planetary-computer]'), which signs them")
    ref_band = next((b for b in ("B02", "B03", "B04", "B08") if b in found), None)
    if ref_band is None:
        raise SafeFormatError(f"{where}: no 10 m band asset (blue/B02, green/B03, red/B04, nir/B08); "
                              f"asset keys: {', '.join(sorted(item.assets))}")
    epsg, transform, width, height = _grid(item, found[ref_band], files[ref_band], where)
    if not epsg:
        raise SafeFormatError(f"{where}: no CRS (proj:epsg / proj:code) in the item or its assets")
    offsets, quantification, record = _offsets(item, found, baseline)
    tile = item_tile(item)
    platform = str(props.get("platform") or "")
    return ProductInfo(
        path=where, name=product_id, level="Level-2A",
        product_type=str(_first(props, "s2:product_type", "product:type") or "S2MSI2A"),
        baseline=baseline, tile=tile, sensing_time=str(props.get("datetime") or ""),
        spacecraft=_spacecraft(platform),
        epsg=epsg, transform=transform, width=width, height=height, quantification=quantification,
        offsets=offsets, special_values={"NODATA": 0, "SATURATED": 65535}, band_files=files,
        missing_bands=missing, scl_file=gdal_path(scl.asset.get_absolute_href()) if scl else None,
        radiometry_metadata=record, coarser_bands=coarser, assets=chosen)


class StacScene(SafeScene):
    """The band assets of a STAC Item (COGs, or JPEG2000 files), read like a SAFE's band
    files: same grid checks, offsets, resampling and masks."""


def open_stac(info: ProductInfo, *, resampling: str, mask_scl: Sequence[int],
              trust_pixels: bool = False, checked: OffsetCheck | None = None) -> StacScene:
    """Open the band assets ``info`` (from :func:`read_stac_item`) lists."""
    if info.missing_bands:
        names = ", ".join(f"{b} ({' / '.join(asset_keys(b))})" for b in info.missing_bands)
        raise MissingBandError(f"{info.path}: no asset for band(s) {names}; the item is incomplete or of a "
                               "catalogue s2pipe does not know")
    scene = open_safe(info, resampling=resampling, mask_scl=mask_scl, scene_class=StacScene,
                      trust_pixels=trust_pixels, checked=checked)
    assert isinstance(scene, StacScene)
    return scene
