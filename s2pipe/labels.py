"""Land-cover label polygons: read any OGR vector, map classes, rasterise on a grid.

Overlapping polygons: the smaller polygon wins (polygons are burnt largest first), so
small features inside large ones (a pond in a forest) keep their class.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s2pipe.class_presets import DROPPED, PRESETS, is_preset, load_preset
from s2pipe.errors import InputNotFoundError, LabelError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from rasterio.windows import Window

    from s2pipe.raster.grid import Grid

log = logging.getLogger(__name__)

CLASS_FIELDS: tuple[str, ...] = ("class", "class_id", "code")
OVERLAP_RULE = "smaller polygon wins"
LABEL_COLUMN = "label"


@dataclass
class LabelReport:
    """What happened to the features of a label file (counts are of features)."""

    path: str
    layer: str | None
    class_field: str
    source_crs: str
    features: int
    used: int
    repaired: int = 0
    dropped_empty_or_not_polygon: int = 0
    dropped_unmapped: int = 0  # values the class map does not list
    unmapped_values: list[str] = field(default_factory=list)
    unmapped_counts: dict[str, int] = field(default_factory=dict)  # value -> features
    dropped_by_class_map: dict[str, int] = field(default_factory=dict)  # listed with class 0
    class_map: str | None = None
    outside_scene: int = 0
    class_features: dict[str, int] = field(default_factory=dict)
    overlap_rule: str = OVERLAP_RULE


def class_key(value: Any) -> str:
    """A class value as a lookup key: 112.0 -> '112', ' Forest ' -> 'forest'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip().lower()
    if re.fullmatch(r"[+-]?\d+\.0*", text):  # "112.0" from a text field
        return str(int(float(text)))
    return text


def load_class_map(source: str | os.PathLike | Mapping[Any, Any]) -> dict[str, int]:
    """A class map from a preset name (:data:`s2pipe.class_presets.PRESETS`), a dict, a
    JSON object file or a CSV whose first two columns are source value and target.

    Targets are classes 1..8, or 0 for a value that is known but dropped on purpose.
    """
    if is_preset(source):
        return dict(load_preset(str(source)).classes)
    if isinstance(source, Mapping):
        items = list(source.items())
        where = "class map"
    else:
        p = Path(source)
        where = str(p)
        if not p.is_file():
            raise InputNotFoundError(f"{p} does not exist; give a CSV or JSON class map or a "
                                     f"preset ({', '.join(PRESETS)})")
        text = p.read_text(encoding="utf-8-sig")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                items = list(data.items())
            else:
                rows = [r for r in csv.reader(text.splitlines())
                        if r and r[0].strip() and not r[0].startswith("#")]
                if rows and not rows[0][-1].strip().lstrip("-").isdigit():
                    rows = rows[1:]  # a header
                items = [(r[0], r[1]) for r in rows]
        except (ValueError, IndexError) as exc:
            raise LabelError(f"{p}: unreadable class map ({exc}); use a JSON object or a CSV "
                             "with two columns: source value, class 1..8") from None
    valid = {c.value for c in DEFAULT_LEGEND} | {DROPPED}
    out: dict[str, int] = {}
    for k, v in items:
        try:
            target = int(str(v).strip())
        except ValueError:
            target = -1
        if target not in valid:
            raise LabelError(f"{where}: {k!r} maps to {v!r}, not a class value "
                             f"{min(valid)}..{max(valid)} (0 drops it); fix the class map")
        out[class_key(k)] = target
    return out


def default_class_map(legend: Sequence[LandCoverClass]) -> dict[str, int]:
    m = {str(c.value): c.value for c in legend}
    m.update({c.name.lower(): c.value for c in legend})
    return m


def read_labels(path: str | os.PathLike, *, layer: str | None = None,
                class_field: str | None = None,
                class_map: str | os.PathLike | Mapping[Any, Any] | None = None,
                grid: Grid | None = None,
                legend: Sequence[LandCoverClass] = DEFAULT_LEGEND,
                ) -> tuple[gpd.GeoDataFrame, LabelReport]:
    """Read label polygons as a GeoDataFrame with a uint8 ``label`` column (1..8).

    Invalid geometries are repaired, empty and non-polygon ones dropped. Without
    ``class_map`` the class field must hold legend values or names (anything else is an
    error); with it, unmapped values are dropped and counted. With ``grid`` the
    polygons are reprojected to its CRS and those outside it dropped. Raises
    :class:`LabelError` for a table without geometry, an empty layer, no CRS, no polygon,
    no usable feature or no overlap with ``grid``, each with its own message.
    """
    import geopandas as gpd
    import pyogrio

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist; give a label file GDAL/OGR can read")
    try:
        layers = [str(n) for n, _ in pyogrio.list_layers(p)]
        if layer is None and len(layers) > 1:
            raise LabelError(f"{p} has {len(layers)} layers ({', '.join(layers)}); choose one "
                             "with --layer")
        if layer is not None and layer not in layers:
            raise LabelError(f"{p} has no layer {layer!r}; its layers: {', '.join(layers)}")
        gdf = gpd.read_file(p, layer=layer, engine="pyogrio")
    except LabelError:
        raise
    except Exception as exc:  # pyogrio raises its own DataSourceError/DataLayerError
        raise LabelError(f"{p}: not a readable vector file ({exc}); use GeoPackage, Shapefile, "
                         "GeoJSON or another OGR format") from None
    where = f"{p}" + (f" (layer {layer!r})" if layer else "")
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        raise LabelError(f"{where} is a table without geometry; labels must be polygons in a "
                         "vector format (GeoPackage, Shapefile, GeoJSON...): make polygons of it "
                         "first (QGIS, ogr2ogr)")
    if len(gdf) == 0:
        raise LabelError(f"{where} holds no features (an empty layer); give the label "
                         "polygons" + ("" if layer else " or choose their layer with --layer"))
    if gdf.crs is None:
        raise LabelError(f"{p} has no coordinate reference system; assign one (e.g. "
                         "ogr2ogr -a_srs EPSG:2180) and try again")
    if class_field is None:
        lower = {c.lower(): c for c in gdf.columns}
        class_field = next((lower[f] for f in CLASS_FIELDS if f in lower), None)
        if class_field is None:
            raise LabelError(f"{p} has none of the fields {', '.join(CLASS_FIELDS)}; choose the "
                             f"class field with --class-field (fields: {', '.join(map(str, gdf.columns[:-1]))})")
    elif class_field not in gdf.columns:
        raise LabelError(f"{p} has no field {class_field!r}; its fields: "
                         f"{', '.join(map(str, gdf.columns[:-1]))}")
    report = LabelReport(str(p), layer, class_field, gdf.crs.to_string(), len(gdf), 0,
                         class_map=None if class_map is None or isinstance(class_map, Mapping)
                         else str(class_map))

    mapping = load_class_map(class_map) if class_map is not None else default_class_map(legend)
    keys = gdf[class_field].map(lambda v: None if v is None or v != v else class_key(v))
    labels = keys.map(lambda k: mapping.get(k) if k is not None else None)
    unmapped = labels.isna()
    if unmapped.any():
        counts = keys[unmapped].fillna("(empty)").value_counts()
        values = sorted(str(k) for k in counts.index)
        if class_map is None:
            raise LabelError(f"{p}: unknown class values {', '.join(values[:10])} in field "
                             f"{class_field!r}; use values 1..8 or legend names, or pass "
                             "--class-map to translate them")
        report.dropped_unmapped, report.unmapped_values = int(unmapped.sum()), values[:50]
        report.unmapped_counts = {str(k): int(v) for k, v in counts.items()}
        log.warning("%s: %d features with values not in the class map dropped (%s)", p,
                    int(unmapped.sum()), _counted(report.unmapped_counts))
    dropped = ~unmapped & (labels == DROPPED)
    if dropped.any():
        report.dropped_by_class_map = {str(k): int(v) for k, v in keys[dropped].value_counts().items()}
        log.info("%s: %d features of values the class map drops (%s)", p, int(dropped.sum()),
                 _counted(report.dropped_by_class_map))
    keep = ~unmapped & ~dropped
    if len(gdf) and not keep.any():  # the cause, not "no usable polygon": no value is mapped to a class
        which = f"class map {report.class_map}" if report.class_map else "class map"
        parts = [f"{int(unmapped.sum())} not in it (values {_counted(report.unmapped_counts, 5)})"
                 if unmapped.any() else "",
                 f"{int(dropped.sum())} of values it drops ({_counted(report.dropped_by_class_map, 5)})"
                 if dropped.any() else ""]
        raise LabelError(f"{p}: no value of field {class_field!r} is mapped to a class by the {which}: "
                         f"of {len(gdf)} features, {'; '.join(x for x in parts if x)}; check --class-field "
                         "and --class-map")
    gdf = gpd.GeoDataFrame({LABEL_COLUMN: labels[keep].astype(np.uint8)},
                           geometry=gdf.geometry[keep].values, crs=gdf.crs)

    geom = gdf.geometry
    usable = geom.notna() & ~geom.is_empty
    invalid = usable & ~geom.is_valid
    report.repaired = int(invalid.sum())
    if report.repaired:
        geom = geom.copy()
        geom[invalid] = geom[invalid].make_valid()
        log.info("%s: %d invalid geometries repaired", p, report.repaired)

    polys = geom.map(_polygonal)
    keep = usable & polys.notna()
    if len(gdf) and not keep.any():
        kinds = geom[usable].geom_type.value_counts()
        found = ", ".join(f"{n} {k}" for k, n in kinds.items()) or f"{len(gdf)} empty geometries"
        raise LabelError(f"{p}: no polygon among its features ({found}); labels must be "
                         "polygons (buffer points or lines into areas first)")
    report.dropped_empty_or_not_polygon = int((~keep).sum())
    gdf = gpd.GeoDataFrame({LABEL_COLUMN: gdf[LABEL_COLUMN][keep].values},
                           geometry=polys[keep].values, crs=gdf.crs)
    if grid is not None:
        gdf, report.outside_scene = in_grid(gdf, grid)
        if len(gdf) == 0:
            raise LabelError(f"{p}: no feature overlaps the scene; check that the labels and "
                             "the product cover the same area")
    if len(gdf) == 0:
        raise LabelError(f"{p}: no usable polygon feature (of {report.features}); check the "
                         "geometries and the class field")
    report.used = len(gdf)
    counts = gdf[LABEL_COLUMN].value_counts()
    report.class_features = {str(int(k)): int(v) for k, v in sorted(counts.items())}
    return gdf.reset_index(drop=True), report


def _counted(counts: Mapping[str, int], limit: int = 10) -> str:
    """``{"999": 3, "7": 1}`` -> ``"999 x3, 7 x1"`` (most frequent first)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(f"{k} x{v}" for k, v in items[:limit]) + more


def in_grid(gdf: gpd.GeoDataFrame, grid: Grid) -> tuple[gpd.GeoDataFrame, int]:
    """The features reprojected to ``grid``'s CRS that overlap it, and how many do not."""
    import shapely

    gdf = gdf.to_crs(grid.crs)
    inside = gdf.geometry.intersects(shapely.box(*grid.bounds))
    return gdf[inside].reset_index(drop=True), int((~inside).sum())


def _polygonal(g: Any) -> Any:
    """The polygonal part of a geometry (None if it has none)."""
    import shapely

    if g is None or g.is_empty:
        return None
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [q for q in shapely.get_parts(g) if q.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def rasterize_labels(gdf: gpd.GeoDataFrame, grid: Grid, *, all_touched: bool = False,
                     window: Window | None = None) -> np.ndarray:
    """Burn the ``label`` column onto ``grid`` (or a window of it): uint8, 0 = unlabelled.

    Polygons are reprojected to the grid's CRS if needed; where they overlap, the
    smaller polygon wins.
    """
    from rasterio import features, windows

    if gdf.crs is not None and grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    if window is None:
        shape, transform = (grid.height, grid.width), grid.transform
    else:
        shape = (int(window.height), int(window.width))
        transform = windows.transform(window, grid.transform)
    out = np.zeros(shape, dtype=np.uint8)
    if len(gdf) == 0:
        return out
    order = np.argsort(-gdf.geometry.area.values, kind="stable")
    shapes = ((g, int(v)) for g, v in zip(gdf.geometry.values[order],
                                          gdf[LABEL_COLUMN].values[order]))
    features.rasterize(shapes, out=out, transform=transform, all_touched=all_touched)
    return out
