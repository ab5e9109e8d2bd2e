"""The legend of a class map as QGIS itself shows it (issue 13).

A map is written as s2pipe writes every class map (``MapWriter`` with a legend inside
``atomic_class_map``), then opened by QGIS's Python API in a subprocess of the system
Python (Debian's ``python3-qgis``), the way QGIS opens a file a user drags in: a
``QgsRasterLayer`` with the default layer options, which load ``<map stem>.qml``.
Skipped where QGIS is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.raster.cog import MapWriter
from s2pipe.raster.maps import atomic_class_map
from s2pipe.sentinel2 import Grid

QGIS_PYTHON = "/usr/bin/python3"


def _has_qgis() -> bool:
    try:
        return subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _has_qgis(),
                                reason=f"QGIS Python bindings (python3-qgis) not found for {QGIS_PYTHON}")

# Run by QGIS_PYTHON: opens each map given as an argument like QGIS does on a drag-and-drop,
# and prints one JSON object: map path -> what QGIS shows.
QGIS_SCRIPT = r"""
import json, sys
from osgeo import gdal
from qgis.core import (Qgis, QgsApplication, QgsLayerTreeLayer, QgsMapRendererSequentialJob,
                       QgsMapSettings, QgsRasterLayer)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor

def argb(c):
    return c.name(QColor.HexArgb)

def show(path):
    layer = QgsRasterLayer(path, "map", "gdal", QgsRasterLayer.LayerOptions())  # loadDefaultStyle
    r, dp = layer.renderer(), layer.dataProvider()
    tree = QgsLayerTreeLayer(layer)
    nodes = layer.legend().createLayerTreeModelLegendNodes(tree)
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(layer.width(), layer.height()))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    rat = band.GetDefaultRAT()
    out = {
        "valid": layer.isValid(),
        "renderer": r.type(),
        "classes": [[c.value, c.label, argb(c.color)] for c in r.classes()]
                   if r.type() == "paletted" else None,
        "legend": [[label, argb(color)] for label, color in r.legendSymbologyItems()],
        "layer_tree": [n.data(Qt.DisplayRole) for n in nodes],
        "nodata": {"source": dp.sourceNoDataValue(1) if dp.sourceHasNoDataValue(1) else None,
                   "used": dp.useSourceNoDataValue(1),
                   "user": [[v.min(), v.max()] for v in dp.userNoDataValues(1)]},
        "rendered_row": [argb(image.pixelColor(x, 0)) for x in range(image.width())],
        "gdal_categories": band.GetCategoryNames(),
        "gdal_rat": [[rat.GetValueAsString(i, j) for j in range(rat.GetColumnCount())]
                     for i in range(rat.GetRowCount())] if rat is not None else None,
    }
    del nodes, tree, layer, band, ds
    return out

app = QgsApplication([], False)
app.initQgis()
try:
    result = {p: show(p) for p in sys.argv[1:]}
    result["qgis_version"] = Qgis.QGIS_VERSION
    print(json.dumps(result))
finally:
    app.exitQgis()
"""

CLASS_WIDTH = 4  # columns per value: 0 (no data) then 1..8


def _write_map(path: Path) -> Path:
    """A class map as predict and synth write it: columns of 0, 1, ..., 8."""
    n = len(DEFAULT_LEGEND) + 1
    grid = Grid("EPSG:32633", from_origin(600000, 5700000, 10, 10), n * CLASS_WIDTH, 8)
    data = np.repeat(np.arange(n * CLASS_WIDTH, dtype=np.uint8)[None] // CLASS_WIDTH, 8, axis=0)
    with atomic_class_map(path) as tmp, MapWriter(tmp, grid, legend=DEFAULT_LEGEND) as w:
        w.write_rows(data)
        w.finish()
    return path


def _folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """What QGIS shows for the map with its sidecars, with only ``.aux.xml``
    (the maps before issue 13) and for the GeoTIFF alone."""
    root = tmp_path_factory.mktemp("qgis")
    styled = _write_map(root / "styled" / "map.tif")
    aux_only = root / "aux_only" / "map.tif"
    bare = root / "bare" / "map.tif"
    for p in (aux_only, bare):
        p.parent.mkdir()
        shutil.copy(styled, p)
    shutil.copy(f"{styled}.aux.xml", f"{aux_only}.aux.xml")
    before = {p: _folder(p.parent) for p in (styled, aux_only, bare)}
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)  # the system Python, not the project's packages
    run = subprocess.run([QGIS_PYTHON, "-c", QGIS_SCRIPT, str(styled), str(aux_only), str(bare)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # opening in QGIS writes nothing next to the map (no .aux.xml statistics, no style)
    assert {p: _folder(p.parent) for p in before} == before
    return {"styled": result[str(styled)], "aux_only": result[str(aux_only)],
            "bare": result[str(bare)], "version": result["qgis_version"]}


def _rgba(color: str, alpha: str = "ff") -> str:
    return f"#{alpha}{color.lstrip('#')}"


def test_qgis_applies_the_qml_paletted_with_exactly_the_legend(shown):
    s = shown["styled"]
    assert s["valid"] and s["renderer"] == "paletted"
    expected = [[c.value, c.name, _rgba(c.color)] for c in DEFAULT_LEGEND]
    assert s["classes"] == expected  # no entry for 0, none for 9..255
    assert s["legend"] == [e[1:] for e in expected]
    # the layers panel: the band's title, then the 8 classes
    assert s["layer_tree"][1:] == [c.name for c in DEFAULT_LEGEND]
    assert s["layer_tree"][0].startswith("Band 1")


def test_qgis_draws_no_data_transparent_and_each_class_in_its_colour(shown):
    s = shown["styled"]
    assert s["nodata"] == {"source": 0.0, "used": True, "user": []}
    drawn = s["rendered_row"][::CLASS_WIDTH]
    assert drawn[0] == "#00000000"
    assert drawn[1:] == [_rgba(c.color) for c in DEFAULT_LEGEND]


def test_without_the_qml_qgis_lists_the_whole_colour_table(shown):
    """QGIS 3.22 without the style: a paletted renderer from the colour table, 256
    entries; 0 transparent; 9..255 opaque black, labelled by their value; the classes
    named only when the ``.aux.xml`` gives category names, else by their value too."""
    for case, labels in (("bare", [str(c.value) for c in DEFAULT_LEGEND]),
                         ("aux_only", [c.name for c in DEFAULT_LEGEND])):
        s = shown[case]
        assert s["renderer"] == "paletted"
        assert [c[0] for c in s["classes"]] == list(range(256))
        assert s["classes"][0] == [0, "0", "#00000000"]
        assert [c[1:] for c in s["classes"][1:9]] == \
            [[name, _rgba(c.color)] for name, c in zip(labels, DEFAULT_LEGEND)]
        assert s["classes"][9:] == [[v, str(v), "#ff000000"] for v in range(9, 256)]
        assert s["classes"] != shown["styled"]["classes"]


def test_gdal_reads_the_class_names_from_the_aux_xml(shown):
    names = [c.name for c in DEFAULT_LEGEND]
    for case in ("styled", "aux_only"):
        s = shown[case]
        assert s["gdal_categories"] == ["", *names]
        assert s["gdal_rat"] == [[str(c.value), c.name, *map(str, c.rgb)] for c in DEFAULT_LEGEND]
    assert shown["bare"]["gdal_categories"] is None and shown["bare"]["gdal_rat"] is None
