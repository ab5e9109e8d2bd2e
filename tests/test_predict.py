"""predict: seamless, streamed full-scene maps (issue 6).

Inputs are tiny: 12-band stacks written here the way ``prepare --stack`` writes them,
and U-Nets with 4 filters on 64 px tiles; one of them trained for a few seconds on the
stack's own pattern so its class boundaries are decisive, like a real model's.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.windows import Window

from cli import cli
from s2pipe.legend import DEFAULT_LEGEND, colormap
from s2pipe.model.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from s2pipe.model.normalization import Normalization
from s2pipe.model.unet import UNet
from s2pipe.prediction.blend import StripAccumulator, blend_scene
from s2pipe.prediction.inference import WindowModel
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene, predict_scenes
from s2pipe.prediction.windows import PANEL_WIDTH, WindowGrid, ramp_weights, read_padded
from s2pipe.sentinel2 import BANDS, DEFAULT_SCL_MASK, RADIOMETRY_CONVENTION, Grid, open_scene
from s2pipe.sentinel2.reader import ReadOptions

TILE = 64
MEAN, STD = 3000.0, 1500.0
NORM = Normalization((MEAN,) * 12, (STD,) * 12)


def pattern(h: int, w: int, x0: int = 0, y0: int = 0) -> np.ndarray:
    """A smooth landscape field in [-1, 1] at scene pixels (y0.., x0..)."""
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float64)
    return (np.sin(xx / 29.0) * np.cos(yy / 23.0) + 0.6 * np.sin((xx + 2 * yy) / 41.0)) / 1.6


def truth(field: np.ndarray) -> np.ndarray:
    """Classes 1..4 by thresholds on the field."""
    return (np.digitize(field, [-0.4, 0.0, 0.4]) + 1).astype(np.uint8)


SPECTRA = 1000.0 * np.array([[1.0 + 0.2 * b for b in range(12)], [2.5] * 12,
                             [4.0 - 0.2 * b for b in range(12)], [5.0, 1.0] * 6])


def stack_array(h: int, w: int, x0: int = 0, y0: int = 0, seed: int = 0) -> np.ndarray:
    """12 bands: each class's spectrum, a little of the field and noise."""
    f = pattern(h, w, x0, y0)
    rng = np.random.default_rng(seed)
    data = SPECTRA[truth(f) - 1].transpose(2, 0, 1) + 300 * f + rng.normal(0, 100, (12, h, w))
    return np.clip(data, 1, 10000).astype(np.uint16)


def _stack_dataset(path: Path, h: int, w: int, x0: float = 500000.0, y0: float = 6000000.0,
                   **options):
    """A 12-band uint16 stack open for writing, described as ``prepare --stack`` does."""
    dst = rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=12, dtype="uint16",
                        crs="EPSG:32634", transform=from_origin(x0, y0, 10, 10), nodata=0,
                        tiled=True, **options)
    dst.descriptions = BANDS
    dst.update_tags(S2PIPE_RADIOMETRY=json.dumps({"convention": RADIOMETRY_CONVENTION}))
    return dst


def write_stack(path: Path, data: np.ndarray, *, x0: float = 500000.0,
                y0: float = 6000000.0) -> Path:
    _, h, w = data.shape
    with _stack_dataset(path, h, w, x0, y0, blockxsize=64, blockysize=64) as dst:
        dst.write(data)
    return path


def make_checkpoint(path: Path, model: UNet | None = None, **meta_over) -> Path:
    torch.manual_seed(0)
    model = model or UNet(12, 8, 4)
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, normalization=NORM, tile_size=TILE,
                     arch=model.arch, radiometry={"convention": RADIOMETRY_CONVENTION})
    save_checkpoint(path, model=model, meta=dataclasses.replace(meta, **meta_over))
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convolutions: one thread is faster


def _batch(rng: np.random.Generator, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(n):
        x0, y0 = rng.integers(0, 2000, 2)
        xs.append((stack_array(TILE, TILE, x0, y0).astype(np.float32) - MEAN) / STD)
        ys.append(truth(pattern(TILE, TILE, x0, y0)).astype(np.int64) - 1)
    return np.stack(xs), np.stack(ys)


@pytest.fixture(scope="module")
def trained(one_torch_thread, tmp_path_factory) -> Path:
    """A 4-filter U-Net trained 60 steps (~6 s) to map the pattern's classes."""
    torch.manual_seed(0)
    model = UNet(12, 8, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    rng = np.random.default_rng(1)
    model.train()
    for _ in range(60):
        x, y = _batch(rng)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for m in model.modules():  # batch-norm statistics of the final weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for _ in range(8):
            model(torch.from_numpy(_batch(rng)[0]))
    model.eval()
    return make_checkpoint(tmp_path_factory.mktemp("model") / "best.pt", model)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    data = stack_array(200, 300)
    data[:, 150:, :40] = 0  # a no-data corner
    return write_stack(tmp_path_factory.mktemp("scene") / "S2_TEST.tif", data)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# ------------------------------------------------------------------ engine units
def test_ramp_weights_sum_to_one_across_the_overlap():
    tile, overlap = 64, 16
    w = ramp_weights(tile, overlap)[tile // 2]
    assert w.min() > 0 and w.max() == 1
    both = w[tile - overlap:] + w[:overlap]  # two windows tile - overlap apart
    np.testing.assert_allclose(both, 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [(300, 200), (40, 30), (1, 1), (64, 64)])
def test_window_grid_keeps_every_pixel_overlap_inside_a_window(size):
    w, h = size
    grid = WindowGrid(w, h, TILE, 16)
    for origins, n in ((grid.cols, w), (grid.rows, h)):
        assert origins[0] == -16 and origins[-1] + TILE >= n + 16
        assert all(b - a <= grid.stride for a, b in zip(origins, origins[1:]))
    assert grid.padded_width == grid.cols[-1] + TILE + 16


@pytest.mark.parametrize("x0,y0,w,h", [(-5, -7, 20, 20), (90, 50, 30, 40), (-70, -70, 200, 150)])
def test_read_padded_reflects_outside_the_scene(x0, y0, w, h):
    img = np.arange(2 * 60 * 100, dtype=np.int64).reshape(2, 60, 100)
    full = np.pad(img, ((0, 0), (200, 200), (200, 200)), mode="reflect")
    got = read_padded(lambda c, r, ww, hh: img[:, r:r + hh, c:c + ww], 100, 60, x0, y0, w, h)
    np.testing.assert_array_equal(got, full[:, y0 + 200:y0 + 200 + h, x0 + 200:x0 + 200 + w])


class _Scene:
    """What blend_scene needs of a Scene: grid size and read(window)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grid = Grid(None, None, data.shape[2], data.shape[1])

    def read(self, w: Window) -> np.ndarray:
        return self.data[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]


def _pixelwise(x: torch.Tensor) -> np.ndarray:
    """A model whose class depends only on each pixel: one-hot of thresholds on band 0."""
    x = x.numpy()
    cls = np.digitize(x[:, 0], [-0.4, 0.0, 0.4])
    return np.eye(8, dtype=np.float32)[cls].transpose(0, 3, 1, 2)


@pytest.mark.parametrize("w,h,overlap,batch", [(300, 200, 16, 4), (131, 77, 32, 3),
                                                (40, 30, 16, 1), (64, 64, 0, 2)])
def test_strips_put_every_window_back_where_it_came_from(w, h, overlap, batch):
    data = stack_array(h, w)
    data[:, : h // 3, : w // 4] = 0
    grid = WindowGrid(w, h, TILE, overlap)
    rows_out, valid_out = [], []
    blend_scene(_Scene(data), _pixelwise, grid, NORM,
                batch_size=batch, num_classes=8,
                on_rows=lambda p, v, c0: (rows_out.append(p.argmax(0) + 1), valid_out.append(v.copy())))
    got = np.concatenate(rows_out)
    expect = truth((data[0].astype(np.float32) - np.float32(MEAN)) / np.float32(STD))
    valid = np.concatenate(valid_out)
    assert got.shape == (h, w)
    np.testing.assert_array_equal(valid, data.any(axis=0))
    np.testing.assert_array_equal(got[valid], expect[valid])


def test_accumulator_memory_is_one_window_row_of_a_panel():
    grid = WindowGrid(10980, 10980, 256, 64)
    assert len(grid.panels) > 1 and grid.max_panel_width <= PANEL_WIDTH
    for panel in grid.panels:
        acc = StripAccumulator(grid, 8, panel)
        assert acc.sums.shape == (8, 256, panel.width)
    # the panels finish every scene column once, left to right
    ranges = [(max(0, p.x0), min(10980, p.final_stop)) for p in grid.panels]
    assert ranges[0][0] == 0 and ranges[-1][1] == 10980
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert WindowGrid(2560, 2560, 256, 64).panels[0].width == 2688  # the demo scene: one panel


def _window_dependent(x: torch.Tensor) -> np.ndarray:
    """A model whose output depends on where a pixel sits in its window, so that the
    blend of overlapping windows matters: softmax of band values plus a column ramp."""
    x = x.numpy()
    t = x.shape[-1]
    logits = np.stack([x[:, 0] * k + np.linspace(-1, 1, t)[None, None, :] * (k - 4)
                       for k in range(8)], axis=1).astype(np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _blend_whole(data: np.ndarray, grid: WindowGrid) -> tuple[np.ndarray, np.ndarray]:
    h, w = data.shape[1:]
    probs, valid = np.full((8, h, w), np.nan, np.float32), np.zeros((h, w), bool)
    filled = {}  # rows done per first column: panels come in row order

    def on_rows(p, v, c0):
        r0 = filled.get(c0, 0)
        n, width = v.shape
        probs[:, r0:r0 + n, c0:c0 + width] = p
        valid[r0:r0 + n, c0:c0 + width] = v
        filled[c0] = r0 + n

    blend_scene(_Scene(data), _window_dependent, grid, NORM,
                batch_size=3, num_classes=8, on_rows=on_rows)
    return probs, valid


@pytest.mark.parametrize("w,overlap,panel", [(300, 16, 100), (300, 32, 64), (131, 16, 70)])
def test_panels_blend_exactly_like_one_scene_wide_strip(w, overlap, panel):
    data = stack_array(150, w)
    data[:, :40, :60] = 0
    one, valid_one = _blend_whole(data, WindowGrid(w, 150, TILE, overlap))
    grid = WindowGrid(w, 150, TILE, overlap, panel_width=panel)
    assert len(grid.panels) >= 2
    many, valid_many = _blend_whole(data, grid)
    assert not np.isnan(many).any()
    np.testing.assert_allclose(many, one, atol=1e-6)
    np.testing.assert_array_equal(valid_many, valid_one)


def test_map_writer_joins_column_parts_and_refuses_gaps(tmp_path):
    from s2pipe.raster.cog import MapWriter

    grid = Grid("EPSG:32633", from_origin(600000, 5700000, 10, 10), 700, 300)
    data = np.random.default_rng(0).integers(1, 9, (300, 700), dtype=np.uint8)
    with MapWriter(tmp_path / "m.tif", grid) as w:
        for c0, c1 in ((0, 250), (250, 600), (600, 700)):
            for r0 in range(0, 300, 70):  # each part in row order, parts one after another
                w.write_rows(data[r0:r0 + 70, c0:c1], c0)
        w.finish()
    with rasterio.open(tmp_path / "m.tif") as dst:
        np.testing.assert_array_equal(dst.read(1), data)
        assert dst.transform == grid.transform and dst.overviews(1) == [2]
    with MapWriter(tmp_path / "gap.tif", grid) as w:
        w.write_rows(data[:, :250], 0)
        w.write_rows(data[:, 300:], 300)
        with pytest.raises(ValueError, match="rows were written"):
            w.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]


def test_d4_tta_is_rotation_equivariant():
    torch.manual_seed(0)
    model = WindowModel(UNet(12, 8, 4), torch.device("cpu"), "d4")
    x = np.random.default_rng(0).normal(size=(1, 12, 32, 32)).astype(np.float32)
    p = model(x)
    p_rot = model(np.ascontiguousarray(np.rot90(x, 1, (2, 3))))
    np.testing.assert_allclose(np.rot90(p, 1, (2, 3)), p_rot, atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------- whole scenes
def test_map_is_on_the_scene_grid_with_nodata_legend_and_provenance(scene, trained, tmp_path):
    out = tmp_path / "map.tif"
    result = predict_scene(scene, trained, out, PredictOptions(overlap=16, batch_size=4, device="cpu"))
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.width, dst.height) == \
            (src.crs, src.transform, src.width, src.height)
        band = dst.read(1)
        assert dst.dtypes[0] == "uint8" and dst.nodata == 0
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dst.compression.name.lower() == "deflate" and dst.profile["tiled"]
        cmap = dst.colormap(1)
        tags, band_tags = dst.tags(), dst.tags(1)
    assert (band[150:, :40] == 0).all() and (band[:150] > 0).all() and (band[:, 40:] > 0).all()
    assert result.nodata_pixels == 50 * 40
    for c in DEFAULT_LEGEND:
        assert cmap[c.value] == colormap()[c.value]
        assert band_tags[f"CLASS_{c.value}"] == c.name
    assert cmap[0][3] == 0
    assert tags["S2PIPE_PRODUCT"] == "S2_TEST" and tags["S2PIPE_OVERLAP"] == "16"
    assert tags["S2PIPE_MODEL"] == str(trained) and "S2PIPE_VERSION" in tags
    # class names for gdalinfo/QGIS: category names and a raster attribute table
    pam = ET.parse(f"{out}.aux.xml").getroot().find("PAMRasterBand")
    cats = [c.text or "" for c in pam.find("CategoryNames")]
    assert cats[0] == "" and cats[1:] == [c.name for c in DEFAULT_LEGEND]
    rows = pam.find("GDALRasterAttributeTable").findall("Row")
    assert [r[1].text for r in rows] == [c.name for c in DEFAULT_LEGEND]
    # areas add up
    assert sum(a.pixels for a in result.class_areas) == 300 * 200 - 50 * 40
    assert sum(a.percent for a in result.class_areas) == pytest.approx(100.0)
    assert result.class_areas[0].hectares == pytest.approx(result.class_areas[0].pixels * 0.01)
    # the QGIS style QGIS applies on opening: exactly the legend's classes, no-data absent
    entries = ET.parse(tmp_path / "map.qml").getroot().iter("paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries] == \
        [(str(c.value), c.name, c.color) for c in DEFAULT_LEGEND]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.qml", "map.tif", "map.tif.aux.xml"]
    # the trained model actually maps the pattern
    assert (band == truth(pattern(200, 300)))[band > 0].mean() > 0.9


def _crop(path: Path, out: Path, x: int, y: int, w: int, h: int) -> Path:
    with rasterio.open(path) as src:
        data = src.read(window=Window(x, y, w, h))
    return write_stack(out, data, x0=500000.0 + 10 * x, y0=6000000.0 - 10 * y)


def _border_change_ratio(band: np.ndarray, cols: list[int], margin: int) -> float:
    """How much more often the class changes across window borders than elsewhere."""
    change = (band[:, 1:] != band[:, :-1])[margin:-margin]
    rate = change.mean(axis=0)
    at = [c - 1 for c in cols if margin < c < band.shape[1] - margin]
    return float(rate[at].mean() / max(rate.mean(), 1e-9))


def test_seamless_across_window_layouts(trained, tmp_path):
    big = write_stack(tmp_path / "big.tif", stack_array(256, 320))
    a = predict_scene(big, trained, tmp_path / "a.tif", PredictOptions(overlap=16, device="cpu")).output
    # window borders fall elsewhere on the landscape (the shift is not a multiple of the
    # stride, 48); it is a multiple of 16, the U-Net's pooling stride, which the tiny
    # model is far from invariant to
    shifted = _crop(big, tmp_path / "shift.tif", 32, 16, 283, 235)
    b = predict_scene(shifted, trained, tmp_path / "b.tif", PredictOptions(overlap=16, device="cpu")).output
    c = predict_scene(big, trained, tmp_path / "c.tif", PredictOptions(overlap=32, device="cpu")).output
    ma, mb, mc = read(a), read(b), read(c)
    m = 24  # away from the scene borders
    same_shift = (ma[16 + m:16 + 235 - m, 32 + m:32 + 283 - m] == mb[m:-m, m:-m]).mean()
    same_overlap = (ma[m:-m, m:-m] == mc[m:-m, m:-m]).mean()
    assert same_shift >= 0.995 and same_overlap >= 0.995
    grid = WindowGrid(320, 256, TILE, 16)
    edges = sorted({x for c in grid.cols for x in (c + 16, c + TILE - 16)})
    assert _border_change_ratio(ma, edges, m) < 2.0
    assert _border_change_ratio(ma.T, edges, m) < 2.0


def test_a_window_inside_the_scene_is_the_model_applied_to_it(trained, tmp_path):
    data = stack_array(192, 192)
    path = write_stack(tmp_path / "s.tif", data)
    band = read(predict_scene(path, trained, tmp_path / "m.tif", PredictOptions(overlap=16, device="cpu")).output)
    model, meta = load_checkpoint(trained)
    x0, y0 = 70, 50
    win = (data[:, y0:y0 + TILE, x0:x0 + TILE].astype(np.float32) - MEAN) / STD
    with torch.no_grad():
        direct = model(torch.from_numpy(win[None])).argmax(1)[0].numpy() + 1
    e = 16  # blending reaches 16 px into the window
    agree = (band[y0 + e:y0 + TILE - e, x0 + e:x0 + TILE - e] == direct[e:-e, e:-e]).mean()
    assert agree >= 0.99


def test_scene_smaller_than_a_tile_and_probabilities(trained, tmp_path):
    path = write_stack(tmp_path / "tiny.tif", stack_array(25, 30))
    r = predict_scene(path, trained, tmp_path / "m.tif", PredictOptions(overlap=16, device="cpu",
                                                                        probabilities=tmp_path / "p.tif",
                                                                        tta="flips"))
    r_all = predict_scene(path, trained, tmp_path / "m2.tif", PredictOptions(overlap=16, device="cpu",
                                                                             probabilities=tmp_path / "pall.tif",
                                                                             probabilities_all=True))
    assert read(r.output).shape == (25, 30) and r.windows == 1
    with rasterio.open(r.probabilities) as p1, rasterio.open(r_all.probabilities) as p8:
        win, every = p1.read(1).astype(int), p8.read().astype(int)
        assert p8.count == 8 and p8.descriptions[0] == f"P({DEFAULT_LEGEND[0].name})"
    assert win.min() >= 255 // 8 and win.max() <= 255
    assert np.abs(every.sum(axis=0) - 255).max() <= 8          # probabilities sum to one
    np.testing.assert_array_equal(every.argmax(axis=0) + 1, read(r_all.output))


def test_a_scene_wider_than_a_panel_maps_the_same(trained, tmp_path, monkeypatch):
    import s2pipe.prediction.windows

    path = write_stack(tmp_path / "s.tif", stack_array(100, 300))
    one = predict_scene(path, trained, tmp_path / "one.tif", PredictOptions(overlap=16, device="cpu",
                                                                            probabilities=tmp_path / "p_one.tif",
                                                                            probabilities_all=True))
    monkeypatch.setattr(s2pipe.prediction.windows, "PANEL_WIDTH", 112)  # 2 windows a panel: 4 panels
    many = predict_scene(path, trained, tmp_path / "many.tif", PredictOptions(overlap=16, device="cpu",
                                                                              probabilities=tmp_path / "p_many.tif",
                                                                              probabilities_all=True))
    assert one.class_areas == many.class_areas
    np.testing.assert_array_equal(read(one.output), read(many.output))
    with rasterio.open(one.probabilities) as a, rasterio.open(many.probabilities) as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["s.tif", "one.tif", "one.tif.aux.xml", "one.qml", "p_one.tif", "many.tif",
         "many.tif.aux.xml", "many.qml", "p_many.tif"])


def test_several_scenes_write_product_names_into_a_folder(trained, tmp_path):
    one = write_stack(tmp_path / "S2A_ONE.tif", stack_array(40, 50))
    two = write_stack(tmp_path / "S2B_TWO.tif", stack_array(50, 40))
    run = predict_scenes([one, two], trained, tmp_path / "maps", PredictOptions(overlap=16, device="cpu"))
    assert [r.output.name for r in run.results] == ["S2A_ONE.tif", "S2B_TWO.tif"]
    assert read(tmp_path / "maps" / "S2B_TWO.tif").shape == (50, 40)


def test_safe_product_is_read_like_prepare_and_clouds_masked_on_request(synth_n0208, trained,
                                                                        tmp_path):
    safe = synth_n0208.safe_path
    plain = predict_scene(safe, trained, tmp_path / "plain.tif", PredictOptions(overlap=16, device="cpu"))
    masked = predict_scene(safe, trained, tmp_path / "masked.tif", PredictOptions(overlap=16, device="cpu",
                                                                                  mask_clouds=True))
    with open_scene(safe, ReadOptions(mask_scl=())) as sc:
        grid, nodata = sc.grid, ~sc.read().any(axis=0)
        clouds = np.isin(sc.read_scl(), DEFAULT_SCL_MASK)
    assert clouds.any() and not clouds.all()
    with rasterio.open(plain.output) as a, rasterio.open(masked.output) as b:
        assert (a.crs, a.transform, a.width, a.height) == \
            (grid.crs, grid.transform, grid.width, grid.height)
        pa, pb = a.read(1), b.read(1)
        assert a.tags()["S2PIPE_PRODUCT"] == synth_n0208.product_name
    np.testing.assert_array_equal(pa == 0, nodata)
    np.testing.assert_array_equal(pb == 0, nodata | clouds)


# ------------------------------------------------------------------ failures
def _invoke(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def _fails_cleanly(args: list, folder: Path, needle: str) -> None:
    before = sorted(folder.rglob("*"))
    code, output = _invoke(args)
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], output
    assert sorted(folder.rglob("*")) == before  # no partial output, no temporary file


def test_cli_writes_a_map_and_reports(scene, trained, tmp_path):
    code, output = _invoke(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif",
                            "--overlap", 16, "--batch-size", 3, "--device", "cpu", "--json"])
    assert code == 0, output
    run = json.loads(output)
    res = run["results"][0]
    assert res["output"] == str(tmp_path / "m.tif") and res["windows"] == 35
    assert {"hectares", "percent", "name"} <= set(res["class_areas"][0])
    assert res["peak_rss_mb"] > 0 and res["seconds"] > 0 and res["windows_per_second"] > 0
    code, output = _invoke(["predict", scene, "--model", trained, "-o", tmp_path / "n.tif",
                            "--overlap", 16])
    assert code == 0 and output.startswith(str(tmp_path / "n.tif")) and "windows" in output


def test_cli_refuses_an_existing_output(scene, trained, tmp_path):
    out = tmp_path / "m.tif"
    out.write_text("keep me")
    _fails_cleanly(["predict", scene, "--model", trained, "-o", out, "--overlap", 16],
                   tmp_path, "--overwrite")
    assert out.read_text() == "keep me"


def test_cli_rejects_a_checkpoint_for_other_bands(scene, tmp_path):
    bad = make_checkpoint(tmp_path / "rgb.pt", UNet(3, 8, 4), bands=("B04", "B03", "B02"),
                          normalization=Normalization((MEAN,) * 3, (STD,) * 3))
    _fails_cleanly(["predict", scene, "--model", bad, "-o", tmp_path / "m.tif", "--overlap", 16],
                   tmp_path, "bands")


def test_cli_rejects_a_checkpoint_of_other_radiometry(scene, tmp_path):
    bad = make_checkpoint(tmp_path / "raw.pt", radiometry={"convention": "raw DN, no offset"})
    _fails_cleanly(["predict", scene, "--model", bad, "-o", tmp_path / "m.tif", "--overlap", 16],
                   tmp_path, "radiometry")


def test_cli_rejects_a_corrupt_checkpoint(scene, trained, tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(trained.read_bytes()[:5000])
    _fails_cleanly(["predict", scene, "--model", bad, "-o", tmp_path / "m.tif"], tmp_path,
                   str(bad))


def test_cli_rejects_a_safe_with_a_missing_band(synth_n0208, trained, tmp_path):
    import shutil

    safe = tmp_path / synth_n0208.safe_path.name
    shutil.copytree(synth_n0208.safe_path, safe)
    next(safe.rglob("*_B8A_20m.jp2")).unlink()
    _fails_cleanly(["predict", safe, "--model", trained, "-o", tmp_path / "m.tif", "--overlap", 16],
                   tmp_path, "B8A")


def test_cli_mask_clouds_needs_a_scene_classification(scene, trained, tmp_path):
    _fails_cleanly(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif",
                    "--overlap", 16, "--mask-clouds"], tmp_path, "SCL")


def test_cli_overlap_must_fit_the_tile(scene, trained, tmp_path):
    _fails_cleanly(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif"], tmp_path,
                   "0 to 32")


@pytest.mark.parametrize("extra", [["--probabilities-all"], ["--tta", "d8"], ["--batch-size", 0]])
def test_cli_usage_errors(scene, trained, tmp_path, extra):
    code, _ = _invoke(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif", *extra])
    assert code == 2 and not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("panel_width,fail_after", [(None, 2), (112, 9)])
def test_a_read_error_mid_scene_leaves_no_output(scene, trained, tmp_path, monkeypatch,
                                                 panel_width, fail_after):
    import s2pipe.prediction.predict as predict_mod
    import s2pipe.prediction.windows
    from s2pipe.errors import MissingBandError

    if panel_width:  # fail in the second panel, after the first one's part files exist
        monkeypatch.setattr(s2pipe.prediction.windows, "PANEL_WIDTH", panel_width)

    real_open = predict_mod.open_scene  # the open of the work (planning opens it first, unpatched)

    class Failing:
        def __init__(self, inner):
            self.inner, self.reads = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def read(self, window):
            self.reads += 1
            if self.reads > fail_after:
                raise MissingBandError(f"{scene}: cannot be decoded; download it again")
            return self.inner.read(window)

    monkeypatch.setattr(predict_mod, "open_scene", lambda *a: Failing(real_open(*a)))
    _fails_cleanly(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif",
                    "--overlap", 16, "--probabilities", tmp_path / "p.tif"], tmp_path, "decoded")


_PEAK = """
import json, sys, torch
torch.set_num_threads(1)
import s2pipe.prediction.windows
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene
s2pipe.prediction.windows.PANEL_WIDTH = 544  # 10 windows: both scenes are predicted in several panels
r = predict_scene(sys.argv[1], sys.argv[2], sys.argv[3], PredictOptions(overlap=16, batch_size=4, device="cpu"))
print(json.dumps({"peak": r.peak_rss_mb, "windows": r.windows, "s": r.seconds}))
"""


def _write_big_stack(path: Path, h: int, w: int) -> Path:
    """write_stack(stack_array(h, w)) 512 rows at a time (the whole would need GBs)."""
    with _stack_dataset(path, h, w, compress="deflate") as dst:
        for r0 in range(0, h, 512):
            n = min(512, h - r0)
            dst.write(stack_array(n, w, y0=r0, seed=r0), window=Window(0, r0, w, n))
    return path


def test_peak_memory_does_not_grow_with_the_scene(trained, tmp_path):
    runs = {}
    for name, (h, w) in (("small", (4096, 1024)), ("large", (8192, 2048))):
        path = _write_big_stack(tmp_path / f"{name}.tif", h, w)
        out = subprocess.run([sys.executable, "-c", _PEAK, str(path), str(trained),
                              str(tmp_path / f"{name}_map.tif")],
                             capture_output=True, text=True, check=True)
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["large"]["windows"] > 3.5 * runs["small"]["windows"]
    output_mb = 8192 * 2048 / 2**20  # the large map, uint8: 16 MB, well above allocator noise
    growth = runs["large"]["peak"] - runs["small"]["peak"]
    assert growth < output_mb, (runs, output_mb)
    with rasterio.open(tmp_path / "large_map.tif") as dst:
        assert dst.overviews(1) == [2, 4, 8, 16]
        assert set(np.unique(dst.read(1, out_shape=(512, 256)))) <= set(range(9))


def test_scenes_of_one_tile_and_date_into_one_folder_never_collide(synth_n0208, synth_n0509, tmp_path):
    """Issue 22: two scenes of one tile and date (a reprocessing: N0208 and N0509 of one take;
    or one product given from two copies) predicted into one folder. Distinct products keep
    their distinct product names; copies of one product name get _1, _2 in the order given."""
    import os

    model = make_checkpoint(tmp_path / "m.pt")
    copy = tmp_path / "copy" / synth_n0208.safe_path.name
    copy.parent.mkdir()
    os.symlink(synth_n0208.safe_path, copy)
    res = CliRunner().invoke(cli, ["predict", str(synth_n0208.safe_path), str(synth_n0509.safe_path), str(copy),
                                   "--model", str(model), "-o", str(tmp_path / "maps"), "--overlap", "16",
                                   "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    a, b = (p.safe_path.name.removesuffix(".SAFE") for p in (synth_n0208, synth_n0509))
    assert a != b and a[:26] == b[:26]  # one tile and sensing time, two processing baselines
    assert sorted(p.name for p in (tmp_path / "maps").glob("*.tif")) == sorted([f"{a}_1.tif", f"{a}_2.tif",
                                                                                f"{b}.tif"])
    with rasterio.open(tmp_path / "maps" / f"{a}_2.tif") as ds:
        assert ds.tags()["S2PIPE_SCENE"] == str(copy)
