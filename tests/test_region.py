"""Regions (issue 10): several products in one tile set split by ground, one model, one mosaic.

Three small synthetic products of one ground: A, B (ten days later, 128 px east and south,
overlapping A) and C (UTM zone 34, overlapping A across the zone border); the labels are A's.
"""

from __future__ import annotations

import json
from itertools import combinations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.warp import transform as warp_points

from cli import cli
from s2pipe.synth.product import synth_product
from s2pipe.tiles.manifest import TileManifest

from conftest import REGION_WORLD

SIZE = 384
TILE = ["--tile-size", "64", "--block-size", "128", "--min-labelled", "0.05", "--split", "0.6,0.2,0.2"]


def _run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    root = tmp_path_factory.mktemp("region")
    world = dict(world=REGION_WORLD, world_epsg=32633)  # one ground for the three products
    a = synth_product(root / "a", size=SIZE, seed=0, **world)
    x0, y0 = a.origin
    b = synth_product(root / "b", size=SIZE, seed=0, origin=(x0 + 1280, y0 - 1280), date="2018-06-17",
                      **world)
    xs, ys = warp_points("EPSG:32633", "EPSG:32634", [x0 + 1920], [y0 - 1920])
    c = synth_product(root / "c", size=SIZE, seed=0, epsg=32634,
                      origin=(round(xs[0] / 10) * 10 - 1920.0, round(ys[0] / 10) * 10 + 1920.0), **world)
    return a, b, c


@pytest.fixture(scope="module")
def tiles(region, tmp_path_factory):
    a, b, c = region
    out = tmp_path_factory.mktemp("tiles") / "tiles"
    listing = out.parent / "products.txt"
    listing.write_text(f"# the region\n{b.safe_path}\n\n{c.safe_path}\n")
    res = _run("prepare", a.safe_path, "--products", listing, "--labels", a.labels_path, "-o", out,
               *TILE, "--json")
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_one_tile_set_from_products_of_two_tiles_and_two_zones(tiles):
    out, result = tiles
    m = TileManifest.read(out)
    keys = [p.key for p in m.products]
    assert len(keys) == 3 == len(set(keys)) and len(result["products"]) == 3
    assert {p.info["epsg"] for p in m.products} == {32633, 32634}
    ids = [t.id for t in m.tiles]
    assert len(ids) == len(set(ids)) and all(t.id.startswith(t.product + "_") for t in m.tiles)
    assert {t.product for t in m.tiles} == set(keys)  # every product gave tiles
    for p in m.products:  # per-product counts add up to the set's
        assert p.counts["written"] == sum(t.product == p.key for t in m.tiles)
    assert m.counts["written"] == len(m.tiles) == len(list((out / "images").iterdir()))
    coverage = m.counts["class_pixels_by_split"]
    assert set(coverage) == {"train", "val", "test"} and all(sum(v.values()) > 0 for v in coverage.values())
    zone34 = next(p.key for p in m.products if p.info["epsg"] == 32634)
    tile = next(t for t in m.tiles if t.product == zone34)
    with rasterio.open(out / "images" / f"{tile.id}.tif") as src:
        assert src.crs.to_epsg() == 32634  # imagery stays in its own CRS, never resampled


def test_no_labelled_ground_point_is_in_two_splits(tiles):
    out, _ = tiles
    foot = gpd.read_file(out / "tiles.gpkg")
    assert foot.crs.to_epsg() == 32633 and set(foot["epsg"]) == {32633, 32634}
    shared = 0
    rows = [r for _, r in foot.iterrows()]
    for a, b in combinations(rows, 2):
        inter = a.geometry.intersection(b.geometry).area
        if a["split"] != b["split"]:
            assert inter < 1.0, (a["id"], b["id"], inter)
        elif a["product"] != b["product"] and inter > 100:
            shared += 1
    assert shared > 0  # the same ground seen by two products, in one split


def test_train_on_several_tile_folders_checks_their_contract(region, tiles, tmp_path):
    torch.set_num_threads(1)
    a, b, _ = region
    for name, product in (("ta", a), ("tb", b)):
        res = _run("prepare", product.safe_path, "--labels", a.labels_path, "-o", tmp_path / name, *TILE)
        assert res.exit_code == 0, res.output
    res = _run("train", tmp_path / "ta", tmp_path / "tb", tiles[0], "-o", tmp_path / "m", "--epochs", 1,
               "--filters", 2, "--batch-size", 8, "--no-save-samples", "--json")
    assert res.exit_code == 0, res.output
    n = sum(json.loads((d / "prepare.json").read_text())["counts"]["written"]
            for d in (tmp_path / "ta", tmp_path / "tb", tiles[0]))
    assert sum(json.loads(res.stdout)["tiles"].values()) == n
    res = _run("prepare", a.safe_path, "--labels", a.labels_path, "-o", tmp_path / "t32", "--tile-size", "32")
    assert res.exit_code == 0, res.output
    bad = _run("train", tmp_path / "ta", tmp_path / "t32", "-o", tmp_path / "m2", "--epochs", 1)
    assert bad.exit_code == 1 and "another tile size" in bad.output and not (tmp_path / "m2").exists()


def test_predict_probabilities_mosaic_into_one_map(region, tiles, tmp_path):
    torch.set_num_threads(1)
    a, b, c = region
    res = _run("train", tiles[0], "-o", tmp_path / "m", "--epochs", 1, "--filters", 2, "--batch-size", 8,
               "--no-save-samples")
    assert res.exit_code == 0, res.output
    res = _run("predict", a.safe_path, b.safe_path, c.safe_path, "--model", tmp_path / "m" / "best.pt",
               "-o", tmp_path / "maps", "--probabilities", tmp_path / "probs", "--probabilities-all",
               "--overlap", 16, "--device", "cpu")
    assert res.exit_code == 0, res.output
    probs = sorted((tmp_path / "probs").glob("*.tif"))
    assert len(probs) == 3
    res = _run("mosaic", *probs, "-o", tmp_path / "region.tif", "--sources", tmp_path / "src.tif", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rule"] == "probabilities" and len(out["scenes"]) == 3 and out["crs"] == "EPSG:32633"
    with rasterio.open(tmp_path / "region.tif") as m, rasterio.open(tmp_path / "src.tif") as s:
        assert m.width > SIZE and m.height > SIZE and m.tags(1)["CLASS_1"] == "Agricultural areas"
        sources = s.read(2)
        assert sources.max() == 3 and (sources[m.read(1) > 0] >= 1).all()
    assert np.isin(list(out["class_pixels"]), [str(v) for v in range(1, 9)]).all()
    # the test tiles of every product, reprojected onto the mosaic's grid, are what counts
    res = _run("evaluate", tmp_path / "region.tif", "--labels", a.labels_path, "--split-from", tiles[0],
               "-o", tmp_path / "report", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pixels"] > 0 and json.loads(res.stdout)["split"] == "test"
