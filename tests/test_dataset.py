"""Finding, checking and loading tiles; the reproducible sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from s2pipe.errors import TileError
from s2pipe.training.dataset import EpochSampler, TileDataset, band_statistics, class_counts, find_tiles, load_tiles

from tiles_helpers import STUDY_BREAKAGES, break_study_dirs, make_prepare_dir, make_study_dirs


def test_prepare_layout(tmp_path):
    root = make_prepare_dir(tmp_path / "tiles", n=6, splits=(4, 1, 1))
    ts = find_tiles(root)
    assert ts.source == "prepare" and len(ts.pairs) == 6
    assert [len(ts.split(s)) for s in ("train", "val", "test")] == [4, 1, 1]
    assert ts.bands[3] == "B04" and ts.legend[0].value == 1
    images, labels = load_tiles(ts.split("train"))
    assert images.shape == (4, 12, 32, 32) and images.dtype == np.uint16
    assert labels.shape == (4, 32, 32) and labels.dtype == np.uint8
    with rasterio.open(ts.split("train")[1].label) as src:
        np.testing.assert_array_equal(labels[1], src.read(1))


def test_study_layout_split_is_seeded(tmp_path):
    images, labels = make_study_dirs(tmp_path, n=10, label_dtype="uint16")
    a = find_tiles(images_dir=images, labels_dir=labels, train_size=0.6, seed=1)
    b = find_tiles(images_dir=images, labels_dir=labels, train_size=0.6, seed=1)
    c = find_tiles(images_dir=images, labels_dir=labels, train_size=0.6, seed=2)
    splits = lambda ts: [p.split for p in ts.pairs]  # noqa: E731
    assert splits(a) == splits(b) != splits(c)
    assert [len(a.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    assert a.source == "study" and a.radiometry.assumed and a.notes
    sub = find_tiles(images_dir=images, labels_dir=labels, num_samples=4, seed=0)
    assert len(sub.pairs) == 4
    _, lab = load_tiles(a.split("train"))  # uint16 labels read as uint8
    assert lab.dtype == np.uint8 and lab.max() <= 8


@pytest.mark.parametrize("breakage", sorted(STUDY_BREAKAGES))
def test_bad_tiles_name_the_file(tmp_path, breakage):
    images, labels = make_study_dirs(tmp_path, n=3)
    break_study_dirs(images, labels, breakage)
    culprit = STUDY_BREAKAGES[breakage]
    with pytest.raises(TileError, match=culprit):
        ts = find_tiles(images_dir=images, labels_dir=labels, train_size=1.0)
        load_tiles(ts.pairs)


def test_manifest_problems(tmp_path):
    with pytest.raises(TileError, match="prepare.json"):
        find_tiles(tmp_path)
    root = make_prepare_dir(tmp_path / "t", n=2, splits=(1, 1, 0))
    meta = json.loads((root / "prepare.json").read_text())
    meta["tiles"][0]["split"] = "holdout"
    (root / "prepare.json").write_text(json.dumps(meta))
    with pytest.raises(TileError, match="unknown splits"):
        find_tiles(root)


def test_tile_size_must_divide_by_16(tmp_path):
    images, labels = make_study_dirs(tmp_path, n=1, size=40)
    with pytest.raises(TileError, match="multiples of 16"):
        load_tiles(find_tiles(images_dir=images, labels_dir=labels).pairs)


def test_band_statistics_exclude_nodata():
    images = np.zeros((2, 12, 4, 4), np.uint16)
    images[0, :, :2] = 100
    images[1, :, :1] = 300  # rest of the pixels are no data (0 in every band)
    norm = band_statistics(images)
    mean, std = norm.mean, norm.std
    assert mean[0] == pytest.approx((8 * 100 + 4 * 300) / 12)
    assert std[5] == pytest.approx(np.std([100] * 8 + [300] * 4))
    assert class_counts(np.array([[0, 1, 1, 8]], np.uint8)).tolist() == [2, 0, 0, 0, 0, 0, 0, 1]


def test_augmentation_moves_image_and_label_alike():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 1000, (1, 12, 16, 16)).astype(np.uint16)
    labels = (images[:, 0] % 9).astype(np.uint8)
    ds = TileDataset(images, labels)
    seen = set()
    for k in range(8):
        img, lab = ds[(0, k)]
        np.testing.assert_array_equal((img[0].numpy() % 9).astype(np.uint8), lab.numpy())
        seen.add(img.numpy().tobytes())
    assert len(seen) == 8  # eight distinct dihedral transforms


def test_sampler_reproducible_and_sharded():
    s = EpochSampler(10, seed=3, shuffle=True, augment=True)
    s.set_epoch(1)
    first = list(s)
    s.set_epoch(2)
    second = list(s)
    s.set_epoch(1)
    assert list(s) == first != second
    assert sorted(i for i, _ in first) == list(range(10))
    shards = []
    for rank in range(3):
        r = EpochSampler(10, seed=3, shuffle=True, augment=True, rank=rank, world_size=3)
        r.set_epoch(1)
        shards.append(list(r))
    assert all(len(x) == 4 for x in shards)
    assert {i for x in shards for i, _ in x} == set(range(10))
    evals = [list(EpochSampler(5, seed=0, shuffle=False, augment=False, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(i for x in evals for i, _ in x) == list(range(5))
