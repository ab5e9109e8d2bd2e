"""STAC Items as products: catalogue variants, same tiles as the SAFE, bad items.

The items below are written here, each in the shape of one catalogue's items (asset keys,
where the baseline, the offset and the CRS sit), pointing at the synthetic product's own
band files: COGs converted from it, or its JPEG2000 files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from s2pipe.errors import MissingBandError, SafeFormatError
from s2pipe.sentinel2.assets import COMMON_NAMES
from s2pipe.sentinel2.facts import BAND_RESOLUTION, BANDS
from s2pipe.sentinel2.metadata import read_product_metadata
from s2pipe.sentinel2.reader import ReadOptions, open_scene, product_info
from s2pipe.synth.stac import write_stac_item


@pytest.fixture(scope="module")
def cogs(synth_n0509, tmp_path_factory):
    """The N0509 product as Earth Search and Planetary Computer items of COGs."""
    root = tmp_path_factory.mktemp("stac")
    return {n: write_stac_item(synth_n0509.safe_path, root / n, naming=n)
            for n in ("earth-search", "planetary-computer")}


def _safe_pixels(safe, window=None):
    with open_scene(safe, ReadOptions(mask_scl=())) as s:
        return s.read(window)


def _grid_fields(info):
    return {"proj:shape": [info.height, info.width], "proj:transform": info.transform}


def _feature(item_id, props, assets, collection="sentinel-2-l2a", version="1.0.0"):
    return {"type": "Feature", "stac_version": version, "id": item_id, "collection": collection,
            "geometry": {"type": "Polygon", "coordinates": [[[16, 51], [17, 51], [17, 52], [16, 51]]]},
            "bbox": [16, 51, 17, 52], "properties": {"datetime": "2018-06-07T09:50:29Z", **props},
            "links": [], "assets": assets}


def _write(path: Path, item) -> Path:
    path.write_text(json.dumps(item))
    return path


def test_synth_items_read_the_same_pixels_as_the_safe(synth_n0509, cogs):
    ref = _safe_pixels(synth_n0509.safe_path)
    for naming, item in cogs.items():
        info = product_info(item)
        assert info.baseline == "05.09" and info.tile == "33UYS" and info.epsg == 32633, naming
        assert info.offsets == {b: -1000 for b in BANDS} and not info.missing_bands
        with open_scene(item, ReadOptions(mask_scl=())) as scene:
            assert type(scene).__name__ == "StacScene"
            np.testing.assert_array_equal(scene.read(), ref)
    es = json.loads(cogs["earth-search"].read_text())
    assert set(COMMON_NAMES.values()) <= set(es["assets"]) and es["id"] == "S2B_33UYS_20180607_0_L2A"
    pc = json.loads(cogs["planetary-computer"].read_text())
    assert {*BANDS, "SCL"} <= set(pc["assets"]) and "raster:bands" not in pc["assets"]["B02"]


def test_same_tiles_from_the_safe_and_its_stac_form(synth_n0509, cogs, tmp_path):
    from s2pipe.tiles.prepare import TileRule, prepare_tiles

    rule = TileRule(tile_size=128, min_labelled=0.05)
    outs = {}
    for name, product in (("safe", synth_n0509.safe_path), ("stac", cogs["earth-search"])):
        outs[name] = prepare_tiles([product], synth_n0509.labels_path, tmp_path / name, rule=rule)
    assert outs["safe"].tiles == outs["stac"].tiles > 0
    for tif in sorted((tmp_path / "safe" / "images").glob("*.tif")):
        import rasterio

        with rasterio.open(tif) as a, rasterio.open(tmp_path / "stac" / "images" / tif.name) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def _earth_search_v1(info, cog_item, safe):
    """Earth Search sentinel-2-l2a: common-name keys, -jp2 twins, item proj:epsg,
    raster:bands per asset, earthsearch:boa_offset_applied."""
    src = json.loads(cog_item.read_text())
    assets = {}
    for key, asset in src["assets"].items():
        asset = dict(asset, href=str(cog_item.parent / asset["href"]))
        assets[key] = asset
        band = next((b for b, k in COMMON_NAMES.items() if k == key), None)
        if band in BANDS:  # the JPEG2000 twin, listed first to show that order does not matter
            assets = {f"{key}-jp2": {"href": info.band_files[band], "type": "image/jp2", "roles": ["data"]},
                      **assets}
    props = {"platform": "sentinel-2b", "constellation": "sentinel-2", "proj:epsg": 32633,
             "s2:processing_baseline": "05.09", "s2:product_uri": f"{info.name}.SAFE",
             "earthsearch:boa_offset_applied": False, "grid:code": "MGRS-33UYS"}
    return _feature("S2B_33UYS_20180607_0_L2A", props, assets)


def _earth_search_c1(info, cog_item):
    """Earth Search sentinel-2-c1-l2a (STAC 1.1): asset-level raster:scale/raster:offset,
    proj:code on each asset, the baseline only as processing:version."""
    src = json.loads(cog_item.read_text())
    assets = {}
    for key, asset in src["assets"].items():
        fields = {k: v for k, v in asset.items() if k not in ("raster:bands", "eo:bands")}
        fields.update(href=str(cog_item.parent / asset["href"]), **{"proj:code": "EPSG:32633"})
        if key != "scl":
            fields.update({"raster:scale": 0.0001, "raster:offset": -0.1, "nodata": 0, "data_type": "uint16",
                           "bands": [{"name": key}]})
        assets[key] = fields
    props = {"platform": "sentinel-2b", "constellation": "sentinel-2", "processing:version": "05.09",
             "product:type": "S2MSI2A", "mgrs:utm_zone": 33, "mgrs:latitude_band": "U", "mgrs:grid_square": "YS"}
    return _feature("S2B_T33UYS_20180607T095029_L2A", props, assets, collection="sentinel-2-c1-l2a",
                    version="1.1.0")


def _cdse(info):
    """Copernicus Data Space: ids with a resolution suffix (B02_10m, B02_20m, SCL_20m), the
    SAFE's JPEG2000 files, proj:code and raster:offset on the assets, the baseline only in
    the product id."""
    assets = {}
    for band in BANDS:
        res = BAND_RESOLUTION[band]
        assets[f"{band}_{res}m"] = {"href": info.band_files[band], "type": "image/jp2", "roles": ["data"],
                                    "gsd": res, "proj:code": "EPSG:32633", "raster:scale": 0.0001,
                                    "raster:offset": -0.1, **(_grid_fields(info) if res == 10 else {})}
        if res == 10:  # a coarser twin of a 10 m band, as the product has it: not the one to take
            assets[f"{band}_20m"] = {"href": "does-not-exist.jp2", "type": "image/jp2", "roles": ["data"]}
    assets["SCL_20m"] = {"href": info.scl_file, "type": "image/jp2", "roles": ["data"]}
    props = {"platform": "sentinel-2b", "constellation": "sentinel-2", "product:type": "S2MSI2A"}
    return _feature(info.name, props, assets, version="1.1.0")


def test_catalogue_variants_give_the_safe_pixels(synth_n0509, cogs, tmp_path):
    info = read_product_metadata(synth_n0509.safe_path)
    ref = _safe_pixels(synth_n0509.safe_path)
    items = {"es": _earth_search_v1(info, cogs["earth-search"], synth_n0509.safe_path),
             "c1": _earth_search_c1(info, cogs["earth-search"]),
             "cdse": _cdse(info)}
    for name, item in items.items():
        path = _write(tmp_path / f"{name}.json", item)
        got = product_info(path)
        assert got.baseline == "05.09" and got.epsg == 32633 and got.tile == "33UYS", name
        assert got.offsets == {b: -1000 for b in BANDS}, name
        assert (got.width, got.height, got.transform) == (info.width, info.height, info.transform), name
        if name == "es":
            assert got.band_files["B02"].endswith(".tif")  # the COG, not its JPEG2000 twin
            assert got.radiometry_metadata["offset_flag"] == "earthsearch:boa_offset_applied"
        with open_scene(path, ReadOptions(mask_scl=())) as scene:
            np.testing.assert_array_equal(scene.read(), ref, err_msg=name)


def test_offset_flag_applied_and_pre_0400_baselines(synth_n0509, cogs, tmp_path):
    info = read_product_metadata(synth_n0509.safe_path)
    item = _earth_search_v1(info, cogs["earth-search"], synth_n0509.safe_path)
    item["properties"]["earthsearch:boa_offset_applied"] = True
    got = product_info(_write(tmp_path / "applied.json", item))
    assert set(got.offsets.values()) == {0} and "true" in got.radiometry_metadata["source"]
    item["properties"]["earthsearch:boa_offset_applied"] = False
    item["properties"]["s2:processing_baseline"] = "02.08"  # raster offset -0.1 stated: ignored
    got = product_info(_write(tmp_path / "old.json", item))
    assert set(got.offsets.values()) == {0} and "note" in got.radiometry_metadata


@pytest.mark.parametrize("props,collection,message", [
    ({"platform": "landsat-8", "instruments": ["oli", "tirs"]}, "landsat-c2-l2", "landsat-8"),
    ({"platform": "sentinel-1a", "sar:instrument_mode": "IW"}, "sentinel-1-grd", "sentinel-1a"),
    ({"platform": "sentinel-2a", "s2:product_type": "S2MSI1C"}, "sentinel-2-l1c", "Level-1C"),
])
def test_items_of_other_missions_or_levels_are_named(tmp_path, props, collection, message):
    path = _write(tmp_path / "x.json", _feature("x", props, {"B02": {"href": "B02.tif"}}, collection=collection))
    with pytest.raises(SafeFormatError, match=message) as err:
        product_info(path)
    assert "\n" not in str(err.value)
    r = CliRunner().invoke(cli, ["info", str(path)])
    assert r.exit_code == 1 and message in r.output and len(r.output.strip().splitlines()) == 1


def test_missing_asset_and_not_an_item_are_named(synth_n0509, cogs, tmp_path):
    item = json.loads(cogs["planetary-computer"].read_text())
    for asset in item["assets"].values():
        asset["href"] = str(cogs["planetary-computer"].parent / asset["href"])
    del item["assets"]["B05"]
    path = _write(tmp_path / "pc.json", item)
    assert product_info(path).missing_bands == ["B05"]
    with pytest.raises(MissingBandError, match="B05 .rededge1 / B05 / B05_20m"):
        open_scene(path)
    collection = {"type": "Collection", "id": "sentinel-2-l2a", "stac_version": "1.0.0"}
    with pytest.raises(SafeFormatError, match="not a STAC Item"):
        product_info(_write(tmp_path / "c.json", collection))


def test_cli_synth_stac_then_info(tmp_path):
    r = CliRunner().invoke(cli, ["synth", str(tmp_path / "s"), "--size", "256", "--format", "stac",
                                 "--stac-naming", "planetary-computer", "--json"])
    assert r.exit_code == 0, r.output
    item = Path(json.loads(r.output)["safe_path"])
    assert item.suffix == ".json" and (item.parent / "T33UYS_20180607T095029_B02_10m.tif").is_file()
    assert not list(item.parent.glob(".safe-*")) and not list(item.parent.glob("*.jp2"))
    r = CliRunner().invoke(cli, ["info", str(item)])
    assert r.exit_code == 0 and "02.08" in r.output and "B8A" in r.output


def _pc_2021(cog_item: Path, out: Path, *, coarse: bool = False, scl_key: str | None = "SCL-20m",
             shift: float = 0.0) -> Path:
    """A Planetary Computer item of 2021 (STAC 1.0.0-beta.2): a 10 m band also offered as
    ``B02_20m`` and ``B02_60m`` (listed first), SCL as ``SCL-20m``; with ``coarse`` the 20 m
    bands only at 60 m (files made here, ``shift`` metres off the tile's grid)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    src = json.loads(cog_item.read_text())
    assets: dict = {}
    for key, asset in src["assets"].items():
        asset = dict(asset, href=str(cog_item.parent / asset["href"]))
        if key == "SCL":
            if scl_key is not None:
                assets[scl_key] = {k: v for k, v in asset.items() if k != "gsd"}
            continue
        if BAND_RESOLUTION.get(key) == 10:
            for res in (60, 20):
                assets[f"{key}_{res}m"] = {"href": "does-not-exist.tif", "type": asset["type"], "gsd": res,
                                           "roles": ["data"], "eo:bands": [{"name": key}]}
        if coarse and BAND_RESOLUTION.get(key) == 20:
            with rasterio.open(asset["href"]) as ds:
                w, h = -(-ds.width * 20 // 60), -(-ds.height * 20 // 60)
                t = ds.transform
                t60 = rasterio.Affine(60, 0, t.c + shift, 0, -60, t.f)
                arr = np.zeros((h, w), dtype="uint16")
                reproject(ds.read(1), arr, src_transform=t, src_crs=ds.crs, dst_transform=t60, dst_crs=ds.crs,
                          resampling=Resampling.average, src_nodata=0, dst_nodata=0)
                path = out / f"{key}_60m.tif"
                out.mkdir(parents=True, exist_ok=True)
                with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16",
                                   crs=ds.crs, transform=t60, nodata=0) as dst:
                    dst.write(arr, 1)
            key, asset = f"{key}_60m", {**asset, "href": str(path), "gsd": 60, "proj:shape": [h, w],
                                        "proj:transform": list(t60)[:6]}
        assets[key] = asset
    item = dict(src, stac_version="1.0.0-beta.2", assets=assets)
    out.mkdir(parents=True, exist_ok=True)
    return _write(out / "item.json", item)


def test_assets_are_chosen_by_band_and_resolution_not_by_key_order(synth_n0509, cogs, tmp_path):
    """Issue 22: B02 under B02, B02_20m and B02_60m, SCL under SCL-20m (2021 Planetary Computer)."""
    path = _pc_2021(cogs["planetary-computer"], tmp_path)
    info = product_info(path)
    assert info.band_files["B02"].endswith("_B02_10m.tif") and not info.coarser_bands
    assert info.scl_file is not None and info.scl_file.endswith("_SCL_20m.tif")
    assert info.assets["B02"] == "B02 (10 m)" and info.assets["SCL"].startswith("SCL-20m")
    r = CliRunner().invoke(cli, ["info", str(path)])
    assert r.exit_code == 0 and "asset B02 (10 m)" in r.output and "asset SCL-20m" in r.output, r.output
    ref = _safe_pixels(synth_n0509.safe_path)
    with open_scene(path) as scene, open_scene(synth_n0509.safe_path) as safe:
        assert scene.scl_masked == safe.scl_masked != ()
        np.testing.assert_array_equal(scene.read(), safe.read())
    with open_scene(path, ReadOptions(mask_scl=())) as scene:
        np.testing.assert_array_equal(scene.read(), ref)


def test_bands_offered_only_coarser_are_read_resampled_and_noted(synth_n0509, cogs, tmp_path, caplog):
    path = _pc_2021(cogs["planetary-computer"], tmp_path / "coarse", coarse=True)
    info = product_info(path)
    twenty = [b for b in BANDS if BAND_RESOLUTION[b] == 20]
    assert info.coarser_bands == {b: 60 for b in twenty}
    ref = _safe_pixels(synth_n0509.safe_path)
    with caplog.at_level("WARNING"), open_scene(path, ReadOptions(mask_scl=())) as scene:
        got = scene.read()
        assert scene.radiometry.coarser_bands == {b: 60 for b in twenty}
        assert scene.info.coarser_bands == {b: 60 for b in twenty}
    assert "B05 at 60 m" in caplog.text and "resampled" in caplog.text
    valid = (got > 0).all(axis=0) & (ref > 0).all(axis=0)
    assert valid.mean() > 0.9
    for i, b in enumerate(BANDS):
        if BAND_RESOLUTION[b] == 20:  # the same ground, blurred
            assert np.corrcoef(got[i][valid], ref[i][valid])[0, 1] > 0.8, b
        else:
            np.testing.assert_array_equal(got[i][valid], ref[i][valid])
    bad = _pc_2021(cogs["planetary-computer"], tmp_path / "shifted", coarse=True, shift=60.0)
    with pytest.raises(MissingBandError, match="B05 is .* at 60 m, expected .* does not belong"):
        open_scene(bad)


def test_an_unmasked_scene_says_so_and_its_tiles_record_it(synth_n0509, cogs, tmp_path):
    path = _pc_2021(cogs["planetary-computer"], tmp_path / "item", scl_key=None)
    out = tmp_path / "tiles"
    r = CliRunner().invoke(cli, ["prepare", str(path), "--labels", str(synth_n0509.labels_path), "-o", str(out),
                                 "--tile-size", "128"])
    assert r.exit_code == 0, r.output
    assert "no scene classification (SCL) in the product: clouds, shadows and no-data pixels are NOT masked" \
        in r.output
    record = json.loads((out / "prepare.json").read_text())
    assert "(SCL)" in json.dumps(record) and "unmasked" in json.dumps(record)
