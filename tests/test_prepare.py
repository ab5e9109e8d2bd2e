"""``s2pipe prepare``: tiles, labels, splits, manifest, and every refusal."""

from __future__ import annotations

import json
import shutil
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio import features

from cli import cli
from s2pipe.sentinel2.facts import BANDS

from tiles_helpers import make_study_format_dirs

TILE = ["--tile-size", "128"]


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _prepare(synth, out, *extra):
    r = _run("prepare", synth.safe_path, "--labels", synth.labels_path, "-o", out, *TILE, "--json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.crs


@pytest.fixture(scope="module")
def prepared(synth_n0208, synth_n0509, tmp_path_factory):
    """Tiles of the N0208 and N0509 products, and of the N0509 product zipped."""
    base = tmp_path_factory.mktemp("prepared")
    safe = synth_n0509.safe_path
    z = base / f"{safe.stem}.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for p in safe.rglob("*"):
            zf.write(p, p.relative_to(safe.parent))
    _prepare(synth_n0208, base / "n0208")
    _prepare(synth_n0509, base / "n0509", "--stack", base / "stack.tif")
    r = _run("prepare", z, "--labels", synth_n0509.labels_path, "-o", base / "zip", *TILE)
    assert r.exit_code == 0, r.output
    return base


def _tile_names(out):
    return sorted(p.name for p in (out / "images").iterdir())


def test_layout_and_manifest_agree_with_files(prepared, synth_n0509):
    out = prepared / "n0509"
    x0, y0 = synth_n0509.origin
    m = json.loads((out / "prepare.json").read_text())
    names = _tile_names(out)
    assert names == sorted(p.name for p in (out / "labels").iterdir())
    assert names == sorted(f"{t['id']}.tif" for t in m["tiles"]) and len(names) == m["counts"]["written"]
    assert sum(m["counts"][s] for s in ("train", "val", "test")) == len(names)
    assert {t["split"] for t in m["tiles"]} == {"train", "val", "test"}
    assert m["bands"] == list(BANDS) and m["tile_size"] == 128 and m["resampling"] == "bilinear"
    assert m["radiometry"]["convention"] == "DN = 10000 * reflectance (BOA_ADD_OFFSET applied)"
    assert m["radiometry"]["baseline"] == "05.09" and m["radiometry"]["offset_applied"]["B01"] == -1000
    info = m["products"][0]["info"]
    assert info["tile"] == "33UYS" and info["epsg"] == 32633 and len(m["products"]) == 1
    assert [c["value"] for c in m["legend"]] == list(range(1, 9))
    for t in m["tiles"]:
        lab, transform, crs = _read(out / "labels" / f"{t['id']}.tif")
        img, t2, _ = _read(out / "images" / f"{t['id']}.tif")
        assert img.shape == (12, 128, 128) and img.dtype == np.uint16 and transform == t2
        assert t["id"] == f"r{t['row']:06d}_c{t['col']:06d}"
        assert (transform.c, transform.f) == (x0 + 10 * t["col"], y0 - 10 * t["row"])
        hist = np.bincount(lab.ravel(), minlength=9)
        assert t["class_counts"] == {str(c): int(hist[c]) for c in range(1, 9) if hist[c]}
        assert t["labelled_fraction"] == pytest.approx(np.count_nonzero(lab) / 128**2, abs=1e-6)
        assert t["labelled_fraction"] >= 0.05 and t["nodata_fraction"] <= 0.5
        assert ((img == 0).all(axis=0) <= (lab[0] == 0)).all()  # no label on no-data pixels
    with rasterio.open(out / "images" / f"{names[0]}") as src:
        assert src.descriptions == BANDS and src.nodata == 0 and src.crs.to_epsg() == 32633
    with rasterio.open(out / "labels" / f"{names[0]}") as src:
        assert src.nodata == 0 and src.colormap(1)[2][:3] == (38, 115, 0)
    gdf = gpd.read_file(out / "tiles.gpkg")
    assert sorted(gdf["id"]) == sorted(t["id"] for t in m["tiles"]) and gdf.crs.to_epsg() == 32633
    assert gdf.geometry.area.round().eq(1280.0**2).all()


def test_10m_band_equals_the_jp2_dns(prepared, synth_n0509):
    m = json.loads((prepared / "n0509" / "prepare.json").read_text())
    t = m["tiles"][0]
    img, _, _ = _read(prepared / "n0509" / "images" / f"{t['id']}.tif")
    b02 = next(synth_n0509.safe_path.rglob("*_B02_10m.jp2"))
    with rasterio.open(b02) as src:
        dn = src.read(1)[t["row"]:t["row"] + 128, t["col"]:t["col"] + 128].astype(int)
    valid = img[1] != 0
    assert valid.mean() > 0.5
    np.testing.assert_array_equal(img[1][valid], dn[valid] - 1000)


def test_20m_nearest_equals_2x2_replication(synth_n0509, tmp_path):
    m = _prepare(synth_n0509, tmp_path / "near", "--resampling", "nearest", "--mask", "none")
    assert m["tiles"] >= 1
    with rasterio.open(next(synth_n0509.safe_path.rglob("*_B8A_20m.jp2"))) as src:
        b8a = np.repeat(np.repeat(src.read(1).astype(int), 2, 0), 2, 1)
    manifest = json.loads((tmp_path / "near" / "prepare.json").read_text())
    for t in manifest["tiles"][:4]:
        img, _, _ = _read(tmp_path / "near" / "images" / f"{t['id']}.tif")
        ref = b8a[t["row"]:t["row"] + 128, t["col"]:t["col"] + 128] - 1000
        valid = (img != 0).all(axis=0)
        np.testing.assert_array_equal(img[BANDS.index("B8A")][valid], np.clip(ref, 1, None)[valid])


def test_baselines_and_zip_give_identical_tiles(prepared):
    names = _tile_names(prepared / "n0208")
    assert names == _tile_names(prepared / "n0509") == _tile_names(prepared / "zip")
    for name in names:
        for kind in ("images", "labels"):
            a = _read(prepared / "n0208" / kind / name)[0]
            np.testing.assert_array_equal(a, _read(prepared / "n0509" / kind / name)[0])
            np.testing.assert_array_equal(a, _read(prepared / "zip" / kind / name)[0])


def test_labels_equal_an_independent_rasterisation(prepared, synth_n0509):
    vec = gpd.read_file(synth_n0509.labels_path)
    assert vec.crs.to_epsg() == 2180  # not the scene's CRS
    vec = vec.to_crs(32633)
    vec = vec.iloc[np.argsort(-vec.area.values, kind="stable")]
    m = json.loads((prepared / "n0509" / "prepare.json").read_text())
    for t in m["tiles"]:
        lab, transform, _ = _read(prepared / "n0509" / "labels" / f"{t['id']}.tif")
        img = _read(prepared / "n0509" / "images" / f"{t['id']}.tif")[0]
        ref = features.rasterize(zip(vec.geometry, vec["class"].astype(int)), out_shape=(128, 128),
                                 transform=transform, dtype="uint8")
        ref[(img == 0).all(axis=0)] = 0
        np.testing.assert_array_equal(lab[0], ref)


def test_stack_reads_like_the_product(prepared, synth_n0509):
    from s2pipe.sentinel2.reader import open_scene

    with open_scene(prepared / "stack.tif") as st, open_scene(synth_n0509.safe_path) as s:
        np.testing.assert_array_equal(st.read(), s.read())


def test_overlapping_tiles_never_straddle_splits(synth_n0208, tmp_path):
    m = _prepare(synth_n0208, tmp_path / "o", "--stride", "64", "--block-size", "128",
                 "--min-labelled", "0.01", "--split", "0.5,0.25,0.25")
    tiles = json.loads((tmp_path / "o" / "prepare.json").read_text())["tiles"]
    assert len(tiles) == m["tiles"] > 16 and len({t["split"] for t in tiles}) == 3
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            if abs(a["row"] - b["row"]) < 128 and abs(a["col"] - b["col"]) < 128:
                assert a["split"] == b["split"], (a["id"], b["id"])
    assert len(list((tmp_path / "o" / "images").iterdir())) == len(tiles)


# ------------------------------------------------------------------ refusals
def _assert_refused(r, out, *words):
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _copy(synth, tmp_path):
    dst = tmp_path / synth.safe_path.name
    shutil.copytree(synth.safe_path, dst)
    return dst


def test_missing_and_corrupt_band_files(synth_n0208, tmp_path):
    safe = _copy(synth_n0208, tmp_path)
    b12 = next(safe.rglob("*_B12_20m.jp2"))
    b12.write_bytes(b12.read_bytes()[: b12.stat().st_size // 2])
    out = tmp_path / "out"
    r = _run("prepare", safe, "--labels", synth_n0208.labels_path, "-o", out, *TILE, "--stack", tmp_path / "s.tif")
    _assert_refused(r, out, b12.name, "corrupt")
    assert not (tmp_path / "s.tif").exists()
    b12.unlink()
    _assert_refused(_run("prepare", safe, "--labels", synth_n0208.labels_path, "-o", out), out,
                    "B12", b12.name, "missing")


def test_l1c_and_foreign_products_are_refused(synth_n0208, tmp_path):
    safe = _copy(synth_n0208, tmp_path)
    mtd = safe / "MTD_MSIL2A.xml"
    (safe / "MTD_MSIL1C.xml").write_text(mtd.read_text().replace("Level-2A", "Level-1C")
                                         .replace("S2MSI2A", "S2MSI1C"))
    mtd.unlink()
    out = tmp_path / "out"
    _assert_refused(_run("prepare", safe, "--labels", synth_n0208.labels_path, "-o", out), out,
                    "Level-1C", "Level-2A")
    _assert_refused(_run("info", safe), out, "Level-1C")
    images, _ = make_study_format_dirs(tmp_path / "study", size=128)
    study_tile = next(images.iterdir())  # a 12-band tile without band descriptions
    _assert_refused(_run("prepare", study_tile, "--labels", synth_n0208.labels_path, "-o", out), out,
                    "not a 12-band uint16 stack with band descriptions", "supported")


def _vectors(tmp_path, name, values, geoms, crs):
    path = tmp_path / name
    gpd.GeoDataFrame({"class": values}, geometry=geoms, crs=crs).to_file(path)
    return path


def test_bad_vectors_are_refused(synth_n0208, tmp_path):
    inside = shapely.box(601000, 5696000, 603000, 5698000)
    cases = [
        (_vectors(tmp_path, "nocrs.shp", [1], [inside], None), "no coordinate reference system"),
        (_vectors(tmp_path, "far.gpkg", [1], [shapely.box(0, 0, 1000, 1000)], "EPSG:32633"),
         "no feature overlaps the scene"),
        (_vectors(tmp_path, "codes.gpkg", [1, 112], [inside, inside], "EPSG:32633"),
         "unknown class values 112"),
    ]
    out = tmp_path / "out"
    for path, words in cases:
        r = _run("prepare", synth_n0208.safe_path, "--labels", path, "-o", out)
        _assert_refused(r, out, path.name, words)


def test_existing_output_needs_overwrite(synth_n0208, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = _run("prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path, "-o", out)
    assert r.exit_code == 1 and "--overwrite" in r.output and len(r.output.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    m = _prepare(synth_n0208, out, "--overwrite")
    assert not (out / "keep.txt").exists() and m["tiles"] == len(list((out / "images").iterdir()))


def test_usage_errors_exit_2(synth_n0208, tmp_path):
    for bad in (["--split", "0.8,0.2"], ["--mask", "clouds"], ["--resampling", "lanczos"],
                ["--min-labelled", "2"]):
        r = _run("prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path,
                 "-o", tmp_path / "o", *bad)
        assert r.exit_code == 2, (bad, r.output)
    assert not (tmp_path / "o").exists()
