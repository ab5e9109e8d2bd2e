"""Facts of Sentinel-2 L2A products that s2pipe relies on, written once.

Bands, their metadata ids and native resolutions, the scene classification (SCL), the
processing baselines and the radiometric convention every s2pipe raster follows. The
product reader, the synthetic generator, training and prediction import them from here.
"""

from __future__ import annotations

import re
from typing import Literal

#: The 12 bands s2pipe uses, in this fixed order (B10 is not in L2A products).
BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                          "B8A", "B09", "B11", "B12")
#: Native resolution (m) of each band.
BAND_RESOLUTION: dict[str, int] = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20,
                                   "B06": 20, "B07": 20, "B08": 10, "B8A": 20, "B09": 60,
                                   "B11": 20, "B12": 20}
#: The 13 MSI bands in the order of the metadata's ``band_id``/``bandId`` (0 = B01, 8 = B8A,
#: 10 = B10).
BAND_IDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                             "B8A", "B09", "B10", "B11", "B12")

#: DN of no data in every band, and of saturated pixels.
NODATA_DN = 0
SATURATED_DN = 65535
#: Quantification value: DN = QUANTIFICATION * reflectance (+ offset from baseline 04.00).
QUANTIFICATION = 10000
#: The first processing baseline whose DNs carry BOA_ADD_OFFSET, and ESA's value of it,
#: used only if such a product's metadata lacks the list.
OFFSET_BASELINE = 4.0
DEFAULT_OFFSET_N0400 = -1000

#: What every s2pipe raster, tile, stack and checkpoint holds: pre-04.00 DNs.
RADIOMETRY_CONVENTION = "DN = 10000 * reflectance (BOA_ADD_OFFSET applied)"

#: Scene classification (SCL) values and short names.
SCL_CLASSES: dict[int, str] = {
    0: "no_data", 1: "saturated_defective", 2: "dark_area", 3: "cloud_shadow", 4: "vegetation",
    5: "not_vegetated", 6: "water", 7: "unclassified", 8: "cloud_medium", 9: "cloud_high",
    10: "thin_cirrus", 11: "snow_ice"}
#: SCL classes masked by default: no data, saturated/defective, cloud shadow, clouds, cirrus.
DEFAULT_SCL_MASK: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
#: SCL classes that are clouds or their shadows (``predict --mask-clouds`` needs them masked).
CLOUD_SCL: tuple[int, ...] = (3, 8, 9, 10)

ResamplingName = Literal["bilinear", "nearest", "cubic", "average"]
RESAMPLING_NAMES: tuple[str, ...] = ("bilinear", "nearest", "cubic", "average")


def baseline_number(baseline: str) -> float | None:
    """``"05.09"`` -> 5.09; None when the baseline is unknown or not of the form NN.NN."""
    if not re.fullmatch(r"\s*\d{1,2}\.\d{1,2}\s*", baseline or ""):
        return None
    return float(baseline)


def has_offset(baseline: str) -> bool:
    """Whether products of ``baseline`` store DN = 10000 * reflectance + 1000."""
    number = baseline_number(baseline)
    return number is not None and number >= OFFSET_BASELINE

#: The asset namings of the catalogues whose STAC Items synth writes (s2pipe reads more).
STAC_NAMINGS: tuple[str, ...] = ("earth-search", "planetary-computer")
