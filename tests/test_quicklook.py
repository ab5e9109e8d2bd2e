"""quicklook: class maps with their legend colours, stacks in true colour, decimated reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from matplotlib.image import imread
from rasterio.transform import from_origin

from cli import cli
from s2pipe.legend import DEFAULT_LEGEND, colormap
from s2pipe.raster.quicklook import render_quicklook, stretch

from conftest import SEED_SAMPLE, needs_seed_sample
from tiles_helpers import make_study_format_dirs


def _write(path, data, *, cmap=None, descriptions=None):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs="EPSG:32633",
                       transform=from_origin(600000, 5700000, 10, 10), nodata=0) as ds:
        ds.write(data)
        if cmap:
            ds.write_colormap(1, cmap)
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)
    return path


def _colours(png):
    img = imread(png)
    return {tuple(int(round(v * 255)) for v in px[:3]) for px in img.reshape(-1, img.shape[-1]) if px[3] > 0}


def test_class_map_uses_colour_table_and_decimates(tmp_path):
    data = np.zeros((60, 600), dtype=np.uint8)
    data[:, :200], data[:, 200:400] = 4, 5  # right third stays 0 = no data
    src = _write(tmp_path / "map.tif", data, cmap=colormap())
    result = render_quicklook(src, tmp_path / "map.png", max_size=150)
    assert result.kind == "classes" and result.decimation == 4
    assert (result.width, result.height) == (150, 15)
    assert result.classes_shown == [4, 5]
    colours = _colours(tmp_path / "map.png")
    by_value = {c.value: c.rgb for c in DEFAULT_LEGEND}
    assert by_value[4] in colours and by_value[5] in colours
    assert by_value[8] in colours  # every class is listed in the legend, present or not


def test_file_colour_table_wins_over_default_legend(tmp_path):
    cmap = colormap()
    cmap[2] = (1, 2, 250, 255)
    src = _write(tmp_path / "map.tif", np.full((20, 20), 2, np.uint8), cmap=cmap)
    render_quicklook(src, tmp_path / "map.png")
    assert (1, 2, 250) in _colours(tmp_path / "map.png")


@pytest.mark.parametrize("real", [pytest.param(True, marks=needs_seed_sample), False])
def test_stack_true_colour_of_a_study_tile(tmp_path, real):
    """A tile without band descriptions: the stack order gives B04/B03/B02."""
    images = SEED_SAMPLE / "images" if real else make_study_format_dirs(tmp_path / "study")[0]
    result = render_quicklook(next(images.iterdir()), tmp_path / "rgb.png")
    assert result.kind == "rgb" and (result.width, result.height) == (256, 256)
    img = imread(tmp_path / "rgb.png")
    assert img.shape[:2] == (256, 256)
    assert img[..., :3].std() > 0.05  # a stretched image, not a flat one


def test_stack_uses_band_descriptions(tmp_path):
    data = np.full((3, 10, 10), 500, dtype=np.uint16)  # described as B02, B03, B04
    data[2] = np.arange(1, 11, dtype=np.uint16)[None, :] * 100  # only B04 (red) varies
    src = _write(tmp_path / "s.tif", data, descriptions=["B02", "B03", "B04"])
    render_quicklook(src, tmp_path / "s.png", kind="rgb")
    img = imread(tmp_path / "s.png")
    assert np.all(img[..., 3] == 1.0)
    assert img[..., 0].max() == 1.0 and img[..., 0].min() == 0.0  # red stretched over its range
    assert np.all(img[..., 1:3] == 0.0)  # flat green and blue


def test_stretch_ignores_nodata():
    rgb = np.zeros((3, 4, 4), dtype=np.uint16)
    rgb[:, :2] = np.arange(8, dtype=np.uint16).reshape(2, 4) * 100 + 100
    valid = np.all(rgb > 0, axis=0)
    out = stretch(rgb, valid, (0, 100))
    assert out[:, :2].min() == 0.0 and out[:, :2].max() == 1.0


def test_cli_json_and_refusals(tmp_path):
    src = _write(tmp_path / "map.tif", np.full((20, 30), 3, np.uint8))
    out = tmp_path / "q.png"
    runner = CliRunner()
    res = runner.invoke(cli, ["quicklook", str(src), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["kind"] == "classes" and (tmp_path / info["path"]).exists()
    before = out.read_bytes()
    res = runner.invoke(cli, ["quicklook", str(src), "-o", str(out)])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith("Error: ")
    assert "--overwrite" in res.output and out.read_bytes() == before
    assert runner.invoke(cli, ["quicklook", str(src), "-o", str(out), "--overwrite"]).exit_code == 0
    assert runner.invoke(cli, ["quicklook", str(src), "-o", str(tmp_path / "q.jpg")]).exit_code == 2
    assert runner.invoke(cli, ["quicklook", str(tmp_path / "nope.tif"), "-o", str(out)]).exit_code == 2
    assert runner.invoke(cli, ["quicklook", str(src), "-o", str(out), "--kind", "x"]).exit_code == 2


@pytest.mark.parametrize("bands", [2, 5])
def test_cli_unusable_stack_is_error_without_output(tmp_path, bands):
    src = _write(tmp_path / "s.tif", np.ones((bands, 8, 8), np.uint16))
    out = tmp_path / "s.png"
    res = CliRunner().invoke(cli, ["quicklook", str(src), "-o", str(out)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        f"Error: {src} has {bands} band(s) of uint16; "
        "give a class map (s2pipe predict or mosaic) or a change map (s2pipe change) or a 12-band stack "
        "(s2pipe prepare --stack)")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_product_in_true_colour_from_its_own_band_files(synth_n0208, tmp_path):
    from s2pipe.sentinel2.quicklook import render_product_quicklook

    out = tmp_path / "safe.png"
    q = render_product_quicklook(synth_n0208.safe_path, out, max_size=128)
    assert q.kind == "rgb" and q.decimation == 4 and (q.width, q.height) == (128, 128)
    img = imread(out)
    assert img.shape == (128, 128, 4) and img[..., 3].max() == 1.0 and img[..., 3].min() == 0.0  # no-data strip
    ok = CliRunner().invoke(cli, ["quicklook", str(synth_n0208.safe_path), "-o", str(tmp_path / "c.png"),
                                  "--max-size", "64"])
    assert ok.exit_code == 0 and (tmp_path / "c.png").is_file()
    bad = CliRunner().invoke(cli, ["quicklook", str(synth_n0208.safe_path), "-o", str(tmp_path / "k.png"),
                                   "--kind", "classes"])
    assert bad.exit_code == 2 and "true colour" in bad.output
