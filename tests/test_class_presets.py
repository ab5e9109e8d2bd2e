"""The built-in class maps: CORINE Land Cover and Urban Atlas codes to the 8 classes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from cli import cli
from s2pipe.class_presets import PRESETS, load_preset
from s2pipe.labels import load_class_map, read_labels
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.raster.grid import Grid

GRID = Grid(CRS.from_epsg(32633), Affine(10, 0, 600000, 0, -10, 5700000), 100, 100)


def _box(col0, row0, col1, row1):
    return shapely.box(600000 + 10 * col0, 5700000 - 10 * row1, 600000 + 10 * col1, 5700000 - 10 * row0)


def test_corine_covers_every_level3_code_by_its_level1_or_artificial_level2():
    clc = load_preset("corine").classes
    mapped = {k: v for k, v in clc.items() if v}
    assert len(mapped) == 44 and min(map(int, mapped)) == 111 and max(map(int, mapped)) == 523
    artificial = {"11": 5, "12": 6, "13": 7, "14": 8}
    natural = {"2": 1, "3": 2, "4": 3, "5": 4}
    for code, cls in mapped.items():
        assert cls == (artificial[code[:2]] if code[0] == "1" else natural[code[0]]), code
    assert {k for k, v in clc.items() if not v} == {"990", "995", "999"}


def test_urban_atlas_codes_and_unmappable_ones():
    ua = load_preset("urban-atlas").classes
    expected = {"11100": 5, "12210": 6, "13300": 7, "14100": 8, "21000": 1, "31000": 2,
                "40000": 3, "50000": 4, "11240": 5, "12400": 6, "13400": 7, "33000": 2}
    assert {k: ua[k] for k in expected} == expected
    assert ua["92000"] == 0 and ua["91000"] == 0
    assert set(ua.values()) == {0} | {c.value for c in DEFAULT_LEGEND}


#: The nomenclatures, line by line: CORINE's 44 level-3 codes; Urban Atlas 2012/2018 (Mapping
#: Guide v6.3 and the 2012/2018 data, which also carry 25000) and the 2006-only codes.
CLC_LEVEL3 = [
    "111", "112", "121", "122", "123", "124", "131", "132", "133", "141", "142", "211", "212",
    "213", "221", "222", "223", "231", "241", "242", "243", "244", "311", "312", "313", "321",
    "322", "323", "324", "331", "332", "333", "334", "335", "411", "412", "421", "422", "423",
    "511", "512", "521", "522", "523"
]
UA_2012_2018 = [
    "11100", "11210", "11220", "11230", "11240", "11300", "12100", "12210", "12220", "12230",
    "12300", "12400", "13100", "13300", "13400", "14100", "14200", "21000", "22000", "23000",
    "24000", "25000", "31000", "32000", "33000", "40000", "50000", "91000", "92000"
]
UA_2006_ONLY = ("20000", "30000")


def test_presets_list_every_code_of_their_nomenclatures_and_no_other():
    """Issue 22: Urban Atlas 25000 (orchards at the fringe of urban classes) was missing."""
    clc, ua = load_preset("corine").classes, load_preset("urban-atlas").classes
    assert sorted(clc) == sorted([*CLC_LEVEL3, "990", "995", "999"])
    assert sorted(ua) == sorted([*UA_2012_2018, *UA_2006_ONLY])
    assert ua["25000"] == 1 and ua["30000"] == 2 and ua["20000"] == 0  # 2006's forests; its mixed class
    assert load_preset("urban-atlas").names["92000"] == "No data (Missing imagery)"


def test_load_class_map_by_preset_name_is_case_insensitive():
    assert load_class_map("Urban-Atlas") == load_preset("urban-atlas").classes
    assert set(PRESETS) == {"corine", "urban-atlas"}


def test_preset_codes_as_integers_strings_and_floats_with_counts(tmp_path):
    codes = [11100, "12210", 13300.0, "14100", "92000", "92000", "77777", 50000]
    geoms = [_box(i * 10, 0, i * 10 + 8, 8) for i in range(len(codes))]
    gdf = gpd.GeoDataFrame({"code_2018": [str(c) for c in codes]}, geometry=geoms, crs="EPSG:32633")
    path = tmp_path / "ua.gpkg"
    gdf.to_file(path, engine="pyogrio")
    out, report = read_labels(path, class_field="code_2018", class_map="urban-atlas", grid=GRID)
    assert sorted(out["label"].tolist()) == [4, 5, 6, 7, 8]
    assert report.dropped_by_class_map == {"92000": 2}
    assert report.unmapped_counts == {"77777": 1} and report.dropped_unmapped == 1
    assert report.class_map == "urban-atlas"
    # integer field of CORINE codes
    gdf = gpd.GeoDataFrame({"code_18": np.array([112, 311, 512, 999])},
                           geometry=[shapely.box(*_box(0, 0, 5, 5).bounds)] * 4, crs="EPSG:32633")
    gdf.to_file(tmp_path / "clc.gpkg", engine="pyogrio")
    out, report = read_labels(tmp_path / "clc.gpkg", class_field="code_18", class_map="corine")
    assert sorted(out["label"].tolist()) == [2, 4, 5] and report.dropped_by_class_map == {"999": 1}


def test_cli_unknown_preset_is_usage_error_listing_presets(tmp_path):
    gdf = gpd.GeoDataFrame({"code": [112]}, geometry=[_box(0, 0, 5, 5)], crs="EPSG:32633")
    gdf.to_file(tmp_path / "l.gpkg", engine="pyogrio")
    result = CliRunner().invoke(cli, ["prepare", str(tmp_path), "--labels", str(tmp_path / "l.gpkg"),
                                      "-o", str(tmp_path / "t"), "--class-map", "clc"])
    assert result.exit_code == 2
    assert "corine" in result.output and "urban-atlas" in result.output
    assert not (tmp_path / "t").exists()
    help_text = CliRunner().invoke(cli, ["prepare", "--help"]).output
    assert "corine" in help_text and "urban-atlas" in help_text


def test_docs_print_the_full_tables():
    from pathlib import Path

    from s2pipe.class_presets import preset_table

    doc = (Path(__file__).parents[1] / "docs" / "class-presets.md").read_text()
    names = {c.value: c.name for c in DEFAULT_LEGEND}
    for preset in PRESETS:
        assert "\n".join(preset_table(preset, names)) in doc, f"docs/class-presets.md: table {preset} is stale"
