"""Render a class map through QGIS with its legend, as a user sees it, to a PNG.

Opens the map with QGIS's Python API (Debian's ``python3-qgis``, run by the system
Python) the way QGIS opens a dragged-in file, so the ``.qml`` s2pipe writes next to the
map is applied, and exports a print layout (the map, its legend) to
``bench/out/qgis_legend.png``. Without a map argument it makes one with
``s2pipe synth --size 512`` and shows its ``truth.tif``. Pass ``--bare`` to show the
GeoTIFF alone (copied without its sidecars), as QGIS draws it without s2pipe's style.

    python bench/qgis_legend.py [MAP] [--bare] [--out bench/out/qgis_legend.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

QGIS_PYTHON = "/usr/bin/python3"
ROOT = Path(__file__).resolve().parent.parent

LAYOUT_SCRIPT = r"""
import sys
from qgis.core import (QgsApplication, QgsLayoutExporter, QgsLayoutItemLegend, QgsLayoutItemMap,
                       QgsLayoutPoint, QgsLayoutSize, QgsPrintLayout, QgsProject, QgsRasterLayer,
                       QgsUnitTypes)

path, out = sys.argv[1], sys.argv[2]
app = QgsApplication([], False)
app.initQgis()
try:
    project = QgsProject.instance()
    layer = QgsRasterLayer(path, "s2pipe map")  # default options: loads <map stem>.qml
    project.addMapLayer(layer)
    project.setCrs(layer.crs())
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(290, 150, QgsUnitTypes.LayoutMillimeters))
    item = QgsLayoutItemMap(layout)
    item.attemptMove(QgsLayoutPoint(5, 5, QgsUnitTypes.LayoutMillimeters))
    item.attemptResize(QgsLayoutSize(140, 140, QgsUnitTypes.LayoutMillimeters))
    item.setLayers([layer])
    item.setExtent(layer.extent())
    layout.addLayoutItem(item)
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("QGIS legend of " + path.rsplit("/", 1)[-1])
    legend.setLinkedMap(item)
    legend.setResizeToContents(True)
    legend.attemptMove(QgsLayoutPoint(150, 5, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(legend)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 120
    settings.generateWorldFile = False
    settings.exportMetadata = False
    # GDAL's "ERROR 6: The PNG driver does not support update access" here is harmless:
    # QGIS tries to georeference the exported image
    result = QgsLayoutExporter(layout).exportToImage(out, settings)
    if result != QgsLayoutExporter.Success:
        sys.exit(f"layout export failed: {result}")
finally:
    app.exitQgis()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map", nargs="?", type=Path, help="a class map (default: synth's truth.tif)")
    parser.add_argument("--bare", action="store_true", help="the GeoTIFF without its sidecars")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "qgis_legend.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = args.map
        if path is None:
            subprocess.run([sys.executable, str(ROOT / "cli.py"), "synth", work, "--size", "512"],
                           check=True, capture_output=True)
            path = Path(work) / "truth.tif"
        if args.bare:
            bare = Path(work) / "bare"
            bare.mkdir()
            path = Path(shutil.copy(path, bare))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        env.pop("PYTHONPATH", None)
        subprocess.run([QGIS_PYTHON, "-c", LAYOUT_SCRIPT, str(path), str(args.out)],
                       check=True, env=env)
    print(json.dumps({"map": str(args.map or "synth truth.tif"), "bare": args.bare,
                      "png": str(args.out)}))


if __name__ == "__main__":
    main()
