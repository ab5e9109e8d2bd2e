"""Training tiles: finding, checking and loading image/label pairs.

Two layouts are read:

* a ``prepare`` output: ``TILES/images/<id>.tif`` (12-band uint16), ``TILES/labels/<id>.tif``
  (uint8 0..8) and ``TILES/prepare.json`` with bands, legend, radiometry, tile size and
  each tile's split;
* the study's layout: parallel ``images/`` and ``labels/`` folders paired by file name,
  uint16 or uint8 labels, no metadata (default legend, study band order and the
  pre-04.00 radiometric convention are assumed: the study's tiles hold the 12 bands in
  s2pipe's order), split at random with a seed.

Every pair is checked (band count, size, dtype, grid, label values) before training
starts, so a bad file is a :class:`TileError` naming it, never a crash in a worker.
Tiles are held in memory as uint16 / uint8 (1,920 tiles of 256 px are 3 GB).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from s2pipe.errors import InputNotFoundError, TileError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass
from s2pipe.model.normalization import Normalization
from s2pipe.model.unet import STRIDE
from s2pipe.provenance import Radiometry
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION
from s2pipe.tiles.manifest import TileManifest

log = logging.getLogger(__name__)

TILE_SUFFIXES = (".tif", ".tiff")


@dataclass
class TilePair:
    id: str
    image: Path
    label: Path
    split: str = "train"


@dataclass
class TileSet:
    """The tile pairs of one training run and what is known about them."""

    pairs: list[TilePair]
    bands: list[str]
    legend: tuple[LandCoverClass, ...]
    radiometry: Radiometry
    source: str  # "prepare" or "study"
    tile_size: int | None = None
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[TilePair]:
        return [p for p in self.pairs if p.split == name]


def _split_ids(ids: list[str], train_size: float, seed: int) -> dict[str, str]:
    order = list(ids)
    np.random.default_rng(seed).shuffle(order)
    n_train = min(len(order), max(1, round(train_size * len(order))))
    n_val = math.ceil((len(order) - n_train) / 2)
    return {i: ("train" if k < n_train else "val" if k < n_train + n_val else "test")
            for k, i in enumerate(order)}


def _prepare_layout(tiles_dir: Path, prefix: str = "") -> TileSet:
    manifest = TileManifest.read(tiles_dir)
    pairs = [TilePair(prefix + t.id, manifest.image_path(tiles_dir, t.id),
                      manifest.label_path(tiles_dir, t.id), t.split) for t in manifest.tiles]
    return TileSet(pairs, manifest.bands, manifest.legend, manifest.radiometry, "prepare",
                   manifest.tile_size)


def _merge(dirs: Sequence[Path]) -> TileSet:
    """Several ``prepare`` outputs as one tile set; they must share the model's contract."""
    sets = [_prepare_layout(d, f"{i}:" if len(dirs) > 1 else "") for i, d in enumerate(dirs)]
    first = sets[0]
    for d, s in zip(dirs[1:], sets[1:]):
        for what, mine, theirs in (("bands", s.bands, first.bands), ("legend", s.legend, first.legend),
                                   ("tile size", s.tile_size, first.tile_size),
                                   ("radiometric convention", s.radiometry.convention,
                                    first.radiometry.convention)):
            if mine != theirs:
                raise TileError(f"{d} has another {what} than {dirs[0]} ({mine} vs {theirs}); "
                                "train on tile folders prepared the same way")
    merged = TileSet([p for s in sets for p in s.pairs], first.bands, first.legend, first.radiometry,
                     "prepare", first.tile_size)
    if len(sets) > 1:
        merged.radiometry = Radiometry(convention=first.radiometry.convention,
                                       tile_folders=tuple(str(d) for d in dirs))
    return merged


def _study_layout(images_dir: Path, labels_dir: Path) -> TileSet:
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise InputNotFoundError(f"{d} is not a folder")
    images = {p.name: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in TILE_SUFFIXES}
    labels = {p.name: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() in TILE_SUFFIXES}
    if not images:
        raise TileError(f"{images_dir} holds no .tif tiles; point --images-dir at the image tiles")
    for name in images:
        if name not in labels:
            raise TileError(f"{images_dir / name} has no label {labels_dir / name}; "
                            "images and labels pair by file name")
    extra = sorted(set(labels) - set(images))
    if extra:
        raise TileError(f"{labels_dir / extra[0]} has no image in {images_dir}; "
                        "images and labels pair by file name")
    pairs = [TilePair(Path(n).stem, images[n], labels[n]) for n in images]
    tileset = TileSet(pairs, list(BANDS), DEFAULT_LEGEND,
                      Radiometry(convention=RADIOMETRY_CONVENTION, assumed=True), "study")
    tileset.notes.append("study layout: no metadata, assuming the default legend, the study's "
                         "band order and DN = 10000 * reflectance (pre-04.00 convention)")
    return tileset


def find_tiles(tiles_dir: str | Path | Sequence[str | Path] | None = None, *,
               images_dir: str | Path | None = None,
               labels_dir: str | Path | None = None, train_size: float = 0.8, seed: int = 0,
               num_samples: int | None = None) -> TileSet:
    """The tile pairs of ``prepare`` outputs (one folder or several) or of the study's
    images/labels folders.

    For the study layout ``train_size`` is the fraction of tiles trained on; the rest is
    halved into validation and test, at random with ``seed``. ``num_samples`` keeps a
    random subset of that many pairs (same seed). Raises :class:`TileError` for an empty
    folder or unpaired files.
    """
    if tiles_dir is not None:
        dirs = [Path(tiles_dir)] if isinstance(tiles_dir, (str, Path)) else [Path(d) for d in tiles_dir]
        if not dirs:
            raise TileError("no tile folder given")
        where = dirs[0]
        tileset = _merge(dirs)
    elif images_dir is None or labels_dir is None:
        raise TileError("give a prepare output folder, or both --images-dir and --labels-dir")
    else:
        where = Path(images_dir)
        tileset = _study_layout(where, Path(labels_dir))
    if not tileset.pairs:
        raise TileError(f"{where} lists no tiles; re-run 's2pipe prepare'")
    if num_samples is not None and num_samples < len(tileset.pairs):
        keep = np.sort(np.random.default_rng(seed).choice(len(tileset.pairs), num_samples, replace=False))
        tileset.pairs = [tileset.pairs[i] for i in keep]
    if tileset.source == "study":
        splits = _split_ids([p.id for p in tileset.pairs], train_size, seed)
        for p in tileset.pairs:
            p.split = splits[p.id]
    if not tileset.split("train"):
        raise TileError(f"{where}: no tile is in the training split")
    return tileset


def _check_pair(pair: TilePair, num_bands: int) -> tuple[int, int]:
    import rasterio
    from rasterio.errors import RasterioIOError

    for path in (pair.image, pair.label):
        if not path.is_file():
            raise TileError(f"{path} is missing; re-run 's2pipe prepare' or fix the tile folder")
    try:
        with rasterio.open(pair.image) as img, rasterio.open(pair.label) as lab:
            if img.count != num_bands:
                raise TileError(f"{pair.image} has {img.count} bands, expected {num_bands}")
            if img.dtypes[0] != "uint16":
                raise TileError(f"{pair.image} is {img.dtypes[0]}, expected uint16 DN")
            if lab.count != 1 or lab.dtypes[0] not in ("uint8", "uint16"):
                raise TileError(f"{pair.label} must be one uint8/uint16 band, "
                                f"has {lab.count} x {lab.dtypes[0]}")
            if (img.width, img.height) != (lab.width, lab.height):
                raise TileError(f"{pair.label} is {lab.width} x {lab.height} px but its image "
                                f"{pair.image.name} is {img.width} x {img.height}")
            if (img.crs and lab.crs and img.crs != lab.crs) or not img.transform.almost_equals(lab.transform):
                raise TileError(f"{pair.label} is not on the grid of its image {pair.image.name}")
            return img.height, img.width
    except RasterioIOError as exc:
        raise TileError(f"cannot read tile pair {pair.image} / {pair.label}: {exc}") from exc


def load_tiles(pairs: Sequence[TilePair], *, num_bands: int = 12, num_classes: int = 8,
               progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check every pair, then read them: uint16 (N, bands, H, W) and uint8 (N, H, W).

    All tiles must share one size, a multiple of 16; labels must hold 0..num_classes.
    """
    import rasterio

    sizes = {_check_pair(p, num_bands) for p in pairs}
    if len(sizes) > 1:
        raise TileError(f"tiles differ in size {sorted(sizes)}; all tiles must share one size")
    (h, w), = sizes
    if h % STRIDE or w % STRIDE:
        raise TileError(f"{pairs[0].image}: tiles of {w} x {h} px; the U-Net needs sizes that "
                        f"are multiples of {STRIDE} (re-run prepare with e.g. --tile-size 256)")
    images = np.empty((len(pairs), num_bands, h, w), np.uint16)
    labels = np.empty((len(pairs), h, w), np.uint8)
    for i, pair in enumerate(pairs):
        with rasterio.open(pair.image) as src:
            images[i] = src.read()
        with rasterio.open(pair.label) as src:
            lab = src.read(1)
        if lab.max() > num_classes:
            raise TileError(f"{pair.label} holds label value {int(lab.max())}; "
                            f"expected 0 (no data) or classes 1..{num_classes}")
        labels[i] = lab
        if progress is not None:
            progress(1)
    return images, labels


def band_statistics(images: np.ndarray) -> Normalization:
    """Per-band mean and std of DN over pixels that are not no data (0 in every band);
    the std is at least 1 DN, so a constant band does not divide by zero."""
    c = images.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    n = 0
    for tile in images:
        flat = tile.reshape(c, -1)
        valid = flat[:, flat.any(axis=0)].astype(np.float64)
        total += valid.sum(axis=1)
        total_sq += np.square(valid).sum(axis=1)
        n += valid.shape[1]
    if n == 0:
        raise TileError("the training tiles hold no valid pixels (all no data)")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
    return Normalization(tuple(mean.tolist()), tuple(np.maximum(std, 1.0).tolist()))


def class_counts(labels: np.ndarray, num_classes: int = 8) -> np.ndarray:
    """Pixels per class value 1..num_classes (label 0 not counted)."""
    return np.bincount(labels.ravel(), minlength=num_classes + 1)[1:num_classes + 1].astype(np.int64)


class TileDataset(Dataset):
    """In-memory tiles; an item ``(index, k)`` applies dihedral transform ``k`` (0..7).

    Returns the raw uint16 image tensor and the uint8 label; normalisation happens on
    the device, on whole batches.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx, k = item if isinstance(item, tuple) else (item, 0)
        img, lab = self.images[idx], self.labels[idx]
        if k:
            img = np.rot90(img, k % 4, axes=(1, 2))
            lab = np.rot90(lab, k % 4)
            if k >= 4:
                img, lab = img[:, :, ::-1], lab[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(np.ascontiguousarray(lab))


class EpochSampler(Sampler):
    """Reproducible order and augmentation per epoch, sharded over DDP ranks.

    The permutation and the transforms of epoch ``e`` depend only on (seed, e), so a
    resumed run sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, n: int, *, seed: int, shuffle: bool, augment: bool,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.augment = n, seed, shuffle, augment
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        aug = torch.randint(0, 8, (self.n,), generator=g) if self.augment else torch.zeros(self.n, dtype=torch.long)
        idx = order.tolist()
        if self.world_size > 1:
            if self.shuffle:  # pad so every rank runs the same number of steps
                idx = (idx * self.world_size)[: len(self) * self.world_size]
            idx = idx[self.rank::self.world_size]
        return iter([(i, int(aug[i])) for i in idx])
