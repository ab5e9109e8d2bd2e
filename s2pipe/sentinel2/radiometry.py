"""The offset the metadata states, checked against the pixels.

From baseline 04.00 on, ESA's DNs are 10000 * reflectance + 1000 (``BOA_ADD_OFFSET``
-1000), so valid DNs of the darkest surfaces (water, shadow in B12 and B8A) lie above
1000. Catalogues sometimes remove the offset and say they did not (and the reverse):
when the metadata says the offset is in the DNs but the darkest percentile of B12/B8A
lies below 1000 (less :data:`TOLERANCE_DN`, Sen2Cor's slightly negative reflectances over
water), the convention is contradicted. That is an error unless the caller trusts the
pixels, in which case no offset is applied. The reverse (a baseline >= 04.00 said to be
already harmonised whose dark pixels all lie above the offset) is only a warning: a scene
without dark surfaces looks the same. Either way the record says what was measured and
decided; it travels in the scene's radiometry record (``offset_check``) into every output.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from rasterio.errors import RasterioError

from s2pipe.errors import MissingBandError, RadiometryError
from s2pipe.provenance import OffsetCheck
from s2pipe.sentinel2.facts import DEFAULT_OFFSET_N0400, NODATA_DN, SATURATED_DN, has_offset
from s2pipe.sentinel2.metadata import ProductInfo

log = logging.getLogger(__name__)

#: Bands whose darkest valid pixels are near zero reflectance, and which percentile of them.
DARK_BANDS: tuple[str, ...] = ("B12", "B8A")
DARK_PERCENTILE = 1.0
#: How far below the offset (reflectance -0.01) the dark percentile may lie before the
#: offset is taken as absent.
TOLERANCE_DN = 100
#: Side of the decimated read (px) the percentile is taken on (overviews / JPEG2000 levels).
SAMPLE_PX = 512


def _dark_dn(src: Any) -> float | None:
    """The DARK_PERCENTILE of the valid DNs of band file ``src``, read decimated."""
    k = max(1, max(src.width, src.height) // SAMPLE_PX)
    data = src.read(1, out_shape=(max(1, src.height // k), max(1, src.width // k)))
    valid = data[(data != NODATA_DN) & (data != SATURATED_DN)]
    return float(np.percentile(valid, DARK_PERCENTILE)) if valid.size >= 100 else None


def _dark(info: ProductInfo, sources: Mapping[str, Any]) -> dict[str, float]:
    dark: dict[str, float] = {}
    for band in DARK_BANDS:
        try:
            value = _dark_dn(sources[band])
        except RasterioError as exc:
            raise MissingBandError(f"{info.band_files.get(band)}: cannot be decoded ({exc}); the file is "
                                   "truncated or corrupt, download the product again") from None
        if value is not None:
            dark[band] = round(value, 1)
    return dark


def _check_removed(info: ProductInfo, stated: dict[str, int], dark: dict[str, float]) -> OffsetCheck:
    """A baseline >= 04.00 whose offset is said to be removed: warn if the pixels look as
    if it were not (dark surfaces all above the offset), which brightness alone can also
    explain, so never an error."""
    limit = float(-DEFAULT_OFFSET_N0400 - TOLERANCE_DN)
    check = OffsetCheck(True, stated, dark, limit)
    if dark and min(dark.values()) >= limit:
        found = ", ".join(f"{b} {v:g}" for b, v in dark.items())
        check.reason = (f"no offset applied, but the darkest {DARK_PERCENTILE:g}% lie at {found} DN, at or above "
                        f"{limit:g}: either the scene has no dark surface or the DNs still carry the offset "
                        "(a wrong 'offset applied' flag); reflectances may be 0.1 too high")
        log.warning("%s: %s", info.path, check.reason)
    else:
        check.reason = "no offset applied; dark pixels below the offset, as expected"
    return check


def check_offsets(info: ProductInfo, sources: Mapping[str, Any], *,
                  trust_pixels: bool = False) -> tuple[ProductInfo, OffsetCheck]:
    """Check ``info.offsets`` against the dark pixels of the open band files ``sources``.

    Returns ``info`` (with no offsets when the pixels contradict the metadata and
    ``trust_pixels``) and the record. Raises :class:`RadiometryError` when they
    contradict it and ``trust_pixels`` is false.
    """
    stated = {b: int(info.offsets.get(b, 0)) for b in DARK_BANDS}
    if not any(v < 0 for v in stated.values()):
        if has_offset(info.baseline):  # said removed already: only worth a warning if it looks not
            return info, _check_removed(info, stated, _dark(info, sources))
        return info, OffsetCheck(False, stated, reason="no offset stated: nothing to check")
    dark = _dark(info, sources)
    limit = float(-min(stated.values()) - TOLERANCE_DN)
    check = OffsetCheck(True, stated, dark, limit)
    if not dark:
        check.reason = "too few valid pixels to check"
        return info, check
    if min(dark.values()) >= limit:
        check.reason = (f"darkest {DARK_PERCENTILE:g}% of {'/'.join(dark)} at or above {limit:g} DN, "
                        "as the offset implies")
        return info, check
    check.contradicted = True
    source = info.radiometry_metadata.get("source") or f"baseline {info.baseline}"
    found = ", ".join(f"{b} {v:g}" for b, v in dark.items())
    if not trust_pixels:
        raise RadiometryError(
            f"{info.path}: the metadata ({source}) says the DNs carry the +{-min(stated.values())} offset, but the "
            f"darkest {DARK_PERCENTILE:g}% of the pixels lie at {found} DN, below {limit:g}: the offset looks "
            "already removed; pass --trust-pixels to read the DNs as 10000 * reflectance, or check the product")
    check.decision = "pixels"
    check.reason = (f"darkest {DARK_PERCENTILE:g}% at {found} DN, below {limit:g}: the offset was already "
                    "removed; no offset applied (trust pixels)")
    log.warning("%s: %s", info.path, check.reason)
    return dataclasses.replace(info, offsets={b: 0 for b in info.offsets}), check
