"""evaluate: hand-computed confusion matrix, raster and vector references, area-adjusted estimates."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from cli import cli
from s2pipe.evaluation.evaluate import area_adjusted_accuracy, evaluate_map

ORIGIN = (600000.0, 5700000.0)

# A 4 x 5 map and reference. Class 4 is only predicted, class 3 partly missed,
# classes 6..8 absent from both; 0 in either array is left out.
REF = np.array([[1, 1, 2, 2, 0],
                [1, 1, 2, 2, 3],
                [3, 3, 0, 5, 5],
                [3, 3, 5, 5, 5]], dtype=np.uint8)
PRED = np.array([[1, 2, 2, 2, 4],
                 [1, 1, 2, 0, 3],
                 [4, 3, 1, 5, 5],
                 [3, 4, 5, 5, 1]], dtype=np.uint8)
HAND_CM = np.zeros((8, 8), dtype=int)  # rows: reference 1..8, columns: map 1..8
HAND_CM[0, 0], HAND_CM[0, 1] = 3, 1
HAND_CM[1, 1] = 3
HAND_CM[2, 2], HAND_CM[2, 3] = 3, 2
HAND_CM[4, 4], HAND_CM[4, 0] = 4, 1


def _write(path, data, *, res=10.0, crs="EPSG:32633", nodata=0):
    data = np.asarray(data)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=from_origin(*ORIGIN, res, res),
                       nodata=nodata) as ds:
        ds.write(data, 1)
    return path


@pytest.fixture
def pair(tmp_path):
    return _write(tmp_path / "map.tif", PRED), _write(tmp_path / "ref.tif", REF)


def test_metrics_equal_hand_computed_matrix(pair, tmp_path):
    result = evaluate_map(*pair, tmp_path / "report")
    assert np.array_equal(result.confusion_matrix, HAND_CM)
    assert result.pixels == 17
    assert result.overall_accuracy == pytest.approx(13 / 17)
    assert result.kappa == pytest.approx(158 / 226)  # pe = 63 / 289
    assert result.miou == pytest.approx((3 / 5 + 3 / 4 + 3 / 5 + 0 + 4 / 5) / 5)
    c = {d["value"]: d for d in result.per_class}
    assert (c[1]["precision"], c[1]["recall"], c[1]["support"]) == (0.75, 0.75, 4)
    assert (c[2]["precision"], c[2]["recall"]) == (0.75, 1.0)
    assert c[3]["recall"] == pytest.approx(3 / 5) and c[3]["precision"] == 1.0
    assert c[4]["precision"] == 0.0 and c[4]["recall"] is None and c[4]["iou"] == 0.0  # only predicted
    assert all(c[v]["iou"] is None and c[v]["support"] == 0 for v in (6, 7, 8))  # absent from both
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["confusion_matrix"] == HAND_CM.tolist()
    assert saved["classes"][0] == "Agricultural areas"
    with open(tmp_path / "report" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["value"] for r in rows] == [str(v) for v in range(1, 9)] and rows[1]["recall"] == "1.0"
    md = (tmp_path / "report" / "metrics.md").read_text()
    assert "| 3 | Wetlands | 1.000 | 0.600 |" in md
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion.png", "metrics.csv", "metrics.json", "metrics.md"]


def test_matrix_summed_over_row_strips(pair, tmp_path, monkeypatch):
    import s2pipe.evaluation.evaluate

    monkeypatch.setattr(s2pipe.evaluation.evaluate, "STRIP_ROWS", 3)  # strips of 3 and 1 rows
    assert np.array_equal(evaluate_map(*pair, tmp_path / "r").confusion_matrix, HAND_CM)


def test_reference_raster_on_another_grid_is_resampled_nearest(tmp_path):
    coarse = np.array([[1, 2, 0], [3, 5, 5]], dtype=np.uint8)  # 20 m, same origin
    ref = _write(tmp_path / "ref20.tif", coarse, res=20.0)
    pred = _write(tmp_path / "map.tif", np.repeat(np.repeat(coarse, 2, 0), 2, 1))
    result = evaluate_map(pred, ref, tmp_path / "r")
    assert result.pixels == 20 and result.overall_accuracy == 1.0
    assert np.diag(result.confusion_matrix).tolist() == [4, 4, 4, 0, 8, 0, 0, 0]


def test_reference_raster_nodata_and_class_map(tmp_path):
    ref = np.array([[100, 200], [999, 300]], dtype=np.uint16)  # e.g. CORINE-like codes
    _write(tmp_path / "ref.tif", ref, nodata=999)
    (tmp_path / "map.csv").write_text("source,class\n100,1\n200,2\n")
    _write(tmp_path / "map.tif", np.array([[1, 1], [2, 2]], dtype=np.uint8))
    result = evaluate_map(tmp_path / "map.tif", tmp_path / "ref.tif", tmp_path / "r",
                          class_map=tmp_path / "map.csv")
    # 999 is no data, 300 is not in the class map: both unlabelled
    assert result.pixels == 2 and result.confusion_matrix[0][0] == 1 and result.confusion_matrix[1][0] == 1


def test_vector_reference_in_another_crs(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    x0, y0 = ORIGIN
    # pixel-aligned blocks of REF's top-left 2 x 4, inset 2 m so reprojection cannot move a pixel centre
    blocks = [(1, 0, 2, 0, 2), (2, 2, 4, 0, 2)]  # class, col0, col1, row0, row1
    geoms = [box(x0 + c0 * 10 + 2, y0 - r1 * 10 + 2, x0 + c1 * 10 - 2, y0 - r0 * 10 - 2)
             for _, c0, c1, r0, r1 in blocks]
    gdf = gpd.GeoDataFrame({"class": [b[0] for b in blocks]}, geometry=geoms, crs="EPSG:32633")
    gdf.to_crs("EPSG:2180").to_file(tmp_path / "labels.gpkg")
    pred = _write(tmp_path / "map.tif", PRED)
    result = evaluate_map(pred, tmp_path / "labels.gpkg", tmp_path / "r")
    expected = np.zeros((8, 8), dtype=int)
    expected[0, 0], expected[0, 1], expected[1, 1] = 3, 1, 3  # REF[:2, :4] against PRED (one 0)
    assert np.array_equal(result.confusion_matrix, expected)
    assert result.labels_report["used"] == 2 and result.labels_report["source_crs"] == "EPSG:2180"


def test_split_from_keeps_test_tiles_only(pair, tmp_path):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "prepare.json").write_text(json.dumps({"tile_size": 2, "tiles": [
        {"id": "a", "row": 0, "col": 0, "split": "test"},
        {"id": "b", "row": 2, "col": 2, "split": "train"},
        {"id": "c", "row": 2, "col": 0, "split": "test"}]}))
    result = evaluate_map(*pair, tmp_path / "r", split_from=tiles)
    expected = np.zeros((8, 8), dtype=int)
    expected[0, 0], expected[0, 1] = 3, 1  # tile a: REF[:2, :2]
    expected[2, 2], expected[2, 3] = 2, 2  # tile c: REF[2:, :2]
    assert result.split == "test" and np.array_equal(result.confusion_matrix, expected)


def test_area_adjusted_matches_olofsson_2014():
    # Olofsson et al. (2014), Remote Sensing of Environment 148, section 5: sample counts
    # with map classes in rows; mapped pixels of 30 m (0.09 ha).
    by_map = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    r = area_adjusted_accuracy(by_map.T, [200000, 150000, 3200000, 6450000], pixel_area_ha=0.09)
    assert r.overall_accuracy == pytest.approx(0.947, abs=5e-4)
    assert r.overall_accuracy_ci95 == pytest.approx(0.018, abs=1e-3)
    deforestation = r.per_class[0]
    assert deforestation["user_accuracy"] == pytest.approx(0.88)
    assert deforestation["user_ci95"] == pytest.approx(0.07, abs=5e-3)
    assert deforestation["producer_accuracy"] == pytest.approx(0.75, abs=5e-3)
    assert deforestation["producer_ci95"] == pytest.approx(0.21, abs=5e-3)
    areas = [(c["area_ha"], c["area_ha_ci95"]) for c in r.per_class]
    for (area, ci), (paper_area, paper_ci) in zip(areas, [(21158, 6158), (11686, 3756),
                                                          (285770, 15510), (581386, 16282)]):
        assert area == pytest.approx(paper_area, abs=1) and ci == pytest.approx(paper_ci, abs=2)
    assert sum(a for a, _ in areas) == pytest.approx(10_000_000 * 0.09)


def test_cli_json_names_existing_files(pair, tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", str(pair[0]), "--labels", str(pair[1]),
                                   "-o", str(tmp_path / "rep"), "--area-adjusted", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["overall_accuracy"] == pytest.approx(13 / 17)
    assert all((tmp_path / "rep" / name).is_file() for name in
               ("metrics.json", "metrics.md", "metrics.csv", "confusion.png"))
    assert all(tmp_path.joinpath(p).is_file() for p in out["files"].values())
    assert out["area_adjusted"]["per_class"][0]["map_area_ha"] == pytest.approx(5 * 0.01)


def test_cli_prints_table(pair, tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", str(pair[0]), "--labels", str(pair[1]), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0
    assert "Overall accuracy: 0.765" in res.output and res.output.rstrip().endswith(str(tmp_path / "rep"))


@pytest.mark.parametrize("case, message", [
    ("bad_values", "holds values outside 0..8 (e.g. 9); recode it to 0 = unlabelled and classes 1..8"),
    ("no_overlap", "has no labelled pixel on the map's grid; check that it overlaps the map"),
    ("raster_field", "--class-field and --layer apply to vector labels"),
    ("exists", "already exists; pass --overwrite to replace it"),
    ("multiband_map", "has 2 band(s) of uint8; give a class map (s2pipe predict or mosaic)"),
])
def test_cli_errors_exit_1_without_output(tmp_path, case, message):
    pred, ref = _write(tmp_path / "map.tif", PRED), _write(tmp_path / "ref.tif", REF)
    out = tmp_path / "rep"
    extra: list[str] = []
    if case == "bad_values":
        ref = _write(tmp_path / "ref9.tif", np.where(REF == 5, 9, REF).astype(np.uint8))
    elif case == "no_overlap":
        ref = _write(tmp_path / "ref0.tif", np.zeros_like(REF))
    elif case == "raster_field":
        extra = ["--class-field", "code"]
    elif case == "exists":
        out.mkdir()
    elif case == "multiband_map":
        with rasterio.open(pred, "w", driver="GTiff", width=5, height=4, count=2, dtype="uint8",
                           crs="EPSG:32633", transform=from_origin(*ORIGIN, 10, 10)) as ds:
            ds.write(np.stack([PRED, PRED]))
    res = CliRunner().invoke(cli, ["evaluate", str(pred), "--labels", str(ref), "-o", str(out), *extra])
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last and "Traceback" not in res.output
    assert out.exists() == (case == "exists")
    if case == "exists":
        assert list(out.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep")]


def test_cli_usage_errors_exit_2(pair, tmp_path):
    runner = CliRunner()
    base = ["evaluate", str(pair[0]), "-o", str(tmp_path / "rep")]
    assert runner.invoke(cli, base).exit_code == 2  # --labels missing
    assert runner.invoke(cli, [*base, "--labels", str(tmp_path / "none.gpkg")]).exit_code == 2
    assert runner.invoke(cli, [*base, "--labels", str(pair[1]), "--split-from", str(tmp_path / "no")]).exit_code == 2
    assert not (tmp_path / "rep").exists()


def test_class_names_come_from_the_map(tmp_path):
    pred = _write(tmp_path / "map.tif", PRED)
    with rasterio.open(pred, "r+") as ds:
        ds.update_tags(1, **{f"CLASS_{v}": f"Type {v}" for v in range(1, 9)})
    result = evaluate_map(pred, _write(tmp_path / "ref.tif", REF), tmp_path / "r")
    assert [c["name"] for c in result.per_class][:2] == ["Type 1", "Type 2"]
    assert "| 2 | Type 2 |" in (tmp_path / "r" / "metrics.md").read_text()


def test_split_from_another_scene_is_refused(pair, tmp_path):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "prepare.json").write_text(json.dumps({
        "tile_size": 2, "tiles": [{"id": "a", "row": 0, "col": 0, "split": "test"}],
        "product": {"name": "OTHER", "epsg": 32633, "width": 10980, "height": 10980,
                    "transform": [10.0, 0.0, ORIGIN[0] + 200_000, 0.0, -10.0, ORIGIN[1]]}}))
    res = CliRunner().invoke(cli, ["evaluate", str(pair[0]), "--labels", str(pair[1]),
                                   "-o", str(tmp_path / "rep"), "--split-from", str(tiles)])
    assert res.exit_code == 1
    assert "was prepared on another grid (OTHER, 10980 x 10980 px) than the map" in res.output
    assert not (tmp_path / "rep").exists()
