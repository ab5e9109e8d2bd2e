"""mosaic: per-scene probabilities (or class maps) into one seamless map (issue 10).

Scenes are written here as predict writes them: one uint8 band per class (255 = 1.0,
every band 0 = no data) with the legend in their tags. Their probabilities come from one
smooth field of the ground in world coordinates plus a little noise of each scene, like
two dates (or two tiles) of one region seen by one model.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from cli import cli
from s2pipe.legend import DEFAULT_LEGEND, legend_to_list
from s2pipe.mosaic.blend import feather_weights
from s2pipe.mosaic.mosaic import mosaic_maps
from s2pipe.mosaic.options import MosaicOptions
from s2pipe.raster.cog import MapWriter
from s2pipe.raster.grid import Grid
from s2pipe.raster.maps import apply_legend, open_map

UTM33, UTM34 = CRS.from_epsg(32633), CRS.from_epsg(32634)
X0, Y0 = 699960.0, 5700000.0  # upper-left corner of scene A (zone 33)


def field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Class logits (8, ...) of the ground at zone-33 coordinates: smooth, a few km patches."""
    u, v = (x - X0) / 900.0, (Y0 - y) / 700.0
    return np.stack([np.sin(u * (1 + k / 7) + k) + np.cos(v * (1.3 - k / 11) - k) for k in range(8)])


def scene_probs(crs: CRS, transform, h: int, w: int, seed: int, noise: float = 0.02) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = transform * (cols.ravel(), rows.ravel())
    if crs != UTM33:
        xs, ys = warp_points(crs, UTM33, xs, ys)
    logits = field(np.asarray(xs), np.asarray(ys)).reshape(8, h, w) * 3
    logits += np.random.default_rng(seed).normal(0, noise, logits.shape)
    e = np.exp(logits - logits.max(axis=0))
    return np.rint(255 * e / e.sum(axis=0)).astype(np.uint8)


def write_probs(path: Path, probs: np.ndarray, crs: CRS, transform, product: str,
                legend: list | None = None) -> Path:
    """Probabilities as ``predict --probabilities-all`` writes them."""
    _, h, w = probs.shape
    tags = {"S2PIPE_LEGEND": json.dumps(legend or legend_to_list()), "S2PIPE_PRODUCT": product}
    with MapWriter(path, Grid(crs, transform, w, h), count=8, nodata=None, overview_resampling="average",
                   tags=tags, band_descriptions=[f"P({c.name})" for c in DEFAULT_LEGEND]) as wr:
        wr.write_rows(probs)
        wr.finish()
    return path


def write_classes(path: Path, classes: np.ndarray, crs: CRS, transform) -> Path:
    h, w = classes.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", nodata=0,
                       crs=crs, transform=transform) as dst:
        dst.write(classes, 1)
        apply_legend(dst, DEFAULT_LEGEND)
    return path


def read(path: Path) -> tuple[np.ndarray, object]:
    with rasterio.open(path) as src:
        return src.read(), src.transform


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """A (zone 33), B (zone 33, 100 px east and south: the next tile), C (zone 34, overlapping
    A's east half), all 300 x 300 px; A has a cloud (no data) where B is valid too."""
    root = tmp_path_factory.mktemp("scenes")
    ta, tb = from_origin(X0, Y0, 10, 10), from_origin(X0 + 1000, Y0 - 1000, 10, 10)
    a = scene_probs(UTM33, ta, 300, 300, seed=1)
    yy, xx = np.mgrid[:300, :300]
    cloud = (yy - 200) ** 2 + (xx - 200) ** 2 < 40 ** 2
    a[:, cloud] = 0
    b = scene_probs(UTM33, tb, 300, 300, seed=2)
    cx, cy = warp_points(UTM33, UTM34, [X0 + 1500], [Y0 - 1500])
    tc = from_origin(round(cx[0] / 10) * 10, round(cy[0] / 10) * 10 + 1500, 10, 10)
    c = scene_probs(UTM34, tc, 300, 300, seed=3)
    return {"a": write_probs(root / "a.tif", a, UTM33, ta, "A"),
            "b": write_probs(root / "b.tif", b, UTM33, tb, "B"),
            "c": write_probs(root / "c.tif", c, UTM34, tc, "C"), "cloud": cloud}  # type: ignore[dict-item]


def _argmax(path: Path) -> tuple[np.ndarray, np.ndarray]:
    p, t = read(path)
    cls = p.argmax(axis=0) + 1
    cls[~p.any(axis=0)] = 0
    return cls, t


def test_feather_ramps_from_edges_and_no_data():
    valid = np.ones((50, 60), bool)
    valid[20:30, 25:35] = False  # a cloud
    w = feather_weights(valid, 8)
    assert w[~valid].max() == 0 and 0 < w[0, 30] < 0.05 and w[25, 10] > 0.99
    assert 0 < w[25, 23] < w[25, 20] < w[25, 14] == pytest.approx(1.0)  # rises away from the cloud
    assert np.all(feather_weights(valid, 0) == valid)


def test_overlap_agrees_with_each_scene_and_leaves_no_seam(scenes, tmp_path):
    r = mosaic_maps([scenes["a"], scenes["b"]], tmp_path / "m.tif", MosaicOptions(sources=tmp_path / "s.tif"))
    m, t = read(tmp_path / "m.tif")
    assert (r.width, r.height) == (400, 400) and t == from_origin(X0, Y0, 10, 10) and r.rule == "probabilities"
    a, _ = _argmax(scenes["a"])
    b, _ = _argmax(scenes["b"])
    m = m[0]
    ov_a, ov_b = a[100:, 100:], b[:200, :200]  # the overlap in each scene's pixels
    mo = m[100:300, 100:300]
    clear = (ov_a > 0) & (ov_b > 0)
    assert (mo[clear] == ov_a[clear]).mean() >= 0.99 and (mo[clear] == ov_b[clear]).mean() >= 0.99
    # no line of changed classes where B begins inside A (column 100), nor anywhere else
    changed = (m[:300, :300] != a) & (a > 0)
    assert changed[:, 96:104].mean() <= 0.01 and changed.mean() <= 0.01
    # A's cloud is filled from B; outside both scenes: no data
    cloud = scenes["cloud"]
    b_in_a = np.zeros_like(b)
    b_in_a[100:, 100:] = b[:200, :200]
    assert (m[:300, :300][cloud] > 0).all() and (m[:300, :300][cloud] == b_in_a[cloud]).mean() >= 0.99
    assert (m[300:, :100] == 0).all() and (m[:100, 300:] == 0).all()
    s, _ = read(tmp_path / "s.tif")
    assert s[1][150, 150] == 2 and s[1][50, 50] == 1 and s[1][350, 350] == 1 and s[1][390, 10] == 0
    assert s[0][50, 50] == 1 and s[0][350, 350] == 2 and (s[0][:300, :300][cloud] == 2).all()
    assert r.class_pixels and sum(r.class_pixels.values()) + r.nodata_pixels == 400 * 400


def test_map_carries_legend_style_and_provenance(scenes, tmp_path):
    mosaic_maps([scenes["a"], scenes["b"]], tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.profile["tiled"] and src.nodata == 0 and src.colormap(1)[5][:3] == (0xE6, 0x00, 0x4D)
        assert src.tags(1)["CLASS_4"] == "Water bodies"
        scenes_tag = json.loads(src.tags()["S2PIPE_SCENES"])
        assert [s["product"] for s in scenes_tag] == ["A", "B"]
    entries = ET.parse(tmp_path / "m.qml").getroot().iter("paletteEntry")
    assert [e.get("label") for e in entries] == [c.name for c in DEFAULT_LEGEND]
    assert (tmp_path / "m.tif.aux.xml").exists()


def test_another_utm_zone_is_resampled_then_decided(scenes, tmp_path):
    r = mosaic_maps([scenes["a"], scenes["c"]], tmp_path / "m.tif", MosaicOptions(crs="EPSG:32633"))
    assert r.crs == "EPSG:32633"
    m, t = read(tmp_path / "m.tif")
    m = m[0]
    h, w = m.shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = t * (cols, rows)
    truth = field(xs, ys).argmax(axis=0) + 1
    mapped = m > 0
    assert mapped.mean() > 0.5 and (m[mapped] == truth[mapped]).mean() >= 0.97
    # the zone-34 scene alone reaches beyond A: mapped there, from C
    assert m[:, 300:].any()


def test_class_maps_take_the_deepest_scene_never_an_average(scenes, tmp_path):
    a, ta = _argmax(scenes["a"])
    b, tb = _argmax(scenes["b"])
    pa = write_classes(tmp_path / "ca.tif", a.astype(np.uint8), UTM33, ta)
    pb = write_classes(tmp_path / "cb.tif", np.full_like(b, 3, dtype=np.uint8), UTM33, tb)
    r = mosaic_maps([pa, pb], tmp_path / "m.tif")
    m = read(tmp_path / "m.tif")[0][0]
    assert r.rule == "classes"
    assert set(np.unique(m)) <= set(np.unique(a)) | {3}
    assert (m[100:105, 150:200] == a[100:105, 150:200]).all()   # near B's edge: A is deeper
    assert (m[292:300, 150:200] == 3).all()                      # near A's edge: B is deeper
    assert (m[:300, :300][scenes["cloud"]] == 3).all()           # A's cloud: B alone


def test_bounds_and_clip_set_the_grid(scenes, tmp_path):
    r = mosaic_maps([scenes["a"]], tmp_path / "b.tif",
                    MosaicOptions(bounds=(X0 + 1003, Y0 - 1999, X0 + 1999, Y0 - 1001)))
    assert (r.width, r.height) == (100, 100)
    assert read(tmp_path / "b.tif")[1] == from_origin(X0 + 1000, Y0 - 1000, 10, 10)
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame(geometry=[shapely.box(X0 + 500, Y0 - 1500, X0 + 1500, Y0 - 500)],
                     crs=UTM33).to_file(tmp_path / "clip.gpkg")
    r = mosaic_maps([scenes["a"]], tmp_path / "c.tif",
                    MosaicOptions(clip=tmp_path / "clip.gpkg", crs="EPSG:32633"))
    m = read(tmp_path / "c.tif")[0][0]
    assert (r.width, r.height) == (100, 100) and (m > 0).all()


def _fails(args: list, tmp_path: Path, *message: str) -> None:
    res = CliRunner().invoke(cli, ["mosaic", *map(str, args)])
    assert res.exit_code == 1, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and all(m in line for m in message), line
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".m", "m."))]


def test_bad_inputs_are_one_line_and_leave_nothing(scenes, tmp_path):
    out = tmp_path / "m.tif"
    other = [{"value": k, "name": f"crop {k}", "color": "#ffff00"} for k in range(1, 9)]
    probs, t = read(scenes["a"])
    odd = write_probs(tmp_path / "odd.tif", probs, UTM33, t, "X", legend=other)
    _fails([scenes["a"], odd, "-o", out], tmp_path, "another legend")
    cls = write_classes(tmp_path / "cls.tif", np.ones((10, 10), np.uint8), UTM33, t)
    _fails([scenes["a"], cls, "-o", out], tmp_path, "all class maps or all probabilities")
    _fails([scenes["a"], "-o", out, "--bounds", 0, 0, 10, 10], tmp_path, "miss every map")
    _fails([scenes["a"], "-o", out, "--crs", "EPSG:99999"], tmp_path, "--crs EPSG:99999")
    _fails([scenes["a"], "-o", out, "--crs", "EPSG:4326"], tmp_path, "projected CRS")
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs=UTM33,
                       transform=t) as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
    _fails([plain, "-o", out], tmp_path, "carries no legend")
    res = CliRunner().invoke(cli, ["mosaic", str(scenes["a"]), "-o", str(out), "--bounds", "0", "0", "1", "1",
                                   "--clip", str(scenes["a"])])
    assert res.exit_code == 2
    out.write_text("keep me")
    res = CliRunner().invoke(cli, ["mosaic", str(scenes["a"]), "-o", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output and out.read_text() == "keep me"
    assert not (tmp_path / "m.qml").exists()


def test_blended_probabilities_are_written_for_change(scenes, tmp_path):
    """--probabilities: the blended probabilities, a probability raster whose argmax is the map."""
    r = mosaic_maps([scenes["a"], scenes["b"]], tmp_path / "m.tif",
                    MosaicOptions(probabilities=tmp_path / "p.tif"))
    assert r.probabilities == tmp_path / "p.tif"
    m = read(tmp_path / "m.tif")[0][0]
    cls, _ = _argmax(tmp_path / "p.tif")
    assert (cls == m).mean() >= 0.999 and ((cls == 0) == (m == 0)).all()
    a, _ = read(scenes["a"])
    p, _ = read(tmp_path / "p.tif")
    inner = p[:, :90, :90].astype(int) - a[:, :90, :90]   # only A there: its probabilities
    assert np.abs(inner).max() <= 1
    assert open_map(tmp_path / "p.tif", ("probabilities",)).legend is not None
    bad = tmp_path / "bad"
    bad.mkdir()
    cls_map = write_classes(bad / "c.tif", np.ones((10, 10), np.uint8), UTM33, from_origin(X0, Y0, 10, 10))
    _fails([cls_map, "-o", bad / "m.tif", "--probabilities", bad / "p.tif"], bad,
           "--probabilities blends class probabilities")
    assert sorted(p.name for p in bad.iterdir()) == ["c.tif"]
