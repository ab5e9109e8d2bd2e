"""Which asset of a STAC Item holds a band: by band, then resolution, never by key order.

Catalogues name a band's asset by common name (Earth Search: ``blue``, ``scl``, JPEG2000
twins ``blue-jp2``), by band id (Planetary Computer: ``B02``, ``SCL``; in 2021 also
``B02_20m``, ``B02_60m``, ``SCL-20m``) or by id and resolution (Copernicus Data Space:
``B02_10m``, ``SCL_20m``). An asset's ``eo:bands`` (or STAC 1.1 ``bands``) name or common
name says which band it holds, else its key without a resolution or ``jp2`` suffix; its
``gsd``, ``proj:transform`` or key suffix says at what resolution. The band's native
resolution wins, then an unstated one, then the nearest coarser; a COG wins over a JPEG2000
file (:func:`band_assets`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from s2pipe.sentinel2.facts import BAND_RESOLUTION, BANDS

#: Earth Search's asset key (the band's common name) of each band.
COMMON_NAMES: dict[str, str] = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red",
                                "B05": "rededge1", "B06": "rededge2", "B07": "rededge3", "B08": "nir",
                                "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22", "SCL": "scl"}
SCL_RESOLUTION = 20


def asset_keys(band: str) -> tuple[str, ...]:
    """Keys an asset of ``band`` (``B01`` .. ``B12``, ``SCL``) has in the catalogues, in order."""
    res = BAND_RESOLUTION.get(band, SCL_RESOLUTION)
    return (COMMON_NAMES[band], band, f"{band}_{res}m")


def asset_key(band: str, naming: str) -> str:
    """The key of ``band``'s asset in items of ``naming`` (one of :data:`NAMINGS`)."""
    return COMMON_NAMES[band] if naming == "earth-search" else band


#: How catalogues spell a band's resolution or file format after its key (``B02_20m``,
#: ``SCL-20m``, ``blue-jp2``); what is left names the band.
_KEY_SUFFIX = re.compile(r"(?:[_-](?P<res>\d+)m)?(?:[_-]jp2)?$", re.IGNORECASE)


@dataclass(frozen=True)
class BandAsset:
    """An asset holding one band, with what the item says of its resolution."""

    key: str
    asset: Any
    resolution: float | None  # metres: gsd, proj:transform or the key's suffix; None if unstated

    @property
    def label(self) -> str:
        """The key and resolution, as ``info`` and the log show it: ``B02_60m (60 m)``."""
        return self.key if self.resolution is None else f"{self.key} ({self.resolution:g} m)"

    @property
    def jp2(self) -> bool:
        return "jp2" in str(self.asset.media_type or "").lower() or \
            str(self.asset.href).lower().split("?", 1)[0].endswith(".jp2")


_BAND_IDS = {b.lower() for b in (*BANDS, "SCL")}


def _asset_bands(asset: Any) -> set[str]:
    """What the bands an asset states (``eo:bands``, STAC 1.1 ``bands``) call its one band:
    its band id where the name is one (``B05``: common names such as ``rededge`` are shared
    by several bands), else its names and common names."""
    names: list[str] = []
    for field_name in ("eo:bands", "bands"):
        bands = asset.extra_fields.get(field_name)
        if isinstance(bands, list) and bands:
            if len(bands) != 1:
                return {"(several)"}  # a true-colour image and the like: not one band
            b = bands[0] if isinstance(bands[0], dict) else {}
            names += [str(b.get(k) or "").lower() for k in ("name", "common_name", "eo:common_name")]
    ids = {n for n in names if n in _BAND_IDS}
    return ids or {n for n in names if n}


def _asset_resolution(key: str, asset: Any) -> float | None:
    fields = asset.extra_fields
    for value in (fields.get("gsd"),
                  next((b.get("gsd") for b in fields.get("eo:bands") or [] if isinstance(b, dict)), None)):
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    t = fields.get("proj:transform")
    if isinstance(t, list) and len(t) >= 6 and t[0]:
        return abs(float(t[0]))
    m = _KEY_SUFFIX.search(key)
    return float(m.group("res")) if m and m.group("res") else None


def band_assets(assets: dict[str, Any], band: str) -> list[BandAsset]:
    """Every asset of ``band`` (``B01`` .. ``B12``, ``SCL``), by its bands (``eo:bands`` name or
    common name) or else its key (band id or common name, with or without a resolution or
    ``-jp2`` suffix), best first: the band's native resolution, then an unstated one, then
    the nearest coarser; a COG before a JPEG2000 file; the key's name last. Key order in the
    item never matters; finer than native is never offered (ESA makes none)."""
    native = float(BAND_RESOLUTION.get(band, SCL_RESOLUTION))
    names = {band.lower(), COMMON_NAMES[band].lower()}
    found = []
    for key, asset in assets.items():
        stated = _asset_bands(asset)
        if stated:
            if not names & stated:
                continue
        elif _KEY_SUFFIX.sub("", key).lower() not in names:
            continue
        if {"thumbnail", "overview"} & set(asset.roles or ()):
            continue
        res = _asset_resolution(key, asset)
        if res is not None and res < native - 1e-6:
            continue
        found.append(BandAsset(key, asset, res))

    def rank(a: BandAsset) -> tuple[int, float, bool, str]:
        if a.resolution is None:
            return 1, 0.0, a.jp2, a.key
        return (0 if abs(a.resolution - native) < 1e-6 else 2), a.resolution, a.jp2, a.key
    return sorted(found, key=rank)


def find_asset(assets: dict[str, Any], band: str) -> BandAsset | None:
    found = band_assets(assets, band)
    return found[0] if found else None
