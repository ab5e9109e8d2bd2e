"""The synthetic L2A product: what GDAL reads, DNs per baseline, vectors, truth, CLI."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli import cli
from s2pipe.synth.grid import mgrs_tile
from s2pipe.synth.landscape import band_reflectance, make_landscape
from s2pipe.synth.product import synth_product
from s2pipe.synth.safe import band_files, block_mean, dn_from_reflectance


def _jp2(result, band: str, res: int) -> Path:
    (path,) = result.safe_path.glob(f"GRANULE/*/IMG_DATA/R{res}m/*_{band}_{res}m.jp2")
    return path


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _mtd(result) -> ET.Element:
    return ET.parse(result.safe_path / "MTD_MSIL2A.xml").getroot()


# ------------------------------------------------------------------ layout and metadata
def test_product_and_file_names_follow_the_real_pattern(synth_n0208, synth_n0509):
    assert synth_n0208.safe_path.name == "S2B_MSIL2A_20180607T095029_N0208_R079_T33UYS_20180607T130225.SAFE"
    assert re.fullmatch(r"S2B_MSIL2A_20180607T095029_N0509_R079_T33UYS_\d{8}T\d{6}\.SAFE",
                        synth_n0509.safe_path.name)
    (granule,) = (synth_n0208.safe_path / "GRANULE").iterdir()
    assert re.fullmatch(r"L2A_T33UYS_A\d{6}_\d{8}T\d{6}", granule.name)
    assert (granule / "MTD_TL.xml").is_file() and (synth_n0208.safe_path / "manifest.safe").is_file()
    for res in (10, 20, 60):
        names = sorted(p.name for p in (granule / "IMG_DATA" / f"R{res}m").iterdir())
        assert all(re.fullmatch(rf"T33UYS_20180607T095029_[A-Z0-9]{{3}}_{res}m\.jp2", n) for n in names)
        assert sorted(n.split("_")[2] for n in names) == sorted(band_files("02.08")[res])
    r20 = {p.name.split("_")[2] for p in _jp2(synth_n0509, "B02", 20).parent.iterdir()}
    assert "B01" in r20 and "B01" not in band_files("02.08")[20]
    assert "B08" not in r20 and "B09" not in r20


def test_image_file_list_is_exactly_the_band_files(synth_n0208, synth_n0509):
    for result in (synth_n0208, synth_n0509):
        listed = {e.text for e in _mtd(result).iter("IMAGE_FILE")}
        on_disk = {p.relative_to(result.safe_path).with_suffix("").as_posix()
                   for p in result.safe_path.glob("GRANULE/*/IMG_DATA/R*m/*.jp2")}
        assert listed == on_disk and len(listed) == result.band_files


def test_product_metadata_values(synth_n0208, synth_n0509):
    old, new = _mtd(synth_n0208), _mtd(synth_n0509)
    assert old.tag == "{https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd}Level-2A_User_Product"
    assert old.findtext(".//PRODUCT_TYPE") == "S2MSI2A" and old.findtext(".//PROCESSING_BASELINE") == "02.08"
    assert new.findtext(".//PROCESSING_BASELINE") == "05.09"
    for root in (old, new):
        assert root.findtext(".//BOA_QUANTIFICATION_VALUE") == "10000"
        special = {e.findtext("SPECIAL_VALUE_TEXT"): e.findtext("SPECIAL_VALUE_INDEX")
                   for e in root.iter("Special_Values")}
        assert special == {"NODATA": "0", "SATURATED": "65535"}
    assert not list(old.iter("BOA_ADD_OFFSET"))
    offsets = {e.get("band_id"): e.text for e in new.iter("BOA_ADD_OFFSET")}
    assert offsets == {str(i): "-1000" for i in range(13)}


def test_tile_metadata_geocoding(synth_n0208):
    (tl,) = synth_n0208.safe_path.glob("GRANULE/*/MTD_TL.xml")
    root = ET.parse(tl).getroot()
    assert root.findtext(".//HORIZONTAL_CS_CODE") == "EPSG:32633"
    sizes = {e.get("resolution"): (e.findtext("NROWS"), e.findtext("NCOLS")) for e in root.iter("Size")}
    assert sizes == {"10": ("512", "512"), "20": ("256", "256"), "60": ("86", "86")}
    assert synth_n0208.origin == (699960.0, 5700000.0)  # T33UYS's upper-left corner: the name fits
    for geo in root.iter("Geoposition"):
        r = geo.get("resolution")
        assert (geo.findtext("ULX"), geo.findtext("ULY"), geo.findtext("XDIM"), geo.findtext("YDIM")) == \
            ("699960", "5700000", r, f"-{r}")


def test_manifest_lists_every_file_with_its_md5(synth_n0208):
    safe = synth_n0208.safe_path
    text = (safe / "manifest.safe").read_text()
    entries = dict(re.findall(r'href="\./([^"]+)"/>\s*<checksum checksumName="MD5">([0-9a-f]{32})<', text))
    files = {p.relative_to(safe).as_posix() for p in safe.rglob("*") if p.is_file()} - {"manifest.safe"}
    assert set(entries) == files
    some = "MTD_MSIL2A.xml"
    assert entries[some] == hashlib.md5((safe / some).read_bytes()).hexdigest()


def test_band_files_are_lossless_georeferenced_jp2(synth_n0208):
    for band, res, count, dtype in (("B02", 10, 1, "uint16"), ("B05", 20, 1, "uint16"),
                                    ("B09", 60, 1, "uint16"), ("SCL", 20, 1, "uint8"),
                                    ("TCI", 10, 3, "uint8"), ("AOT", 60, 1, "uint16")):
        with rasterio.open(_jp2(synth_n0208, band, res)) as ds:
            assert ds.driver == "JP2OpenJPEG" and ds.count == count and ds.dtypes[0] == dtype
            assert ds.crs.to_epsg() == 32633
            assert ds.transform.a == res and ds.transform.e == -res
            assert (ds.transform.c, ds.transform.f) == synth_n0208.origin
            assert ds.width == -(-512 * 10 // res)
    assert not list(synth_n0208.safe_path.rglob("*.aux.xml"))


# ------------------------------------------------------------------ what GDAL reads
def test_gdal_sentinel2_driver_lists_10_20_60m(synth_n0208):
    with rasterio.open(synth_n0208.safe_path / "MTD_MSIL2A.xml") as ds:
        assert ds.driver == "SENTINEL2"
        subs = ds.subdatasets
    for res in ("10m", "20m", "60m"):
        (sub,) = [s for s in subs if s.startswith("SENTINEL2_L2A:") and s.endswith(f":{res}:EPSG_32633")]
        with rasterio.open(sub) as ds:  # every file GDAL wants exists, QI cloud masks included
            assert ds.files and all(Path(f).is_file() for f in ds.files)
            if res != "10m":
                assert any(Path(f).name == f"MSK_CLDPRB_{res}.jp2" for f in ds.files)


def test_gdal_reads_back_the_dns_synth_wrote(synth_n0208):
    land = make_landscape(512, 0)
    expected = {}
    for band, res, f in (("B08", 10, 1), ("B11", 20, 2), ("B09", 60, 6)):
        plane, ok = block_mean(band_reflectance(land, band), land.valid, f)
        expected[band] = dn_from_reflectance(plane, ok, "02.08")
        assert np.array_equal(_read(_jp2(synth_n0208, band, res))[0], expected[band])
    with rasterio.open(synth_n0208.safe_path / "MTD_MSIL2A.xml") as ds:
        subs = {s.split(":")[-2]: s for s in ds.subdatasets}
    for res, band in (("10m", "B8"), ("20m", "B11"), ("60m", "B9")):
        with rasterio.open(subs[res]) as sub:
            names = [sub.tags(i).get("BANDNAME") for i in sub.indexes]
            got = sub.read(names.index(band) + 1)
        assert np.array_equal(got, expected[{"B8": "B08", "B9": "B09"}.get(band, band)])


def test_n0509_holds_the_same_ground_plus_1000(synth_n0208, synth_n0509):
    for band, res in (("B02", 10), ("B08", 10), ("B11", 20), ("B01", 60), ("B09", 60)):
        old, new = _read(_jp2(synth_n0208, band, res)), _read(_jp2(synth_n0509, band, res))
        valid = old > 0
        assert valid.mean() > 0.85 and (~valid).any()
        assert np.array_equal(new[valid].astype(np.int32), old[valid].astype(np.int32) + 1000)
        assert not new[~valid].any()
    assert np.array_equal(_read(_jp2(synth_n0208, "SCL", 20)), _read(_jp2(synth_n0509, "SCL", 20)))


def test_nodata_strip_clouds_and_scl(synth_n0208):
    b02 = _read(_jp2(synth_n0208, "B02", 10))[0]
    b8 = _read(_jp2(synth_n0208, "B08", 10))[0]
    assert not b02[:, -1].any() and b02[:, 0].all()  # a strip along the east edge
    assert np.array_equal(b02 == 0, b8 == 0)
    scl = _read(_jp2(synth_n0208, "SCL", 20))[0]
    assert not scl[:, -1].any()
    counts = np.bincount(scl.ravel(), minlength=12)
    assert counts[8] + counts[9] > 0 and counts[3] > 0 and counts[4] > counts[5] > counts[6] > 0
    b02_20 = _read(_jp2(synth_n0208, "B02", 20))[0].astype(float)
    assert b02_20[scl == 9].mean() > 2 * b02_20[np.isin(scl, (4, 5))].mean()
    tci = _read(_jp2(synth_n0208, "TCI", 10))
    assert tci.shape == (3, 512, 512) and not tci[:, :, -1].any() and tci[:, :, 0].all()


# ------------------------------------------------------------------ truth and vectors
def test_truth_raster(synth_n0208):
    with rasterio.open(synth_n0208.truth_path) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0 and ds.crs.to_epsg() == 32633
        assert ds.colormap(1)[5][:3] == (0xE6, 0x00, 0x4D)
        truth = ds.read(1)
    assert set(np.unique(truth)) == set(range(9))
    assert synth_n0208.class_pixels == {c: int((truth == c).sum()) for c in range(1, 9)}


def test_labels_overlap_the_scene_and_rasterise_back_onto_the_truth(synth_n0208):
    import geopandas as gpd
    from rasterio.features import rasterize

    gdf = gpd.read_file(synth_n0208.labels_path)
    assert gdf.crs.to_epsg() == 2180 and len(gdf) == synth_n0208.polygons
    assert gdf["class"].dtype.kind == "i" and set(gdf["class"]) <= set(range(1, 9))
    assert gdf["name"].iloc[0] and gdf.is_valid.all()
    with rasterio.open(synth_n0208.truth_path) as ds:
        truth, transform, bounds = ds.read(1), ds.transform, ds.bounds
    utm = gdf.to_crs(32633)
    x0, y0, x1, y1 = utm.total_bounds
    assert bounds.left < x0 < x1 < bounds.right and bounds.bottom < y0 < y1 < bounds.top
    raster = rasterize(zip(utm.geometry, utm["class"]), out_shape=truth.shape, transform=transform, dtype="uint8")
    labelled = raster > 0
    assert 0.5 < labelled.mean() < 0.8  # only the central part is labelled
    assert (raster[labelled] == truth[labelled]).mean() > 0.97


def test_pixels_alone_do_not_solve_it(synth_n0208):
    """A per-pixel nearest-class-mean classifier stays far below what context allows."""
    truth = _read(synth_n0208.truth_path)[0]
    x = np.stack([_read(_jp2(synth_n0208, b, 10))[0] for b in ("B02", "B03", "B04", "B08")]
                 + [np.repeat(np.repeat(_read(_jp2(synth_n0208, b, 20))[0], 2, 0), 2, 1)
                    for b in ("B05", "B06", "B07", "B8A", "B11", "B12")]).reshape(10, -1).T.astype(np.float32)
    y = truth.ravel()
    x, y = x[y > 0], y[y > 0]
    means = np.stack([x[y == c].mean(0) for c in range(1, 9)])
    pred = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), 1) + 1
    assert (pred == y).mean() < 0.7


def test_same_seed_same_product_other_seed_other_ground(tmp_path):
    ticks: list[int] = []
    a = synth_product(tmp_path / "a", size=256, seed=3, progress=ticks.append)
    assert a.world == (699960.0, 5700000.0 - 2560, 699960.0 + 2560, 5700000.0) and a.world_epsg == 32633
    b = synth_product(tmp_path / "b", size=256, seed=3, world=a.world)  # the default world, given
    assert sum(ticks) == a.band_files + 4  # one tick per file written (+ 4 QI cloud/snow masks)
    c = make_landscape(256, 4)
    assert np.array_equal(_read(_jp2(a, "B04", 10)), _read(_jp2(b, "B04", 10)))
    assert np.array_equal(_read(_jp2(a, "B12", 20)), _read(_jp2(b, "B12", 20)))
    assert np.array_equal(_read(a.truth_path), _read(b.truth_path))
    assert not np.array_equal(_read(a.truth_path)[0], c.classes)


def test_stripe_by_stripe_writing_matches_whole_planes(tmp_path, monkeypatch):
    import s2pipe.synth.safe as synth_safe

    whole = synth_product(tmp_path / "whole", size=256, seed=5)
    monkeypatch.setattr(synth_safe, "STRIPE", 66)  # 4 stripes, the last one partial
    striped = synth_product(tmp_path / "striped", size=256, seed=5)
    for band, res in (("B03", 10), ("B11", 20), ("B09", 60), ("AOT", 20), ("TCI", 60), ("SCL", 60)):
        assert np.array_equal(_read(_jp2(whole, band, res)), _read(_jp2(striped, band, res))), band
    (mask,) = striped.safe_path.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2")
    assert _read(mask).max() > 50


# ------------------------------------------------------------------ tile ids, regions, dates
@pytest.mark.parametrize("epsg,ulx,uly,tile", [
    (32722, 199980, 5900020, "22HBD"),  # real products in shared/s2-reference
    (32633, 499980, 8900040, "33XWJ"),
    (32633, 699960, 5700000, "33UYS"),  # the study's tile
    (32631, 600000, 5900040, "31UFU"),
    (32633, 599980, 5700000, "33UXS"),  # the origin of synth products before tile ids followed it
    (3035, 4500000, 3200000, None),  # not a UTM zone
])
def test_tile_id_is_the_mgrs_square_of_the_tile(epsg, ulx, uly, tile):
    assert mgrs_tile(epsg, ulx, uly) == tile


def test_small_scene_is_named_by_the_square_of_its_centre():
    assert mgrs_tile(32633, 699960, 5700000, extent=3840) == "33UYS"
    assert mgrs_tile(32633, 695000, 5700000, extent=3840) == "33UXS"  # centre west of 700000 E


SIZE, OVERLAP = 384, 128
D1, D2 = "2018-06-07", "2018-06-17"
WORLD = (699460.0, 5694660.0, 708520.0, 5701500.0)  # EPSG:32633, holds the three scenes below
REGION = {"a": ((699960.0, 5700000.0), 32633),  # T33UYS
          "b": ((699960.0 + (SIZE - OVERLAP) * 10, 5700000.0), 32633),  # east of a, overlapping it
          "c": ((285320.0, 5700000.0), 32634)}  # UTM zone 34, over a and b


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """Three 384 px scenes of one 906 x 684 px world on 2018-06-07, and scene a on 2018-06-17."""
    base = tmp_path_factory.mktemp("region")
    out = {}
    for key, day in (("a", D1), ("b", D1), ("c", D1), ("a", D2)):
        origin, epsg = REGION[key]
        out[key, day] = synth_product(base / f"{key}-{day}", size=SIZE, seed=1, date=day, origin=origin,
                                      epsg=epsg, world=WORLD, world_epsg=32633)
    return out


def test_tiles_of_one_zone_and_date_are_equal_where_they_overlap(region):
    a, b = region["a", D1], region["b", D1]
    assert a.tile == b.tile == "33UYS" and a.world == b.world == WORLD
    ta, tb = _read(a.truth_path)[0], _read(b.truth_path)[0]
    assert np.array_equal(ta[:, -OVERLAP:], tb[:, :OVERLAP]) and len(np.unique(ta[:, -OVERLAP:])) >= 4
    assert not np.array_equal(ta[:, :OVERLAP], tb[:, :OVERLAP])
    assert np.array_equal(_read(_jp2(a, "B08", 10))[0][:, -OVERLAP:], _read(_jp2(b, "B08", 10))[0][:, :OVERLAP])
    scl_a, scl_b = _read(_jp2(a, "SCL", 20))[0][:, -OVERLAP // 2:], _read(_jp2(b, "SCL", 20))[0][:, :OVERLAP // 2]
    assert np.array_equal(scl_a, scl_b) and np.isin(scl_a, (8, 9)).any()  # the date's clouds, in both


def test_tiles_of_two_utm_zones_show_the_same_ground(region):
    from rasterio.warp import Resampling, reproject

    a, c = region["a", D1], region["c", D1]
    assert c.tile.startswith("34U") and c.tile != a.tile and f"_T{c.tile}_" in c.product_name
    with rasterio.open(a.truth_path) as dst, rasterio.open(c.truth_path) as src:
        assert src.crs.to_epsg() == 32634
        ta, tc = dst.read(1), np.full((SIZE, SIZE), 255, np.uint8)
        reproject(src.read(1), tc, src_transform=src.transform, src_crs=src.crs, dst_transform=dst.transform,
                  dst_crs=dst.crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=255)
    both = tc != 255
    assert both.sum() > 20000
    assert (tc[both] == ta[both]).mean() >= 0.99


def test_other_date_same_ground_other_clouds(region):
    first, second = region["a", D1], region["a", D2]
    assert second.safe_path.name.startswith("S2B_MSIL2A_20180617T095029_N0208_R079_T33UYS_20180617")
    (granule,) = (second.safe_path / "GRANULE").iterdir()
    assert granule.name.startswith("L2A_T33UYS_A006760_")  # 143 orbits per 10-day cycle
    assert _mtd(second).findtext(".//PRODUCT_START_TIME") == "2018-06-17T09:50:29.024Z"
    assert np.array_equal(_read(first.truth_path), _read(second.truth_path))
    s1, s2 = _read(_jp2(first, "SCL", 20))[0], _read(_jp2(second, "SCL", 20))[0]
    c1, c2 = np.isin(s1, (8, 9)), np.isin(s2, (8, 9))
    assert c1.any() and c2.any() and (c1 != c2).mean() > 0.01
    b1, b2 = (_read(_jp2(r, "B8A", 20))[0].astype(float) for r in (first, second))
    clear = ~np.isin(s1, (3, 8, 9)) & ~np.isin(s2, (3, 8, 9)) & (b1 > 0)
    assert np.median(np.abs(b1 - b2)[clear] / b1[clear]) < 0.02  # the same ground, other sensor noise


def test_scene_outside_a_utm_zone_keeps_the_study_tile_id(tmp_path):
    r = synth_product(tmp_path / "laea", size=256, epsg=3035, origin=(4500000.0, 3200000.0))
    assert r.tile == "33UYS" and "_T33UYS_" in r.safe_path.name and r.epsg == 3035


# ------------------------------------------------------------------ command line
def test_cli_json_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["synth", str(out), "--size", "256", "--baseline", "05.09", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert Path(info["safe_path"]).name.split("_")[3] == "N0509" and info["band_files"] == 36
    assert info["tile"] == "33UYS" and info["date"] == "2018-06-07" and info["origin"] == [699960.0, 5700000.0]
    assert Path(info["labels_path"]).is_file() and Path(info["truth_path"]).is_file()
    before = sorted(p.name for p in out.iterdir())
    res = CliRunner().invoke(cli, ["synth", str(out), "--size", "256", "--baseline", "05.09"])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "--overwrite" in res.output
    assert sorted(p.name for p in out.iterdir()) == before
    res = CliRunner().invoke(cli, ["synth", str(out), "--size", "256", "--baseline", "05.09", "--overwrite"])
    assert res.exit_code == 0 and sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("args", [["--size", "100"], ["--size", "20000"], ["--baseline", "5.9"],
                                  ["--baseline", "latest"], ["--origin", "1"], ["--date", "2018-13-01"],
                                  ["--date", "7 June 2018"], ["--world", "1", "2", "3"]])
def test_cli_usage_errors(tmp_path, args):
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "x"), *args])
    assert res.exit_code == 2 and not (tmp_path / "x").exists()


@pytest.mark.parametrize("args,message", [
    (["--epsg", "4326"], "projected in metres"),
    (["--epsg", "99999"], "not a known CRS"),
    (["--label-epsg", "99999"], "not a known CRS"),
    (["--world-epsg", "4326", "--world", "0", "0", "1", "1"], "projected in metres"),
    (["--date", "2015-06-23"], "out of range"),
    (["--world", "699960", "5690000", "702000", "5700000"], "is not inside the world"),
    (["--world", "702000", "5690000", "699960", "5700000"], "west < east"),
    (["--world-epsg", "32634"], "needs a --world box"),
    (["--epsg", "32634", "--world-epsg", "32633", "--world", "699960", "5690000", "703000", "5700000"],
     "is not inside the world"),
])
def test_cli_bad_crs_fails_cleanly(tmp_path, args, message):
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "x"), "--size", "256", *args])
    assert res.exit_code == 1 and message in res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("Error: ")] and not (tmp_path / "x").exists()


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    import s2pipe.synth.product as synth

    def boom(*args, **kwargs):
        raise synth.OptionError("labels could not be written")

    monkeypatch.setattr(synth, "write_labels", boom)
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "x"), "--size", "256"])
    assert res.exit_code == 1 and res.output.strip() == "Error: labels could not be written"
    assert not (tmp_path / "x").exists()
