"""The area of interest of a search: one geometry in lon/lat, from a file or a box.

Areas are read with GeoPandas (any OGR format, any CRS; all features united) and kept in
EPSG:4326, as STAC APIs take them. Areas and shares of it are measured in a Lambert
azimuthal equal-area projection centred on the area, so coverages are fractions of ground.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from s2pipe.errors import AreaError, InputNotFoundError


@dataclass(frozen=True)
class Area:
    """An area of interest: ``geometry`` (shapely, EPSG:4326) and where it came from."""

    geometry: Any
    source: str

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        w, s, e, n = self.geometry.bounds
        return float(w), float(s), float(e), float(n)

    @cached_property
    def _to_equal_area(self) -> Any:
        from pyproj import Transformer

        c = self.geometry.centroid
        proj = f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m"
        return Transformer.from_crs("EPSG:4326", proj, always_xy=True)  # made once: it costs ~20 ms

    @cached_property
    def _whole(self) -> Any:
        return self.equal_area(self.geometry)

    def equal_area(self, geometry: Any) -> Any:
        """``geometry`` (EPSG:4326) in the equal-area projection centred on this area."""
        import shapely

        return shapely.transform(geometry, self._to_equal_area.transform, interleaved=False)

    def share(self, footprint: Any) -> float:
        """The fraction (0..1) of this area inside ``footprint`` (EPSG:4326)."""
        whole = self._whole
        if whole.area <= 0:
            return 0.0
        return float(whole.intersection(self.equal_area(footprint)).area / whole.area)


def area_from_bbox(west: float, south: float, east: float, north: float) -> Area:
    """The box (west, south, east, north) in degrees of longitude and latitude."""
    from shapely.geometry import box

    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise AreaError(f"--bbox {west} {south} {east} {north} is not a box in degrees: give WEST SOUTH EAST "
                        "NORTH with west < east (-180..180) and south < north (-90..90)")
    return Area(box(west, south, east, north), f"bbox {west} {south} {east} {north}")


def read_area(path: str | os.PathLike, *, layer: str | None = None) -> Area:
    """The union of the features of ``path`` (any OGR format and CRS) in EPSG:4326.

    Raises :class:`AreaError` for a file without CRS, without features or with only empty
    geometries, and :class:`InputNotFoundError` when it does not exist.
    """
    import geopandas as gpd
    from shapely import make_valid

    text = str(path)
    if "://" not in text and not os.path.exists(text):
        raise InputNotFoundError(f"{text} does not exist; give the area as a vector file (GeoPackage, "
                                 "GeoJSON, shapefile ...) or as --bbox")
    try:
        frame = gpd.read_file(text, layer=layer)
    except Exception as exc:  # noqa: BLE001 - pyogrio/fiona raise their own types; all mean unreadable
        raise AreaError(f"{text}: not a readable vector file ({str(exc).splitlines()[0]})") from None
    if frame.crs is None:
        raise AreaError(f"{text} has no CRS, so its coordinates cannot be placed; set one (e.g. "
                        "ogr2ogr -a_srs EPSG:2180) and search again")
    geoms = [g for g in frame.geometry if g is not None and not g.is_empty]
    if not geoms:
        raise AreaError(f"{text} holds no geometry ({len(frame)} feature(s), all empty); give an area "
                        "with at least one polygon")
    lonlat = gpd.GeoSeries(geoms, crs=frame.crs).to_crs(4326)
    union = make_valid(lonlat.union_all())
    if union.is_empty or union.area <= 0:
        kind = union.geom_type if not union.is_empty else "empty"
        raise AreaError(f"{text}: the area is {kind}, with no surface; give polygons (points and lines "
                        "can be buffered first)")
    return Area(union, text)
