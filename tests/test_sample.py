"""s2pipe sample and the area-adjusted evaluation of change maps (Olofsson et al. 2014)."""

from __future__ import annotations

import csv
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli import cli
from s2pipe.change.compare import change_map
from s2pipe.change.options import ChangeOptions
from s2pipe.errors import OptionError
from s2pipe.evaluation.allocation import allocate
from s2pipe.evaluation.change import FEW_UNITS, evaluate_change
from s2pipe.evaluation.sample import BUFFER, draw_sample, map_code
from s2pipe.evaluation.stratified import Design

from test_change import GRID, T, two_dates


def test_allocation():
    pixels = np.array([100_000, 5_000, 300, 40])
    for how in ("minimum", "proportional", "equal"):
        got = allocate(pixels, 200, how)
        assert got.sum() == 200 and (got >= 2).all() and (got <= pixels).all(), (how, got)
    got = allocate(pixels, 200, "minimum")
    assert got[1:].min() >= 25 and got[0] >= 100                        # 200 / (2 x 4) each, half by area
    got = allocate(pixels, 400, "minimum")
    assert got[-1] == 40 and got[1:3].min() >= 50                       # rare strata get their 50 (or all)
    got = allocate(pixels, 200, "minimum", 20)
    assert got[1:].min() >= 20 and got[0] > 100                         # the rest by area
    assert allocate(pixels, 200, "proportional").tolist()[2:] == [2, 2]    # at least 2 for a variance
    got = allocate(pixels, 200, "neyman", spread=np.array([0.1, 0.46, 0.46, 0.46]))
    assert got.sum() == 200 and got.tolist() == allocate(pixels * [0.1, 0.46, 0.46, 0.46], 200, "proportional").tolist()
    with pytest.raises(OptionError, match="need at least 8 points"):
        allocate(pixels, 5, "equal")


def test_stratified_estimators_match_a_census():
    """With every unit sampled (fpc), the estimates are the truth with zero variance."""
    strata = np.repeat([1, 2, 3], [50, 30, 20])
    y = np.r_[np.ones(10), np.zeros(40), np.ones(30), np.zeros(20)]
    d = Design(strata, {1: 50, 2: 30, 3: 20})
    assert d.proportion(y).value == pytest.approx(0.4) and d.proportion(y).se == 0.0
    assert d.ratio(y * (strata == 1), strata == 1).value == pytest.approx(0.2)


@pytest.fixture
def change(tmp_path):
    b, a, before, truth_after, _ = two_dates(tmp_path)
    r = change_map(b, a, tmp_path / "change.tif", ChangeOptions(mmu_ha=0))
    return r, before, truth_after


def _label(points, before, after, out):
    g = gpd.read_file(points)
    with rasterio.open(points.parent / "change.tif") as ds:
        rows, cols = rasterio.transform.rowcol(ds.transform, g.geometry.x.values, g.geometry.y.values)
    g["ref_before"], g["ref_after"] = before[rows, cols].astype(int), after[rows, cols].astype(int)
    g.to_file(out, driver="GPKG")
    return out


def test_sample_draws_its_strata(change, tmp_path):
    r, before, truth = change
    s = draw_sample(r.path, 120, tmp_path / "points.gpkg", seed=3)
    g = gpd.read_file(s.path)
    assert len(g) == 120 == s.points and s.reference_fields == ["ref_before", "ref_after"]
    with rasterio.open(r.path) as ds:
        codes = ds.read(1)
        rows, cols = rasterio.transform.rowcol(ds.transform, g.geometry.x.values, g.geometry.y.values)
    assert (codes[rows, cols] == map_code(g["stratum"].values)).all()   # each point on its stratum's code
    for st in s.strata:
        pts = g[g["stratum"] == st.value]
        assert len(pts) == st.points and np.allclose(pts["inclusion_probability"], st.points / st.pixels)
    pixels = {st.value: st.pixels for st in s.strata}
    for code in np.unique(codes[codes > 0]):                          # a code = its stratum + its buffer
        assert pixels.get(int(code), 0) + pixels.get(BUFFER + int(code), 0) == int((codes == code).sum())
    buffers = [st for st in s.strata if st.value > BUFFER]
    assert buffers and all(st.name.endswith("within 2 px of change") for st in buffers)
    assert {st.value - BUFFER for st in buffers} <= {T.code(1, 1), T.code(2, 2)}
    assert set(g["map_after"][g["stratum"] == T.code(1, 5)]) == {"Urban fabric"}
    again = gpd.read_file(draw_sample(r.path, 120, tmp_path / "again.gpkg", seed=3).path)
    assert again.geometry.equals(g.geometry)                         # the seed fixes the draw


def test_perfect_analyst_gives_the_true_areas(change, tmp_path):
    r, before, truth = change
    s = draw_sample(r.path, 200, tmp_path / "points.gpkg", seed=1)
    labelled = _label(s.path, before, truth, tmp_path / "labelled.gpkg")
    e = evaluate_change(r.path, labelled, tmp_path / "acc")
    assert e.design == "sample" and e.units == 200
    urban = next(c for c in e.per_code if c["code"] == T.code(1, 5))
    assert urban["user_accuracy"]["value"] == 1.0 and urban["area_ha"]["value"] == pytest.approx(16.0, abs=0.5)
    # the mapped false change (fields -> industrial, unsure) is found to be no change
    assert e.change["user_accuracy"]["value"] == 1.0
    assert sorted(p.name for p in (tmp_path / "acc").iterdir()) == ["metrics.json", "metrics.md", "transitions.csv"]
    # a code found at fewer than FEW_UNITS reference points is flagged in every output
    few = [c for c in e.per_code if c["reference_units"] < FEW_UNITS]
    assert few and all(c["few_units"] for c in few)
    assert not any(c["few_units"] for c in e.per_code if c["reference_units"] >= FEW_UNITS)
    md = (tmp_path / "acc" / "metrics.md").read_text()
    assert f"(†{few[0]['reference_units']}) |" in md and f"only k < {FEW_UNITS} reference points" in md
    rows = list(csv.DictReader((tmp_path / "acc" / "transitions.csv").open()))
    assert {r["code"] for r in rows if r["few_units"] == "True"} == {str(c["code"]) for c in few}


def test_intervals_cover_the_truth(change, tmp_path):
    """Over 20 seeds, the 95% interval of the change area covers the truth at least 17 times."""
    r, before, truth = change
    true_change = int(((before != truth) & (before > 0)).sum()) * 0.01
    covered = 0
    for seed in range(20):
        s = draw_sample(r.path, 150, tmp_path / f"p{seed}.gpkg", seed=seed)
        e = evaluate_change(r.path, _label(s.path, before, truth, tmp_path / f"l{seed}.gpkg"), tmp_path / f"e{seed}")
        est = e.change["area_ha"]
        covered += abs(est["value"] - true_change) <= est["ci95"] + 1e-9
    assert covered >= 17, covered


def test_evaluate_change_bad_input(change, tmp_path):
    r, before, truth = change
    s = draw_sample(r.path, 60, tmp_path / "points.gpkg")
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", str(r.path), "--labels", str(s.path), "-o", str(tmp_path / "e")])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1] == (
        f"Error: {s.path}: no feature has both reference classes ('ref_before', 'ref_after'); label the points first")
    g = gpd.read_file(s.path).drop(columns=["ref_before", "ref_after"])
    g.to_file(tmp_path / "bare.gpkg", driver="GPKG")
    res = runner.invoke(cli, ["evaluate", str(r.path), "--labels", str(tmp_path / "bare.gpkg"), "-o",
                              str(tmp_path / "e")])
    assert res.exit_code == 1 and "has no reference class of the earlier date: give --before-field" in res.output
    res = runner.invoke(cli, ["evaluate", str(r.path), "--labels", str(s.path), "--area-adjusted", "-o",
                              str(tmp_path / "e")])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith(
        f"Error: {r.path} is a change map: --area-adjusted apply to class maps")
    classes = tmp_path / "cls.tif"
    from test_change import write_classes
    write_classes(classes, before)
    res = runner.invoke(cli, ["evaluate", str(classes), "--labels", str(s.path), "--before-field", "x", "-o",
                              str(tmp_path / "e")])
    assert res.exit_code == 1 and "is a class map: --before-field/--after-field apply to change maps" in res.output
    res = runner.invoke(cli, ["sample", str(r.path), "-n", "1", "-o", str(tmp_path / "few.gpkg")])
    assert res.exit_code == 1 and "need at least" in res.output
    assert not (tmp_path / "e").exists() and not (tmp_path / "few.gpkg").exists()


def test_sample_cli_and_vectorize_of_a_change_map(change, tmp_path):
    r, *_ = change
    res = CliRunner().invoke(cli, ["sample", str(r.path), "-n", "80", "-o", str(tmp_path / "s.gpkg"),
                                   "--allocation", "equal", "--buffer", "0", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["points"] == 80 and d["buffer"] == 0 and len(d["strata"]) == 5   # 1, 1->5, 2->7, 10, uncertain
    assert all(st["points"] == st["pixels"] or st["points"] >= 16 for st in d["strata"])  # 80 / 5, or all 9 px
    res = CliRunner().invoke(cli, ["vectorize", str(r.path), "-o", str(tmp_path / "v.gpkg"), "--min-area", "0"])
    assert res.exit_code == 0, res.output
    v = gpd.read_file(tmp_path / "v.gpkg")
    assert {"from", "to", "area_ha"} <= set(v.columns)
    urban = v[v["class"] == T.code(1, 5)]
    assert len(urban) == 1 and urban["area_ha"].iloc[0] == pytest.approx(16.0)
    assert set(v["to"]) <= {"Urban fabric", "Industrial, commercial and transport units", "Mine, dump and "
                            "construction sites"}
    assert GRID.crs == v.crs


def test_polygon_reference_is_taken_as_map_strata(change, tmp_path):
    """Polygons of both dates' classes: every labelled pixel a unit, strata the map's codes."""
    import shapely

    r, before, truth = change
    x0, y0 = GRID.transform.c, GRID.transform.f
    box = shapely.box(x0 + 300, y0 - 1450, x0 + 900, y0 - 950)        # rows 95..145, cols 30..90
    gdf = gpd.GeoDataFrame({"ref_before": [1], "ref_after": [5]}, geometry=[box], crs=GRID.crs)
    gdf.to_file(tmp_path / "poly.gpkg", driver="GPKG")
    e = evaluate_change(r.path, tmp_path / "poly.gpkg", tmp_path / "acc")
    assert e.design == "map strata" and e.units == 50 * 60
    urban = next(c for c in e.per_code if c["code"] == T.code(1, 5))
    assert urban["user_accuracy"]["value"] == 1.0                     # every mapped urban pixel is urban
    assert 0 < urban["producer_accuracy"]["value"] < 1                # the box holds more than the patch


def test_small_transitions_pool_into_one_stratum(change, tmp_path):
    from s2pipe.evaluation.sample import POOLED, _pooled
    from s2pipe.raster.maps import open_map

    r, before, truth = change
    m = open_map(r.path, ("change",))
    counts = np.zeros(T.uncertain + 1, np.int64)
    counts[[T.code(1, 1), T.code(1, 5), T.code(1, 7), T.code(2, 7), T.code(2, 4)]] = [10**6, 5000, 20, 10, 3000]
    assert _pooled(m, counts) == {T.code(1, 7), T.code(2, 7)}          # each under 1% of the 8030 px of change
    counts[T.code(2, 7)] = 0
    assert _pooled(m, counts) == set()                                 # one small transition stays itself
    assert POOLED < 1000


def test_extending_a_labelled_sample(change, tmp_path):
    """--extend keeps the earlier points and their labels, draws new ones among the other
    pixels of each stratum, and the union is the stratified sample evaluate reads."""
    r, before, truth = change
    first = draw_sample(r.path, 60, tmp_path / "points.gpkg", seed=0)
    labelled = _label(first.path, before, truth, tmp_path / "labelled.gpkg")
    s = draw_sample(r.path, 200, tmp_path / "more.gpkg", seed=1, extend=labelled)
    old, g = gpd.read_file(labelled), gpd.read_file(s.path)
    assert s.kept == 60 and s.points == len(g) >= 200
    kept = g.iloc[:60]
    assert kept.geometry.equals(old.geometry) and (kept["point_id"].values == old["point_id"].values).all()
    assert (kept["ref_before"].values == old["ref_before"].values).all()            # the labels stay
    assert g["point_id"].is_unique and not g.geometry.duplicated().any()            # new pixels only
    assert g["ref_after"].iloc[60:].isna().all()                                   # new points to label
    with rasterio.open(r.path) as ds:
        codes = ds.read(1)
        rows, cols = rasterio.transform.rowcol(ds.transform, g.geometry.x.values, g.geometry.y.values)
    assert (codes[rows, cols] == map_code(g["stratum"].values)).all()
    for st in s.strata:                                   # every stratum: at least what it held before
        pts = g[g["stratum"] == st.value]
        assert len(pts) == st.points >= int((old["stratum"] == st.value).sum())
        assert (pts["stratum_points"] == st.points).all()
        assert np.allclose(pts["inclusion_probability"], st.points / st.pixels)
    e = evaluate_change(r.path, _label(s.path, before, truth, tmp_path / "all.gpkg"), tmp_path / "acc")
    assert e.design == "sample" and e.units == len(g)
    urban = next(c for c in e.per_code if c["code"] == T.code(1, 5))
    assert urban["area_ha"]["value"] == pytest.approx(16.0, abs=0.5)


def test_extend_refuses_another_maps_sample(change, tmp_path):
    r, before, truth = change
    runner = CliRunner()
    first = draw_sample(r.path, 60, tmp_path / "points.gpkg", seed=0)
    other = change_map(*two_dates(tmp_path / "o")[:2], tmp_path / "other.tif", ChangeOptions(mmu_ha=0.5))
    for args, message in (
            ([str(other.path), "-n", "200", "--extend", str(first.path)],
             f"Error: {first.path}: "),
            ([str(r.path), "-n", "60", "--extend", str(first.path)],
             f"Error: -n 60: {first.path} already holds 60 points; give the larger total wanted"),
            ([str(r.path), "-n", "200", "--extend", str(tmp_path / "none.gpkg")],
             f"Error: {tmp_path / 'none.gpkg'} does not exist; give the sample to extend"),
            ([str(r.path), "-n", "200", "--buffer", "4", "--extend", str(first.path)],
             f"Error: {first.path}: ")):
        res = runner.invoke(cli, ["sample", *args, "-o", str(tmp_path / "more.gpkg")])
        assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith(message), res.output
        assert not (tmp_path / "more.gpkg").exists()
    res = runner.invoke(cli, ["sample", str(r.path), "-n", "90", "--extend", str(first.path), "-o",
                              str(tmp_path / "more.gpkg")])
    assert res.exit_code == 0 and "60 of them kept from" in res.output, res.output
