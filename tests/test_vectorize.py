"""vectorize: sieved class maps as polygons that rasterise back exactly and form a coverage."""

from __future__ import annotations

import json
import logging

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.transform import from_origin

from cli import cli
from s2pipe.errors import InputNotFoundError, OutputExistsError, RasterError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.raster.cog import MapWriter
from s2pipe.raster.polygons import sieve
from s2pipe.raster.vectorize import read_class_map, vectorize_map

TRANSFORM = from_origin(600000, 5700000, 10, 10)  # 10 m pixels: 1 ha = 100 px


class _Grid:
    crs = CRS.from_epsg(32633)
    transform = TRANSFORM

    def __init__(self, data: np.ndarray) -> None:
        self.height, self.width = data.shape


def _map(path, data):
    with MapWriter(path, _Grid(data), legend=DEFAULT_LEGEND) as writer:
        writer.write_rows(data[None])
        writer.finish()
    return path


def _plain(path, data, dtype="uint8"):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=dtype, crs="EPSG:32633", transform=TRANSFORM) as ds:
        ds.write(data.astype(dtype), 1)
    return path


def _patchy(seed=0, h=40, w=60):
    """Fields of 4 x 4 px, speckle, a no-data strip and a 3 px data island inside it."""
    rng = np.random.default_rng(seed)
    data = np.repeat(np.repeat(rng.integers(1, 9, (h // 4, w // 4)), 4, 0), 4, 1).astype(np.uint8)
    speck = rng.random((h, w)) < 0.05
    data[speck] = rng.integers(1, 9, int(speck.sum()))
    data[:, -6:] = 0
    data[10, -4:-1] = 7  # smaller than any unit, surrounded by no data
    return data


def _sieved(path, min_px):
    cmap = read_class_map(path)
    sieve(cmap.data, cmap.nodata, min_px)
    return cmap.data


def test_polygons_rasterise_back_to_the_sieved_map(tmp_path):
    src = _map(tmp_path / "map.tif", _patchy())
    result = vectorize_map(src, tmp_path / "out.gpkg", min_area_ha=0.3)
    assert result.min_pixels == 30 and result.names_from_map
    gdf = gpd.read_file(tmp_path / "out.gpkg")
    assert gdf.crs == CRS.from_epsg(32633) and list(gdf.columns[:3]) == ["class", "name", "area_ha"]
    back = rasterize(zip(gdf.geometry, gdf["class"], strict=True), out_shape=(40, 60),
                     transform=TRANSFORM, dtype="uint8")
    sieved = _sieved(src, 30)
    assert np.array_equal(back, sieved)
    assert not np.array_equal(sieved, _patchy())  # the sieve did change the map
    assert np.array_equal(sieved == 0, _patchy() == 0)  # no data stays no data


def test_polygons_form_a_valid_coverage(tmp_path):
    src = _map(tmp_path / "map.tif", _patchy(seed=1))
    vectorize_map(src, tmp_path / "out.gpkg", min_area_ha=0.1)
    geoms = gpd.read_file(tmp_path / "out.gpkg").geometry.values
    assert shapely.is_valid(geoms).all() and shapely.coverage_is_valid(geoms)
    assert shapely.union_all(geoms).area == pytest.approx(shapely.area(geoms).sum())  # no overlaps


@pytest.mark.parametrize("seed", range(4))
def test_no_patch_below_the_unit_except_a_smaller_map(tmp_path, seed):
    rng = np.random.default_rng(seed)  # noise: GDAL's sieve alone leaves small patches here
    data = rng.integers(1, 5, (30, 40)).astype(np.uint8)
    data[:, -5:] = 0
    data[3, -3:-1] = 2  # an island of 2 px in the no data
    src = _map(tmp_path / "map.tif", data)
    vectorize_map(src, tmp_path / "out.gpkg", min_area_ha=0.2)
    gdf = gpd.read_file(tmp_path / "out.gpkg")
    small = gdf[gdf.area_ha < 0.2 - 1e-9]
    assert len(small) == 1 and small.area_ha.iloc[0] == pytest.approx(0.02)
    assert len(gdf) > 3  # still a map of several patches


def test_class_areas_equal_the_maps(tmp_path):
    data = _patchy(seed=2)
    src = _map(tmp_path / "map.tif", data)
    result = vectorize_map(src, tmp_path / "out.fgb", min_area_ha=0)
    pixels = np.bincount(data.ravel(), minlength=9)
    assert {c.value: round(c.area_ha, 6) for c in result.classes} == {
        v: pixels[v] / 100 for v in range(1, 9) if pixels[v]}
    gdf = gpd.read_file(tmp_path / "out.fgb")
    assert gdf.groupby("class").area_ha.sum().round(6).to_dict() == {
        v: pixels[v] / 100 for v in range(1, 9) if pixels[v]}
    assert result.polygons == len(gdf)


def test_simplify_keeps_shared_borders(tmp_path):
    data = _patchy(seed=3)[:, :48]  # no no-data: the polygons must cover the whole map
    src = _map(tmp_path / "map.tif", data)
    exact = vectorize_map(src, tmp_path / "exact.gpkg")
    simple = vectorize_map(src, tmp_path / "simple.gpkg", simplify_m=15)
    geoms = gpd.read_file(tmp_path / "simple.gpkg").geometry.values
    before = gpd.read_file(tmp_path / "exact.gpkg").geometry.values
    assert shapely.coverage_is_valid(geoms) and simple.polygons == exact.polygons
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(before).sum()
    assert shapely.area(geoms).sum() == pytest.approx(40 * 48 * 100)  # no gaps, no overlaps
    assert shapely.union_all(geoms).area == pytest.approx(40 * 48 * 100)


def test_geoparquet_and_one_layer_per_class(tmp_path):
    src = _map(tmp_path / "map.tif", _patchy(seed=4))
    result = vectorize_map(src, tmp_path / "out.gpkg", by_class=True)
    layers = [name for name, _ in pyogrio.list_layers(tmp_path / "out.gpkg")]
    assert layers == result.layers == [f"class_{c.value}" for c in result.classes]
    one = gpd.read_file(tmp_path / "out.gpkg", layer=layers[0])
    assert set(one["class"]) == {result.classes[0].value}
    vectorize_map(src, tmp_path / "out.parquet")
    gdf = gpd.read_parquet(tmp_path / "out.parquet")
    assert gdf.crs == CRS.from_epsg(32633) and len(gdf) == result.polygons


def test_map_without_legend_is_named_by_numbers(tmp_path, caplog):
    src = _plain(tmp_path / "plain.tif", _patchy(seed=5))
    with caplog.at_level(logging.WARNING, logger="s2pipe.raster.vectorize"):
        result = vectorize_map(src, tmp_path / "out.gpkg")
    assert not result.names_from_map and "no legend" in caplog.text
    gdf = gpd.read_file(tmp_path / "out.gpkg")
    assert (gdf["name"] == gdf["class"].astype(str)).all()


def test_bad_inputs_leave_nothing(tmp_path):
    data = _patchy()
    floats = _plain(tmp_path / "float.tif", data, dtype="float32")
    with pytest.raises(RasterError, match="1 band.s. of float32; give a class map"):
        vectorize_map(floats, tmp_path / "a.gpkg")
    with pytest.raises(InputNotFoundError):
        vectorize_map(tmp_path / "nope.tif", tmp_path / "a.gpkg")
    src = _map(tmp_path / "map.tif", data)
    (tmp_path / "old.gpkg").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        vectorize_map(src, tmp_path / "old.gpkg")
    assert (tmp_path / "old.gpkg").read_text() == "old"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["float.tif", "map.qml", "map.tif", "map.tif.aux.xml", "old.gpkg"]


def test_cli_exit_codes_and_messages(tmp_path):
    src = _map(tmp_path / "map.tif", _patchy())
    out = tmp_path / "out.gpkg"
    runner = CliRunner()
    res = runner.invoke(cli, ["vectorize", str(src), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["output"] == str(out) and info["min_pixels"] == 50 and out.exists()
    res = runner.invoke(cli, ["vectorize", str(src), "-o", str(out)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: {out} already exists; pass --overwrite to replace it"]
    res = runner.invoke(cli, ["vectorize", str(src), "-o", str(out), "--overwrite", "--min-area", "0"])
    assert res.exit_code == 0 and res.output.strip().splitlines()[-1] == str(out)
    floats = _plain(tmp_path / "float.tif", _patchy(), dtype="float32")
    res = runner.invoke(cli, ["vectorize", str(floats), "-o", str(tmp_path / "f.gpkg")])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"Error: {floats} has 1 band(s) of float32; give a class map (s2pipe predict or mosaic) "
        "or a change map (s2pipe change)"]
    assert not (tmp_path / "f.gpkg").exists()
    assert runner.invoke(cli, ["vectorize", str(src), "-o", str(tmp_path / "o.shp")]).exit_code == 2
    fgb = str(tmp_path / "o.fgb")
    assert runner.invoke(cli, ["vectorize", str(src), "-o", fgb, "--by-class"]).exit_code == 2
    assert runner.invoke(cli, ["vectorize", str(tmp_path / "nope.tif"), "-o", str(out)]).exit_code == 2
    assert runner.invoke(cli, ["vectorize", str(src), "-o", str(out), "--min-area", "-1"]).exit_code == 2
