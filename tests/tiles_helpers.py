"""Tiny tile folders for the training tests, in both layouts s2pipe reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from s2pipe.legend import legend_to_list
from s2pipe.sentinel2.facts import BANDS as STUDY_BANDS

# A distinct, learnable spectrum (DN) per class 1..8.
SPECTRA = np.array([[300 + 400 * ((c * 7 + b * 3) % 8) for b in range(12)] for c in range(1, 9)], np.float64)


def make_pair(seed: int, size: int, *, nodata_border: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 (12, size, size) image and its uint8 label: class rectangles plus noise."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    cells = 4
    step = size // cells
    for i in range(cells):
        for j in range(cells):
            label[i * step:(i + 1) * step, j * step:(j + 1) * step] = rng.integers(1, 9)
    label[rng.random((size, size)) < 0.05] = 0  # unlabelled pixels
    image = SPECTRA[np.maximum(label, 1) - 1].transpose(2, 0, 1) + rng.normal(0, 60, (12, size, size))
    image = np.clip(image, 1, 65535).astype(np.uint16)
    if nodata_border:
        image[:, :, :2] = 0
        label[:, :2] = 0
    return image, label


def write_tif(path: Path, array: np.ndarray, *, col: int = 0, row: int = 0) -> None:
    array = array if array.ndim == 3 else array[None]
    size = array.shape[-1]
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=array.dtype, crs="EPSG:32633",
                       transform=Affine(10, 0, 600000 + col * size * 10, 0, -10, 5600000 - row * size * 10)) as dst:
        dst.write(array)


def make_prepare_dir(root: Path, *, n: int = 12, size: int = 32, splits: tuple[int, int, int] = (8, 2, 2),
                     seed: int = 0) -> Path:
    """A folder shaped like a `prepare` output: images/, labels/, prepare.json."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = ["train"] * splits[0] + ["val"] * splits[1] + ["test"] * splits[2]
    tiles = []
    for k in range(n):
        image, label = make_pair(seed + k, size, nodata_border=(k == 0))
        tid = f"r{k // 4:03d}_c{k % 4:03d}"
        write_tif(root / "images" / f"{tid}.tif", image, col=k % 4, row=k // 4)
        write_tif(root / "labels" / f"{tid}.tif", label, col=k % 4, row=k // 4)
        counts = np.bincount(label.ravel(), minlength=9)
        tiles.append({"id": tid, "row": k // 4, "col": k % 4, "split": names[k % len(names)],
                      "labelled_fraction": float((label > 0).mean()),
                      "class_counts": {str(c): int(counts[c]) for c in range(1, 9)}})
    manifest = {"bands": list(STUDY_BANDS), "legend": legend_to_list(), "tile_size": size,
                "radiometry": {"convention": "DN = 10000 * reflectance (BOA_ADD_OFFSET applied)"},
                "tiles": tiles}
    (root / "prepare.json").write_text(json.dumps(manifest))
    return root


def write_study_tile(images: Path, labels: Path, name: str, image: np.ndarray, label: np.ndarray) -> None:
    """One image/label pair in the study's exact format (as shared/seed-sample holds it):
    12-band uint16 without band descriptions or nodata, LZW, 128 px blocks,
    pixel-interleaved, EPSG:32633; a uint16 label on the same grid, band-interleaved."""
    size = image.shape[-1]
    profile = dict(driver="GTiff", width=size, height=size, crs="EPSG:32633",
                   transform=Affine(10, 0, 647360, 0, -10, 5656480), tiled=True, blockxsize=128,
                   blockysize=128, compress="lzw")
    with rasterio.open(images / name, "w", count=image.shape[0], dtype="uint16", interleave="pixel",
                       **profile) as dst:
        dst.write(image)
    with rasterio.open(labels / name, "w", count=1, dtype="uint16", interleave="band", **profile) as dst:
        dst.write(label.astype(np.uint16), 1)


def make_study_format_dirs(root: Path, *, n: int = 1, size: int = 256) -> tuple[Path, Path]:
    """``n`` tiles of ``size`` px written as the study wrote its tiles (see write_study_tile)."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for k in range(n):
        image, label = make_pair(700 + k, size)
        write_study_tile(images, labels, f"{699 + k:012d}.tif", image, label)
    return images, labels


def make_study_dirs(root: Path, *, n: int = 6, size: int = 32, label_dtype: str = "uint16") -> tuple[Path, Path]:
    """The study's layout: images/ and labels/ paired by file name, no metadata."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for k in range(n):
        image, label = make_pair(100 + k, size)
        write_tif(images / f"{k:012d}.tif", image)
        write_tif(labels / f"{k:012d}.tif", label.astype(label_dtype))
    return images, labels


STUDY_BREAKAGES = {  # breakage -> the file (or folder) the error must name
    "empty": "images", "unpaired": "000000000001.tif", "bands": "000000000000.tif",
    "label9": "000000000002.tif", "size": "000000000001.tif"}


def break_study_dirs(images: Path, labels: Path, breakage: str) -> None:
    """Spoil a study layout made by :func:`make_study_dirs` in one of STUDY_BREAKAGES' ways."""
    if breakage == "empty":
        for p in images.iterdir():
            p.unlink()
    elif breakage == "unpaired":
        (labels / "000000000001.tif").rename(labels / "other.tif")
    elif breakage == "bands":
        write_tif(images / "000000000000.tif", np.ones((4, 32, 32), np.uint16))
    elif breakage == "label9":
        write_tif(labels / "000000000002.tif", np.full((32, 32), 9, np.uint8))
    elif breakage == "size":
        write_tif(labels / "000000000001.tif", np.ones((48, 48), np.uint8))
    else:
        raise ValueError(breakage)
