"""The tile set ``prepare`` writes: its folder layout and ``prepare.json``, read and written here.

A tile folder holds ``images/<id>.tif``, ``labels/<id>.tif``, ``tiles.gpkg`` and
``prepare.json``; ``train`` reads it with :meth:`TileManifest.read`, ``evaluate
--split-from`` uses its test tiles. ``<id>`` is ``r<row>_c<col>``, the tile's top-left
pixel in its product's 10 m grid, prefixed with the product's key (``T33UYS_20180607_``)
when the set holds several products. Manifests of s2pipe 0.1.0 (one ``product``) are read
as sets of one product.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2pipe import __version__
from s2pipe.errors import TileError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass, legend_from_list, legend_to_list
from s2pipe.provenance import Radiometry
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_NAME = "prepare.json"
FOOTPRINTS_NAME = "tiles.gpkg"
IMAGES_DIR, LABELS_DIR = "images", "labels"


@dataclass
class TileRecord:
    """One tile: its id, position in the scene grid, split and what it holds."""

    id: str
    row: int
    col: int
    split: str = "train"
    labelled_fraction: float = 0.0
    nodata_fraction: float = 0.0
    class_counts: dict[str, int] = field(default_factory=dict)  # class value -> pixels
    product: str = ""  # key of the product it was cut from (see ProductRecord)


@dataclass
class ProductRecord:
    """One product of a tile set: its key, metadata, radiometry, labels report and counts."""

    key: str
    info: dict[str, Any]                 # ProductInfo fields (grid, tile, date, EPSG...), as written
    radiometry: Radiometry = field(default_factory=Radiometry)
    labels: dict[str, Any] = field(default_factory=dict)  # what happened to the label features
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.info.get("name", ""))

    @property
    def tile(self) -> str:
        return str(self.info.get("tile", ""))

    @property
    def date(self) -> str:
        """Sensing date, YYYY-MM-DD ("" when unknown)."""
        return str(self.info.get("sensing_time", ""))[:10]

    @property
    def epsg(self) -> int:
        return int(self.info.get("epsg") or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "info": self.info, "radiometry": self.radiometry.to_dict(),
                "labels": self.labels, "counts": self.counts}

    def same_grid(self, grid: Any) -> bool | None:
        """Whether the product's 10 m grid is ``grid`` (None when the record does not say)."""
        p = self.info
        if not {"transform", "width", "height"} <= p.keys():
            return None
        return (int(p["width"]) == grid.width and int(p["height"]) == grid.height
                and all(abs(float(a) - float(b)) <= 1e-6
                        for a, b in zip(p["transform"][:6], list(grid.transform)[:6]))
                and (p.get("epsg") is None or grid.crs.to_epsg() == int(p["epsg"])))


@dataclass
class TileManifest:
    """What ``prepare.json`` says about a tile set."""

    bands: list[str]
    legend: tuple[LandCoverClass, ...]
    radiometry: Radiometry
    tile_size: int
    tiles: list[TileRecord]
    products: list[ProductRecord] = field(default_factory=list)
    resampling: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)  # over all products, per split and class
    s2pipe_version: str = __version__

    def split(self, name: str) -> list[TileRecord]:
        return [t for t in self.tiles if t.split == name]

    @staticmethod
    def image_path(folder: Path, tile_id: str) -> Path:
        return Path(folder) / IMAGES_DIR / f"{tile_id}.tif"

    @staticmethod
    def label_path(folder: Path, tile_id: str) -> Path:
        return Path(folder) / LABELS_DIR / f"{tile_id}.tif"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["legend"] = legend_to_list(self.legend)
        d["radiometry"] = self.radiometry.to_dict()
        d["products"] = [p.to_dict() for p in self.products]
        return d

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def read(cls, folder: str | Path) -> TileManifest:
        """The manifest of a tile folder; :class:`TileError` if it is missing or malformed."""
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise TileError(f"{path} not found; pass a folder written by 's2pipe prepare'")
        try:
            d = json.loads(path.read_text())
            tiles = [TileRecord(id=str(t["id"]), row=int(t["row"]), col=int(t["col"]),
                                split=str(t.get("split", "train")),
                                labelled_fraction=float(t.get("labelled_fraction", 0.0)),
                                nodata_fraction=float(t.get("nodata_fraction", 0.0)),
                                class_counts={str(k): int(v) for k, v in
                                              (t.get("class_counts") or {}).items()},
                                product=str(t.get("product", "")))
                     for t in d["tiles"]]
            if "products" in d:
                products = [ProductRecord(str(p["key"]), dict(p["info"]), Radiometry.from_dict(p.get("radiometry")),
                                          dict(p.get("labels") or {}), dict(p.get("counts") or {}))
                            for p in d["products"]]
            else:  # s2pipe 0.1.0: one product
                products = [ProductRecord("", dict(d.get("product") or {}), Radiometry.from_dict(d.get("radiometry")),
                                          dict(d.get("labels") or {}), dict(d.get("counts") or {}))]
            manifest = cls(
                bands=[str(b) for b in d.get("bands", BANDS)],
                legend=legend_from_list(d["legend"]) if "legend" in d else DEFAULT_LEGEND,
                radiometry=Radiometry.from_dict(d.get("radiometry") or {"convention": RADIOMETRY_CONVENTION}),
                tile_size=int(d["tile_size"]), tiles=tiles,
                products=products, resampling=d.get("resampling"),
                options=dict(d.get("options") or {}), counts=dict(d.get("counts") or {}),
                s2pipe_version=str(d.get("s2pipe_version", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TileError(f"{path} is not a valid prepare manifest ({type(exc).__name__}: "
                            f"{exc}); re-run 's2pipe prepare'") from None
        bad = sorted({t.split for t in tiles} - set(SPLITS))
        if bad:
            raise TileError(f"{path} names unknown splits {bad}; expected {'/'.join(SPLITS)}")
        return manifest
