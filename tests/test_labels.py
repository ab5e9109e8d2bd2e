"""Reading, mapping and rasterising label polygons."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from s2pipe.errors import LabelError
from s2pipe.labels import load_class_map, rasterize_labels, read_labels
from s2pipe.raster.grid import Grid

GRID = Grid(CRS.from_epsg(32633), Affine(10, 0, 600000, 0, -10, 5700000), 100, 100)


def _box(col0, row0, col1, row1):
    """A box in scene pixel coordinates, as UTM coordinates."""
    return shapely.box(600000 + 10 * col0, 5700000 - 10 * row1, 600000 + 10 * col1,
                       5700000 - 10 * row0)


def _write(tmp_path, values, geoms, *, crs="EPSG:32633", field="class", name="l.gpkg", **kw):
    gdf = gpd.GeoDataFrame({field: values}, geometry=geoms, crs=crs)
    path = tmp_path / name
    gdf.to_file(path, engine="pyogrio", **kw)
    return path


def test_rasterize_on_the_grid_with_smaller_polygon_winning(tmp_path):
    path = _write(tmp_path, [2, 4], [_box(0, 0, 50, 50), _box(10, 10, 20, 20)])
    gdf, report = read_labels(path, grid=GRID)
    lab = rasterize_labels(gdf, GRID)
    assert lab.dtype == np.uint8 and lab.shape == (100, 100)
    assert (lab[10:20, 10:20] == 4).all()
    assert np.count_nonzero(lab == 2) == 50 * 50 - 100
    assert (lab[50:, :] == 0).all() and (lab[:, 50:] == 0).all()
    assert report.class_features == {"2": 1, "4": 1} and report.overlap_rule == "smaller polygon wins"


def test_reprojected_polygons_and_window(tmp_path):
    poly = _box(20, 30, 70, 80)
    poly2180 = gpd.GeoSeries([poly], crs=32633).to_crs(2180).iloc[0]
    path = _write(tmp_path, [5], [poly2180], crs="EPSG:2180")
    gdf, report = read_labels(path, grid=GRID)
    assert report.source_crs == "EPSG:2180" and gdf.crs == GRID.crs
    full = rasterize_labels(gdf, GRID)
    assert abs(np.count_nonzero(full == 5) - 50 * 50) < 150  # curved edges after reprojection
    from rasterio.windows import Window

    win = Window(10, 20, 40, 30)
    np.testing.assert_array_equal(rasterize_labels(gdf, GRID, window=win), full[20:50, 10:50])


def test_class_map_csv_and_json_and_unmapped_counted(tmp_path):
    path = _write(tmp_path, [112, 311, 999], [_box(0, 0, 10, 10), _box(20, 20, 30, 30),
                                              _box(40, 40, 50, 50)], field="code")
    csv = tmp_path / "map.csv"
    csv.write_text("clc_code,class\n112,5\n311,2\n")
    gdf, report = read_labels(path, class_map=csv, grid=GRID)
    assert report.class_field == "code" and sorted(gdf["label"]) == [2, 5]
    assert report.dropped_unmapped == 1 and report.unmapped_values == ["999"]
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"112": 5, "311": 2, "999": 4}))
    gdf, report = read_labels(path, class_map=js)
    assert sorted(gdf["label"]) == [2, 4, 5] and report.dropped_unmapped == 0


def test_class_map_with_bad_target_is_refused(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"112": 12}))
    with pytest.raises(LabelError, match="not a class value"):
        load_class_map(bad)


def test_legend_names_are_accepted_without_map(tmp_path):
    path = _write(tmp_path, ["Water bodies", "urban fabric"], [_box(0, 0, 5, 5), _box(5, 5, 9, 9)])
    gdf, _ = read_labels(path)
    assert list(gdf["label"]) == [4, 5]


def test_unknown_values_without_map_are_an_error(tmp_path):
    path = _write(tmp_path, [1, 12], [_box(0, 0, 5, 5), _box(5, 5, 9, 9)])
    with pytest.raises(LabelError, match="unknown class values 12"):
        read_labels(path)


def test_invalid_geometry_repaired_and_points_dropped(tmp_path):
    bowtie = shapely.Polygon([(600000, 5699000), (600500, 5699500), (600500, 5699000),
                              (600000, 5699500)])
    assert not bowtie.is_valid
    path = _write(tmp_path, [3, 1], [bowtie, shapely.Point(600100, 5699900)], name="l.geojson")
    gdf, report = read_labels(path, grid=GRID)
    assert report.repaired == 1 and report.dropped_empty_or_not_polygon == 1
    assert len(gdf) == 1 and gdf.geometry.iloc[0].is_valid
    assert np.count_nonzero(rasterize_labels(gdf, GRID) == 3) > 0


def test_no_crs_outside_and_no_field_are_errors(tmp_path):
    path = _write(tmp_path, [1], [_box(0, 0, 5, 5)], crs=None)
    with pytest.raises(LabelError, match="no coordinate reference system"):
        read_labels(path)
    far = shapely.affinity.translate(_box(0, 0, 5, 5), 1e5, 0)
    path = _write(tmp_path, [1], [far], name="far.gpkg")
    _, report = read_labels(path)
    with pytest.raises(LabelError, match="no feature overlaps the scene"):
        read_labels(path, grid=GRID)
    path = _write(tmp_path, [1], [_box(0, 0, 5, 5)], field="kind", name="kind.gpkg")
    with pytest.raises(LabelError, match="--class-field"):
        read_labels(path)
    assert len(read_labels(path, class_field="kind")[0]) == 1


def test_multi_layer_file_needs_a_layer(tmp_path):
    path = _write(tmp_path, [1], [_box(0, 0, 5, 5)], layer="a")
    _write(tmp_path, [2], [_box(0, 0, 5, 5)], layer="b", mode="a")
    with pytest.raises(LabelError, match="--layer"):
        read_labels(path)
    gdf, report = read_labels(path, layer="b")
    assert list(gdf["label"]) == [2] and report.layer == "b"
