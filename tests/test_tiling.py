"""Tile windows, the spatial split and tile files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from s2pipe.errors import OptionError
from s2pipe.tiles.split import assign_splits
from s2pipe.tiles.tiling import (
    default_block_size,
    tile_id,
    tile_windows,
    write_image_tile,
    write_label_tile,
)


def _overlap(a, b):
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def test_windows_cover_grid_and_align_last_to_edge():
    wins = tile_windows(300, 200, 128)
    cols = sorted({w.col_off for w in wins})
    rows = sorted({w.row_off for w in wins})
    assert cols == [0, 128, 172] and rows == [0, 72]
    covered = np.zeros((200, 300), bool)
    for w in wins:
        assert w.width == w.height == 128
        covered[w.row_off:w.row_off + 128, w.col_off:w.col_off + 128] = True
    assert covered.all()


def test_windows_with_stride_and_exact_fit():
    assert [w.col_off for w in tile_windows(256, 128, 128, 64)] == [0, 64, 128]
    assert len(tile_windows(256, 256, 128)) == 4


def test_scene_smaller_than_tile_is_an_option_error():
    with pytest.raises(OptionError, match="smaller than one tile"):
        tile_windows(100, 300, 128)


def test_tile_id_names_the_top_left_pixel():
    assert tile_id(tile_windows(1024, 1024, 512)[-1]) == "r000512_c000512"


@pytest.mark.parametrize("stride", [256, 128, 96])
def test_no_overlapping_tiles_in_different_splits(stride):
    wins = tile_windows(2048, 2048, 256, stride)
    splits = assign_splits(wins, fractions=(0.6, 0.2, 0.2), block_size=512, seed=1)
    assert set(s for s in splits if s) == {"train", "val", "test"}
    kept = [(w, s) for w, s in zip(wins, splits) if s is not None]
    for i, (a, sa) in enumerate(kept):
        for b, sb in kept[i + 1:]:
            if _overlap(a, b):
                assert sa == sb, (a, b)
    if stride == 256:
        assert None not in splits  # tiles never cross block edges: nothing dropped


def test_block_tiles_share_a_split_and_seed_is_reproducible():
    wins = tile_windows(2048, 2048, 256)
    a = assign_splits(wins, block_size=1024, seed=3)
    assert a == assign_splits(wins, block_size=1024, seed=3)
    by_block = {}
    for w, s in zip(wins, a):
        by_block.setdefault((w.row_off // 1024, w.col_off // 1024), set()).add(s)
    assert all(len(v) == 1 for v in by_block.values())


def test_small_scene_still_gets_val_and_test():
    wins = tile_windows(512, 512, 128)
    block = default_block_size(512, 512, 128)
    assert block == 128
    splits = assign_splits(wins, block_size=block, seed=0)
    assert splits.count("val") >= 1 and splits.count("test") >= 1
    assert splits.count("train") > splits.count("val")


def test_bad_fractions_are_refused():
    with pytest.raises(OptionError):
        assign_splits(tile_windows(256, 256, 128), fractions=(1, -1, 0), block_size=128)


def test_tile_files_read_like_the_seed_sample(tmp_path):
    t = Affine(10, 0, 600000, 0, -10, 5700000)
    img = np.arange(12 * 64 * 64, dtype=np.uint16).reshape(12, 64, 64)
    lab = (np.arange(64 * 64) % 9).astype(np.uint8).reshape(64, 64)
    bands = tuple(f"B{i:02d}" for i in range(1, 13))
    write_image_tile(tmp_path / "i.tif", img, crs=CRS.from_epsg(32633), transform=t, bands=bands)
    write_label_tile(tmp_path / "l.tif", lab, crs=CRS.from_epsg(32633), transform=t)
    with rasterio.open(tmp_path / "i.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata, src.descriptions) == (12, "uint16", 0, bands)
        assert src.transform == t and src.crs.to_epsg() == 32633
        assert src.block_shapes[0] == (64, 64) and src.compression is not None
        np.testing.assert_array_equal(src.read(), img)
    with rasterio.open(tmp_path / "l.tif") as src:
        assert (src.dtypes[0], src.nodata) == ("uint8", 0)
        np.testing.assert_array_equal(src.read(1), lab)
        assert src.colormap(1)[4][:3] == (0, 112, 255)
