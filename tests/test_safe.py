"""Reading products: metadata of real ESA files, harmonised 10 m reads of synthetic ones."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.windows import Window

from cli import cli
from s2pipe.errors import InputNotFoundError, MissingBandError, SafeFormatError
from s2pipe.sentinel2 import (
    BANDS,
    DEFAULT_SCL_MASK,
    RADIOMETRY_CONVENTION,
    open_scene,
    product_info,
    read_product_metadata,
    write_stack,
)
from s2pipe.sentinel2.blockrows import BlockRowReader
from s2pipe.sentinel2.reader import ReadOptions

from conftest import S2_REFERENCE, needs_s2_reference

N0214 = S2_REFERENCE / "S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"
N0400 = S2_REFERENCE / "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"


def _jp2(scene, band):
    with rasterio.open(scene.info.band_files[band]) as src:
        return src.read(1).astype(np.int64)


@needs_s2_reference
def test_real_metadata_of_both_baselines():
    old, new = read_product_metadata(N0214), read_product_metadata(N0400)
    assert (old.baseline, old.tile, old.epsg, old.level) == ("02.14", "22HBD", 32722, "Level-2A")
    assert (new.baseline, new.tile, new.epsg) == ("04.00", "33XWJ", 32633)
    assert old.transform == [10.0, 0.0, 199980.0, 0.0, -10.0, 5900020.0]
    assert (new.width, new.height, new.quantification) == (10980, 10980, 10000.0)
    assert set(old.offsets.values()) == {0} and set(new.offsets.values()) == {-1000}
    assert list(new.offsets) == list(BANDS)
    assert new.special_values == {"NODATA": 0, "SATURATED": 65535}
    assert new.sensing_time.startswith("2022-04-13T15:08")
    # the reference products hold metadata only: every band file is reported missing
    assert old.missing_bands == list(BANDS)
    assert old.band_files["B8A"].endswith("R20m/T22HBD_20210122T133229_B8A_20m.jp2")
    assert new.band_files["B09"].endswith("R60m/T33XWJ_20220413T150759_B09_60m.tif")  # GeoTIFF product


@needs_s2_reference
def test_mtd_path_is_accepted():
    assert read_product_metadata(N0400 / "MTD_MSIL2A.xml").name == read_product_metadata(N0400).name


@needs_s2_reference
def test_missing_band_files_make_open_fail():
    with pytest.raises(MissingBandError, match="B01"):
        open_scene(N0214)


def test_l1c_and_foreign_inputs_are_refused(synth_n0208, tmp_path):
    l1c = tmp_path / "S2A_MSIL1C_X.SAFE"
    l1c.mkdir()
    text = (synth_n0208.safe_path / "MTD_MSIL2A.xml").read_text()
    (l1c / "MTD_MSIL1C.xml").write_text(text.replace("Level-2A", "Level-1C").replace("S2MSI2A", "S2MSI1C"))
    with pytest.raises(SafeFormatError, match="Level-1C"):
        read_product_metadata(l1c)
    with pytest.raises(SafeFormatError, match="Level-1C"):
        read_product_metadata(l1c / "MTD_MSIL1C.xml")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SafeFormatError, match="supported"):
        read_product_metadata(tmp_path / "notes.txt")
    with pytest.raises(SafeFormatError, match="MTD_MSIL2A.xml not found"):
        read_product_metadata(tmp_path)
    with pytest.raises(InputNotFoundError):
        read_product_metadata(tmp_path / "nothing.SAFE")


def test_10m_band_equals_the_jp2_and_baselines_agree(synth_n0208, synth_n0509):
    raw = ReadOptions(mask_scl=())
    with open_scene(synth_n0208.safe_path, raw) as a, open_scene(synth_n0509.safe_path, raw) as b:
        assert a.grid == b.grid and (a.grid.width, a.grid.height) == (512, 512)
        assert a.radiometry.convention == RADIOMETRY_CONVENTION
        assert b.radiometry.offset_applied["B04"] == -1000 and b.radiometry.baseline == "05.09"
        img_a, img_b = a.read(), b.read()
        assert img_a.dtype == np.uint16 and img_a.shape == (12, 512, 512)
        np.testing.assert_array_equal(img_a, img_b)
        valid = (img_b != 0).all(axis=0)
        assert 0.8 < valid.mean() < 1.0  # the product has no-data corners
        jp2 = _jp2(b, "B04")
        np.testing.assert_array_equal(img_b[3][valid], np.clip(jp2 - 1000, 1, None)[valid])
        assert (img_b[:, ~valid] == 0).all()


def test_nearest_is_exact_replication(synth_n0509):
    with open_scene(synth_n0509.safe_path, ReadOptions(resampling="nearest", mask_scl=())) as s:
        img = s.read()
        valid = (img != 0).all(axis=0)
        for band, k in (("B05", 2), ("B12", 2), ("B09", 6)):
            rep = np.repeat(np.repeat(_jp2(s, band), k, 0), k, 1)[:512, :512]
            np.testing.assert_array_equal(img[BANDS.index(band)][valid],
                                          np.clip(rep - 1000, 1, None)[valid])


@pytest.mark.parametrize("method", ["bilinear", "cubic", "nearest"])
def test_any_window_equals_the_full_read(synth_n0208, method):
    with open_scene(synth_n0208.safe_path, ReadOptions(resampling=method)) as s:
        full = s.read()
        for w in (Window(0, 0, 512, 256), Window(13, 251, 97, 61), Window(511, 500, 1, 12)):
            np.testing.assert_array_equal(s.read(w), full[:, w.row_off:w.row_off + w.height,
                                                          w.col_off:w.col_off + w.width])
        with pytest.raises(ValueError):
            s.read(Window(500, 0, 20, 10))


def test_scl_masked_pixels_are_no_data(synth_n0208):
    with open_scene(synth_n0208.safe_path) as s, open_scene(synth_n0208.safe_path, ReadOptions(mask_scl=())) as u:
        scl = s.read_scl()
        assert scl.dtype == np.uint8 and scl.shape == (512, 512)
        masked = np.isin(scl, DEFAULT_SCL_MASK)
        assert masked.any() and (scl == 4).any()
        img, raw = s.read(), u.read()
        assert (img[:, masked] == 0).all()
        keep = ~masked & (raw != 0).all(axis=0)
        np.testing.assert_array_equal(img[:, keep], raw[:, keep])


def test_zip_reads_like_the_folder(synth_n0509, tmp_path):
    safe = synth_n0509.safe_path
    z = tmp_path / f"{safe.stem}.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for p in safe.rglob("*"):
            zf.write(p, p.relative_to(safe.parent))
    with open_scene(z) as a, open_scene(safe) as b:
        assert a.info.band_files["B02"].startswith("/vsizip/")
        np.testing.assert_array_equal(a.read(Window(0, 100, 512, 200)), b.read(Window(0, 100, 512, 200)))


def test_stack_round_trip(synth_n0509, tmp_path):
    with open_scene(synth_n0509.safe_path) as s:
        write_stack(s, tmp_path / "stack.tif", rows=200)
        with open_scene(tmp_path / "stack.tif") as st:
            assert st.grid == s.grid and st.bands == BANDS and st.info.baseline == "05.09"
            assert st.radiometry == s.radiometry and st.read_scl() is None
            np.testing.assert_array_equal(st.read(), s.read())
    info = product_info(tmp_path / "stack.tif")
    assert info.name == s.name and info.band_files["B02"].startswith(str(tmp_path / "stack.tif"))


def _broken_copy(src, tmp_path, band):
    """A copy of the product and the path of ``band``'s native-resolution file in it."""
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    res = {"B01": 60, "B09": 60, "B02": 10, "B03": 10, "B04": 10, "B08": 10}.get(band, 20)
    return dst, next(dst.rglob(f"*_{band}_{res}m.jp2"))


def test_missing_or_truncated_band_names_the_file(synth_n0208, tmp_path):
    safe, b05 = _broken_copy(synth_n0208.safe_path, tmp_path, "B05")
    b05.write_bytes(b05.read_bytes()[: b05.stat().st_size // 3])
    with open_scene(safe) as s, pytest.raises(MissingBandError, match=b05.name):
        s.read()
    b05.unlink()
    assert read_product_metadata(safe).missing_bands == ["B05"]
    with pytest.raises(MissingBandError, match=b05.name):
        open_scene(safe)


def test_info_cli(synth_n0509, synth_n0208, tmp_path):
    r = CliRunner().invoke(cli, ["info", str(synth_n0509.safe_path), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["baseline"] == "05.09" and info["epsg"] == 32633 and info["width"] == 512
    assert info["offsets"]["B8A"] == -1000 and info["missing_bands"] == [] and info["scl_file"]
    safe, b11 = _broken_copy(synth_n0208.safe_path, tmp_path, "B11")
    b11.unlink()
    r = CliRunner().invoke(cli, ["info", str(safe)])
    assert r.exit_code == 0 and "B11  MISSING" in r.output and "will refuse" in r.output
    (safe / "MTD_MSIL2A.xml").write_text("<broken")
    r = CliRunner().invoke(cli, ["info", str(safe)])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "MTD_MSIL2A.xml" in r.output
    assert len(r.output.strip().splitlines()) == 1


class _Counting:
    """A rasterio dataset that counts its reads."""

    def __init__(self, src):
        self.src, self.reads = src, 0

    def __getattr__(self, name):
        return getattr(self.src, name)

    def read(self, *args, **kwargs):
        self.reads += 1
        return self.src.read(*args, **kwargs)


def test_block_rows_are_decoded_once_while_strips_move_down(tmp_path):
    data = np.random.default_rng(0).integers(0, 60000, (300, 200), dtype=np.uint16)
    path = tmp_path / "band.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=300, count=1,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(0, 3000, 10, 10),
                       tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data, 1)
    with rasterio.open(path) as src:
        reader = BlockRowReader(_Counting(src))
        for c0, w in ((0, 200), (70, 90)):  # the whole width, then a panel of it
            before = reader.src.reads
            for r0 in range(0, 300, 48):  # 64-row strips every 48 rows
                h = min(64, 300 - r0)
                np.testing.assert_array_equal(reader.read(Window(c0, r0, w, h)),
                                              data[r0:r0 + h, c0:c0 + w])
            assert reader.src.reads - before == 5  # one per block row (300 rows / 64)
        np.testing.assert_array_equal(reader.read(Window(5, 10, 7, 290)), data[10:, 5:12])
