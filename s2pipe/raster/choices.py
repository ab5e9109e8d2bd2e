"""Valid values of the raster commands' options, as plain data (the CLI builds its choices
from them without importing rasterio)."""

from __future__ import annotations

from typing import Literal, get_args

#: quicklook --kind: auto (a one-band raster as classes, a stack in true colour), classes, rgb
QuicklookKind = Literal["auto", "classes", "rgb"]
QUICKLOOK_KINDS: tuple[str, ...] = get_args(QuicklookKind)

#: vectorize: output suffix -> (OGR driver, holds several layers)
VECTOR_FORMATS: dict[str, tuple[str, bool]] = {".gpkg": ("GPKG", True), ".fgb": ("FlatGeobuf", False),
                                               ".parquet": ("Parquet", False)}
DEFAULT_MIN_AREA_HA = 0.5  # between Urban Atlas' 0.25 ha (urban) and 1 ha (rural) units
