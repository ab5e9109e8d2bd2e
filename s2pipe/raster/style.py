"""How a class raster carries its legend, in each of its forms (used by :mod:`s2pipe.raster.maps`,
the one owner of s2pipe's rasters, and by the COG writer; nothing else imports it).

A class raster (``predict``'s map, ``synth``'s truth, a label tile) is one uint8 band,
0 = no data, 1..n the classes. Its legend travels in four forms, each for the readers
that look there:

* the band's colour table (0 transparent) and ``CLASS_<value>`` band tags: inside the
  GeoTIFF, read back by :func:`read_legend` (s2pipe, ``gdalinfo``);
* ``<map>.aux.xml``: GDAL category names and a thematic raster attribute table
  (GDAL, ArcGIS);
* ``<map stem>.qml``: a QGIS style that QGIS applies when it opens the map: a paletted
  renderer with exactly the legend's classes, value, colour and name, and no entry for
  no data (transparent through the nodata value).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass, colormap

TAG_PREFIX = "CLASS_"
DESCRIPTION = "land cover class (0 = no data)"


def apply_legend(ds: Any, legend: Sequence[LandCoverClass], *, band: int = 1,
                 description: str = DESCRIPTION) -> None:
    """Write the legend into an open (writable) dataset: colour table, class tags, description."""
    ds.write_colormap(band, colormap(legend))
    ds.update_tags(band, **{f"{TAG_PREFIX}{c.value}": c.name for c in legend})
    ds.set_band_description(band, description)


def read_legend(ds: Any, default: Sequence[LandCoverClass] = DEFAULT_LEGEND,
                *, band: int = 1) -> tuple[LandCoverClass, ...]:
    """The legend an open class raster carries, completed from ``default``.

    Class names come from the ``CLASS_<value>`` band tags (else ``default``'s classes),
    colours from the colour table (else ``default``'s, else grey).
    """
    names = {int(k[len(TAG_PREFIX):]): v for k, v in ds.tags(band).items()
             if k.startswith(TAG_PREFIX) and k[len(TAG_PREFIX):].isdigit()}
    base = {c.value: c for c in default}
    try:
        cmap = ds.colormap(band)
    except ValueError:  # no colour table
        cmap = {}
    out = []
    for v in sorted(names or base):
        name = names.get(v) or (base[v].name if v in base else f"class {v}")
        if v in cmap:
            colour = "#{:02x}{:02x}{:02x}".format(*cmap[v][:3])
        else:
            colour = base[v].color if v in base else "#808080"
        out.append(LandCoverClass(v, name, colour))
    return tuple(out)


def has_legend(ds: Any, *, band: int = 1) -> bool:
    """Whether the raster carries class names (s2pipe's tags) or at least a colour table."""
    if any(k.startswith(TAG_PREFIX) for k in ds.tags(band)):
        return True
    try:
        ds.colormap(band)
    except ValueError:
        return False
    return True


def sidecar_paths(path: str | os.PathLike) -> list[Path]:
    """The files that travel next to a class map: ``<map>.aux.xml`` and ``<map stem>.qml``."""
    path = Path(path)
    return [Path(f"{path}.aux.xml"), path.with_suffix(".qml")]


def write_sidecars(path: str | os.PathLike, legend: Sequence[LandCoverClass]) -> list[Path]:
    """Write the GDAL ``.aux.xml`` and the QGIS ``.qml`` of the class map at ``path``."""
    aux, qml = sidecar_paths(path)
    aux.write_text(_aux_xml(legend), encoding="utf-8")
    qml.write_text(qgis_style(legend), encoding="utf-8")
    return [aux, qml]


def _aux_xml(legend: Sequence[LandCoverClass]) -> str:
    """Class names as GDAL category names and a thematic raster attribute table."""
    names = {c.value: c.name for c in legend}
    cats = "".join(f"<Category>{escape(names.get(v, ''))}</Category>"
                   for v in range(max(names) + 1))
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage>'
                   f"</FieldDefn>" for i, (n, t, u) in enumerate(fields))
    rows = "".join(f'<Row index="{i}"><F>{c.value}</F><F>{escape(c.name)}</F>'
                   f"<F>{c.rgb[0]}</F><F>{c.rgb[1]}</F><F>{c.rgb[2]}</F></Row>"
                   for i, c in enumerate(legend))
    return (f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}</CategoryNames>'
            f'<GDALRasterAttributeTable tableType="thematic">{defs}{rows}'
            f"</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>\n")


def qgis_style(legend: Sequence[LandCoverClass]) -> str:
    """A QGIS layer style (QML): paletted renderer, one entry per class, no-data absent."""
    entries = "".join(
        f"        <paletteEntry value=\"{c.value}\" color=\"{c.color}\" alpha=\"255\" "
        f"label={quoteattr(c.name)}/>\n" for c in legend)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.22.0" styleCategories="Symbology">\n'
            "  <pipe>\n"
            '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
            "      <rasterTransparency/>\n"
            "      <colorPalette>\n"
            f"{entries}"
            "      </colorPalette>\n"
            "    </rasterrenderer>\n"
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
            '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
            '    <rasterresampler maxOversampling="2"/>\n'
            "  </pipe>\n"
            "  <blendMode>0</blendMode>\n"
            "</qgis>\n")
