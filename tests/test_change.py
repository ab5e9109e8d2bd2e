"""s2pipe change: from -> to codes, the confidence rule, the minimum mapping unit, the
report, other grids, and the one-line errors of bad input."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from cli import cli
from s2pipe.change import compare
from s2pipe.change.compare import change_map
from s2pipe.change.options import ChangeOptions
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass
from s2pipe.raster.grid import Grid
from s2pipe.raster.maps import Provenance, class_layout, open_map, probability_layout, write_map
from s2pipe.raster.transitions import Transitions

GRID = Grid(CRS.from_epsg(32633), Affine(10, 0, 600000, 0, -10, 5700000), 300, 260)
T = Transitions(DEFAULT_LEGEND)


def write_probs(path, classes, conf, grid=GRID, legend=DEFAULT_LEGEND):
    n = len(legend)
    p = np.zeros((n, *classes.shape), np.uint8)
    p[:] = ((1 - conf) / (n - 1) * 255).astype(np.uint8)
    for k in range(n):
        m = classes == k + 1
        p[k][m] = (conf[m] * 255).astype(np.uint8)
    p[:, classes == 0] = 0
    with write_map(path, grid, probability_layout(legend, every_class=True), Provenance(legend=tuple(legend))) as w:
        w.write_rows(p)
        w.finish()
    return path


def write_classes(path, classes, grid=GRID, legend=DEFAULT_LEGEND):
    with write_map(path, grid, class_layout(legend), Provenance(legend=tuple(legend))) as w:
        w.write_rows(classes[None])
        w.finish()
    return path


def two_dates(tmp_path, kind="probabilities"):
    """Fields (1) west and forest (2) east; a real 40 x 40 patch of fields -> urban fabric,
    a 3 x 3 construction site (under the MMU), and 1% of false change that the later
    date is unsure of; no data in the first 20 rows of the earlier date."""
    rng = np.random.default_rng(0)
    h, w = GRID.height, GRID.width
    before = np.ones((h, w), np.uint8)
    before[:, 150:] = 2
    before[:20] = 0
    after = np.ones((h, w), np.uint8)
    after[:, 150:] = 2
    after[100:140, 40:80] = 5
    after[200:203, 200:203] = 7
    truth_after = after.copy()
    noise = (rng.random((h, w)) < 0.01) & (after == 1)
    after[noise] = 6
    conf_b, conf_a = np.full((h, w), 0.9, np.float32), np.full((h, w), 0.9, np.float32)
    conf_a[noise] = 0.4
    if kind == "probabilities":
        b, a = write_probs(tmp_path / "b.tif", before, conf_b), write_probs(tmp_path / "a.tif", after, conf_a)
    else:
        b, a = write_classes(tmp_path / "b.tif", before), write_classes(tmp_path / "a.tif", after)
    return b, a, before, truth_after, noise


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_codes_names_and_colours():
    assert T.code(1, 5) == 5 and T.code(5, 1) == 33 and T.decode(33) == (5, 1) and T.uncertain == 65
    assert T.name(5) == "Agricultural areas -> Urban fabric" and T.name(1) == "Agricultural areas (no change)"
    assert T.is_change(5) and not T.is_change(10) and not T.is_change(T.uncertain)
    assert T.entry(5).color == "#e6004d" and T.entry(1).color != DEFAULT_LEGEND[0].color  # stable: faded
    codes = T.encode(np.array([1, 1, 0, 2]), np.array([5, 1, 3, 4]), np.array([False, False, False, True]))
    assert codes.tolist() == [5, 1, 0, T.uncertain]
    assert T.changed(codes).tolist() == [True, False, False, False]
    with pytest.raises(Exception, match="1..15 classes"):
        Transitions(tuple(LandCoverClass(i, f"c{i}", "#000000") for i in range(1, 17)))


def test_confident_change_drops_unsure_and_small_patches(tmp_path):
    b, a, before, truth, noise = two_dates(tmp_path)
    r = change_map(b, a, tmp_path / "change.tif")
    codes = read(r.path)
    assert (codes[:20] == 0).all()                                   # no data of either date
    assert (codes[100:140, 40:80] == T.code(1, 5)).all()             # the real change, whole
    assert (codes[200:203, 200:203] == T.code(2, 2)).all()           # 9 px < MMU 100 px: stable
    unsure = noise.copy()
    unsure[:20] = False
    assert (codes[unsure] == T.uncertain).all()                      # differs, not confident
    assert r.rule == "confidence" and r.min_confidence == 0.6 and r.mmu_pixels == 100
    s = r.summary
    assert [(x.before, x.after, x.pixels) for x in s.transitions] == [("Agricultural areas", "Urban fabric", 1600)]
    assert s.changed_ha == 16.0 and s.uncertain_ha == pytest.approx(unsure.sum() * 0.01)
    assert s.naive_changed_ha == pytest.approx((1600 + 9 + unsure.sum()) * 0.01)
    agri, urban = s.per_class[0], s.per_class[4]
    assert (agri.loss_ha, agri.gain_ha, agri.net_ha, urban.gain_ha, urban.swap_ha) == (16.0, 0.0, -16.0, 16.0, 0.0)
    m = open_map(r.path, ("change",))
    assert m.kind == "change" and m.transitions.classes == DEFAULT_LEGEND
    assert [c.value for c in m.legend] == [1, 5, 10, T.uncertain]   # the codes that occur, named
    assert all(p.exists() for p in r.files) and {p.name for p in r.files} == {"change.tif", "change.tif.aux.xml",
                                                                             "change.qml"}
    report = json.loads((r.report_dir / "change.json").read_text())
    assert report["changed_ha"] == 16.0 and report["matrix_pixels"][0][4] == 1600
    assert sorted(p.name for p in r.report_dir.iterdir()) == ["change.json", "change.md", "change.png",
                                                              "transitions.csv", "transitions.png"]
    assert "Agricultural areas -&gt; Urban fabric" in (tmp_path / "change.qml").read_text()


def test_naive_comparison_of_class_maps(tmp_path):
    b, a, *_ = two_dates(tmp_path, "classes")
    r = change_map(b, a, tmp_path / "naive.tif", ChangeOptions(mmu_ha=0))
    assert r.rule == "naive" and r.min_confidence is None and r.summary.uncertain_ha == 0
    assert r.summary.changed_ha == pytest.approx(r.summary.naive_changed_ha)
    codes = read(r.path)
    assert (codes[200:203, 200:203] == T.code(2, 7)).all()          # no MMU: the site stays


def whole_array_sieve(codes, min_px):
    """The minimum mapping unit on the whole array at once (scipy's 4-connected labels):
    change patches under ``min_px`` pixels take the stable code of their earlier class."""
    from scipy import ndimage

    changed = T.changed(codes)
    labels, _ = ndimage.label(changed)
    small = (np.bincount(labels.ravel()) < min_px)[labels] & changed
    out = codes.copy()
    b = T.before_after(codes)[0][small]
    out[small] = T.encode(b, b)
    return out


@pytest.mark.parametrize("rows", [7, 32, 64, 1000])
def test_the_mmu_is_exact_across_strip_borders(tmp_path, monkeypatch, rows):
    """A patch cut by strip borders is judged whole: strips shorter or taller than the
    unit (50 px) give the map the whole-array sieve gives."""
    b, a, *_ = two_dates(tmp_path, "classes")
    unsieved = read(change_map(b, a, tmp_path / "raw.tif", ChangeOptions(mmu_ha=0)).path)
    monkeypatch.setattr(compare, "STRIP", rows)
    sieved = read(change_map(b, a, tmp_path / "many.tif", ChangeOptions(mmu_ha=0.5)).path)
    assert np.array_equal(sieved, whole_array_sieve(unsieved, 50))
    assert (sieved[100:140, 40:80] == T.code(1, 5)).all()            # 1600 px crossing strip borders
    assert (sieved[200:203, 200:203] == T.code(2, 2)).all()          # 9 px: stable


@pytest.mark.parametrize("seed", range(6))
def test_strip_sieve_is_the_whole_array_sieve(seed):
    """Random masks (dense enough for long patches), strips of 1..40 rows, units of 2..300 px."""
    from scipy import ndimage

    from s2pipe.change.sieve import StripSieve, label_patches

    rng = np.random.default_rng(seed)
    for _ in range(20):
        h, w = int(rng.integers(1, 150)), int(rng.integers(1, 60))
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.7)
        min_px, rows = int(rng.integers(2, 300)), int(rng.integers(1, 40))
        labels, _ = ndimage.label(mask)
        expected = (np.bincount(labels.ravel()) < min_px)[labels] & mask
        sieve, got = StripSieve(min_px), []
        for r0 in range(0, h, rows):
            got += sieve.push(r0, *label_patches(mask[r0:r0 + rows]), last=r0 + rows >= h)
            assert sieve.waiting <= -(-min_px // rows) + 1                # memory: a few strips
        assert [r0 for r0, _ in got] == list(range(0, h, rows)) and sieve.waiting == 0
        assert np.array_equal(np.concatenate([small for _, small in got]), expected)


def test_other_grids_are_aligned_onto_before(tmp_path):
    b, a, before, truth, _ = two_dates(tmp_path, "classes")
    shifted = Grid(GRID.crs, GRID.transform * Affine.translation(-50, -30), GRID.width + 100, GRID.height + 60)
    big = np.zeros((shifted.height, shifted.width), np.uint8)
    big[30:30 + GRID.height, 50:50 + GRID.width] = read(a)
    a2 = write_classes(tmp_path / "a_shifted.tif", big, shifted)
    r1 = change_map(b, a, tmp_path / "c1.tif", ChangeOptions(mmu_ha=0))
    r2 = change_map(b, a2, tmp_path / "c2.tif", ChangeOptions(mmu_ha=0))
    assert (r2.width, r2.height) == (GRID.width, GRID.height) and np.array_equal(read(r1.path), read(r2.path))
    r3 = change_map(b, a, tmp_path / "c3.tif", ChangeOptions(mmu_ha=0, resolution=20.0))
    assert (r3.width, r3.height, r3.resolution) == (150, 130, 20.0)


def test_cli_change_json_and_summary(tmp_path):
    b, a, *_ = two_dates(tmp_path)
    res = CliRunner().invoke(cli, ["change", str(b), str(a), "-o", str(tmp_path / "c.tif"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["summary"]["changed_ha"] == 16.0 and d["rule"] == "confidence"
    res = CliRunner().invoke(cli, ["change", str(b), str(a), "-o", str(tmp_path / "d.tif"), "--min-confidence", "0",
                                   "--mmu", "0"])
    assert res.exit_code == 0 and "ha changed" in res.output and "naive" in res.output


def _error(args):
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.output.strip().splitlines()[-1]


def test_bad_input_is_one_error_line_and_leaves_nothing(tmp_path):
    b, a, *_ = two_dates(tmp_path)
    (tmp_path / "cls").mkdir()
    cb, ca, *_ = two_dates(tmp_path / "cls", "classes")
    other = tuple(LandCoverClass(c.value, c.name.upper(), c.color) for c in DEFAULT_LEGEND)
    odd = write_probs(tmp_path / "odd.tif", np.ones((GRID.height, GRID.width), np.uint8),
                      np.full((GRID.height, GRID.width), 0.9, np.float32), legend=other)
    far = Grid(GRID.crs, GRID.transform * Affine.translation(10_000, 0), GRID.width, GRID.height)
    away = write_classes(tmp_path / "away.tif", np.ones((GRID.height, GRID.width), np.uint8), far)
    done = change_map(b, a, tmp_path / "done.tif").path
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = str(tmp_path / "out.tif")
    cases = [
        ([str(b), str(odd)], f"Error: {odd} has another legend than {b} (8 and 8 classes); compare maps of one legend"),
        ([str(cb), str(away)], f"Error: {cb} and {away} do not overlap (on the output grid); "
                               "compare two maps of the same area"),
        ([str(done), str(a)], f"Error: {done} is a change map (s2pipe change); give class probabilities "
                              "(s2pipe predict --probabilities --probabilities-all) or a class map "
                              "(s2pipe predict or mosaic)"),
        ([str(cb), str(ca), "--min-confidence", "0.8"],
         f"Error: --min-confidence needs probabilities of both dates, and {cb} is a class map; give the rasters "
         "of predict --probabilities P --probabilities-all, or leave it out"),
    ]
    for args, line in cases:
        assert _error(["change", *args, "-o", out]) == (1, line)
    assert _error(["change", str(b), str(a), "-o", str(done)]) == (
        1, f"Error: {done} already exists; pass --overwrite to replace it")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before      # nothing written, nothing removed


def test_synth_changes_turn_the_ground_and_write_its_truth(tmp_path):
    from s2pipe.synth.product import synth_product

    a = synth_product(tmp_path / "a", size=256, date="2018-06-07")
    b = synth_product(tmp_path / "b", size=256, date="2024-06-20", changes=1)
    ta, tb, codes = read(a.truth_path), read(b.truth_path), read(b.change_truth_path)
    assert a.change_truth_path is None and (ta != tb).any()
    assert np.array_equal(codes, T.encode(ta, tb))                   # the truth of the change is the truths'
    m = open_map(b.change_truth_path, ("change",))
    assert m.kind == "change" and {T.decode(c.value) for c in m.legend if T.is_change(c.value)} <= {
        (1, 5), (1, 7), (2, 7), (2, 1), (1, 4)}
    polys = gpd.read_file(b.changes_path)
    assert polys["area_ha"].sum() == pytest.approx(T.changed(codes).sum() * 0.01)
    again = synth_product(tmp_path / "c", size=256, date="2021-05-01", changes=1)
    assert np.array_equal(read(again.truth_path), tb)                # one change set: the same turn on any date


@pytest.mark.parametrize("rows", [256, 100])
def test_the_first_overview_given_from_the_rows_is_gdals(tmp_path, monkeypatch, rows):
    """MapWriter with the first overview computed from the rows (mode_halves) writes the
    COG GDAL's build_overviews would: every level equal, ties and no data included, with
    overviews built in many chunks as for a whole tile."""
    from s2pipe.raster import cog
    from s2pipe.raster.cog import MapWriter, mode_halves

    monkeypatch.setattr(cog, "OVERVIEW_CHUNK", 1 << 14)

    rng = np.random.default_rng(3)
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 600000, 0, -10, 5700000), 2204, 1100)  # 551 -> 276:
    data = rng.integers(0, 4, (1100, 2204), dtype=np.uint8)     # windows of 3 px; ties among 3 classes
    data[:300, :700] = np.repeat(np.repeat(rng.integers(0, 9, (100, 350), dtype=np.uint8), 3, 0), 2, 1)
    levels = {}
    for name, given in (("gdal", False), ("given", True)):
        with MapWriter(tmp_path / f"{name}.tif", grid) as w:            # the legend comes at the end
            assert w.takes_halves
            for r0 in range(0, 1100, rows):
                w.write_rows(data[r0:r0 + rows])
                if given:
                    w.write_half_rows(mode_halves(data[r0:r0 + rows]))
            w.finish(legend=DEFAULT_LEGEND)
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            assert ds.overviews(1) == [2, 4, 8] and np.array_equal(ds.read(1), data)
            levels[name] = [ds.read(1, out_shape=(-(-1100 // f), -(-2204 // f))) for f in ds.overviews(1)]
    for gdal, given in zip(levels["gdal"], levels["given"]):
        assert np.array_equal(gdal, given)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".xml" and p.suffix != ".qml") == \
        ["gdal.tif", "given.tif"]                                   # no stage or .ovr left
