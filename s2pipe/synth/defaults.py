"""The synthetic product's defaults and choices, as plain data (the CLI's defaults come from here)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

DEFAULT_ORIGIN = (699960.0, 5700000.0)  # upper-left corner of T33UYS, the study's tile
DEFAULT_EPSG = 32633
#: Sensing time of the default product (that of the study's tile); other dates keep its time of day.
DEFAULT_SENSING = datetime(2018, 6, 7, 9, 50, 29, 24000)
DEFAULT_DATE = DEFAULT_SENSING.date()
ProductFormat = Literal["safe", "stac"]
FORMATS: tuple[str, ...] = ("safe", "stac")
