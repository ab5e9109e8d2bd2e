"""The rasters s2pipe writes and reads back: the one place that knows how they are laid out.

Kinds (:data:`MapKind`), each recognised by its layout, so that maps written by any
s2pipe version are read the same way:

* ``classes``: one integer band, 0 = no data, 1..n the classes (``predict``, ``mosaic``,
  ``synth``'s truth, label tiles); legend as colour table, ``CLASS_<n>`` band tags,
  ``.aux.xml`` and ``.qml`` sidecars (:mod:`s2pipe.raster.style`);
* ``probabilities``: one uint8 band per class, 255 = 1.0, every band 0 = no data
  (``predict --probabilities-all``); legend in the ``S2PIPE_LEGEND`` tag;
* ``confidence``: one uint8 band, the probability of the map's class (``predict
  --probabilities``), 0 = no data;
* ``sources``: two uint8 bands, the scene that weighed most (index in ``S2PIPE_SCENES``)
  and how many scenes were valid (``mosaic --sources``);
* ``stack``: the 12 harmonised uint16 bands, described by band name (``prepare --stack``),
  the product and radiometry in tags;
* ``change``: one uint8 band of from -> to codes (:mod:`s2pipe.raster.transitions`) of
  two maps (``s2pipe change``), recognised by its ``S2PIPE_BEFORE`` tag; the class legend
  in ``S2PIPE_LEGEND``, the transitions that occur as a class map's legend.

Their provenance (:class:`Provenance`) is a typed record written as ``S2PIPE_*``
dataset tags; :func:`open_map` reads any of them as a :class:`MapRaster` under one rule
with one set of messages, and :func:`write_map` writes one block row after another into
a COG that appears complete (read back before its rename) or not at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from s2pipe.errors import InputNotFoundError, RasterError
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass
from s2pipe.outputs import atomic_output
from s2pipe.provenance import Provenance, Radiometry
from s2pipe.raster.grid import Grid
from s2pipe.raster.style import DESCRIPTION, apply_legend, has_legend, read_legend, sidecar_paths, write_sidecars
from s2pipe.raster.transitions import Transitions

MapKind = Literal["classes", "probabilities", "confidence", "sources", "stack", "change"]
MAP_KINDS: tuple[MapKind, ...] = ("classes", "probabilities", "confidence", "sources", "stack", "change")

#: What each kind is, in the messages of :func:`open_map`.
KIND_NAMES: dict[str, str] = {
    "classes": "a class map (s2pipe predict or mosaic)",
    "probabilities": "class probabilities (s2pipe predict --probabilities --probabilities-all)",
    "confidence": "a confidence raster (s2pipe predict --probabilities)",
    "sources": "a sources raster (s2pipe mosaic --sources)",
    "stack": "a 12-band stack (s2pipe prepare --stack)",
    "change": "a change map (s2pipe change)",
}

LEGEND_TAG = "S2PIPE_LEGEND"
RADIOMETRY_TAG = "S2PIPE_RADIOMETRY"
PRODUCT_TAG = "S2PIPE_PRODUCT"
SCENES_TAG = "S2PIPE_SCENES"
BEFORE_TAG = "S2PIPE_BEFORE"
CHANGE_DESCRIPTION = "land-cover change, from -> to (0 = no data)"
CONFIDENCE_DESCRIPTION = "P(map class)"
SOURCES_DESCRIPTIONS = (f"scene weighing most (index in {SCENES_TAG}, 0 = none)", "scenes with a valid pixel")


def probability_description(c: LandCoverClass) -> str:
    return f"P({c.name})"


@dataclass(frozen=True)
class MapRaster:
    """What a raster s2pipe reads is (not its pixels): kind, grid, legend, provenance."""

    path: Path
    kind: MapKind
    grid: Grid
    count: int
    dtype: str
    nodata: float | None
    legend: tuple[LandCoverClass, ...] | None   # None: the raster names no class
    provenance: Provenance
    descriptions: tuple[str | None, ...]

    @property
    def product(self) -> str:
        """The product it shows (its provenance), else its file name."""
        return self.provenance.product or self.path.stem

    def legend_or(self, default: Sequence[LandCoverClass]) -> tuple[LandCoverClass, ...]:
        return self.legend if self.legend is not None else tuple(default)

    @property
    def transitions(self) -> Transitions:
        """The codes of a change map (:class:`RasterError` for other kinds)."""
        if self.kind != "change" or self.provenance.legend is None:
            raise RasterError(f"{self.path} is {KIND_NAMES[self.kind]}, not {KIND_NAMES['change']}")
        return Transitions(self.provenance.legend)

    def require_projected(self) -> None:
        """:class:`RasterError` unless the map's CRS is projected (areas need metres)."""
        if not self.grid.crs.is_projected:
            raise RasterError(f"{self.path} has no projected CRS; areas need metres: reproject it "
                              "(gdalwarp -t_srs, nearest) to a UTM zone")


def _kind(ds: Any) -> MapKind | None:
    count, dtype = ds.count, np.dtype(ds.dtypes[0])
    desc = tuple(ds.descriptions)
    integer = np.issubdtype(dtype, np.integer)
    if count == 1 and integer:
        if BEFORE_TAG in ds.tags():
            return "change"
        return "confidence" if desc[0] == CONFIDENCE_DESCRIPTION else "classes"
    if count == 2 and dtype == np.uint8 and desc == SOURCES_DESCRIPTIONS:
        return "sources"
    if dtype == np.uint16 and ({"B02", "B03", "B04"} <= set(desc) or count == 12):  # s2pipe's band order
        return "stack"
    if count > 1 and dtype == np.uint8 and LEGEND_TAG in ds.tags():
        return "probabilities"
    return None


def _legend(ds: Any, path: Path, provenance: Provenance, kind: MapKind) -> tuple[LandCoverClass, ...] | None:
    if provenance.legend is not None and kind in ("classes", "probabilities", "confidence"):
        return provenance.legend
    if kind in ("classes", "change") and has_legend(ds):
        return read_legend(ds, () if kind == "change" else DEFAULT_LEGEND)
    return None


def open_map(path: str | os.PathLike, kinds: Sequence[MapKind] = ("classes",), *,
             need_legend: bool = False) -> MapRaster:
    """Open ``path`` as one of ``kinds`` of s2pipe raster (or :class:`InputNotFoundError`,
    :class:`RasterError`: not readable, not georeferenced, another kind, damaged tags,
    no legend where ``need_legend``)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    from s2pipe.raster.profiles import gdal_reason

    path = Path(path)
    want = " or ".join(KIND_NAMES[k] for k in kinds)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give {want}")
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(f"{path} is not a raster GDAL can read ({gdal_reason(exc)}); give {want}") from None
    with ds:
        kind = _kind(ds)
        if kind is None or kind not in kinds:
            what = f"is {KIND_NAMES[kind]}" if kind else f"has {ds.count} band(s) of {ds.dtypes[0]}"
            raise RasterError(f"{path} {what}; give {want}")
        if ds.crs is None:
            raise RasterError(f"{path} has no CRS; give a georeferenced map")
        provenance = Provenance.from_tags(ds.tags(), path)
        legend = _legend(ds, path, provenance, kind)
        if kind == "change" and provenance.legend is None:
            raise RasterError(f"{path} is a change map without its class legend ({LEGEND_TAG}); "
                              "write it again with s2pipe change")
        if need_legend and legend is None:
            raise RasterError(f"{path} carries no legend; give maps written by s2pipe predict")
        if kind == "probabilities" and legend is not None and ds.count != len(legend):
            raise RasterError(f"{path} has {ds.count} bands for a legend of {len(legend)} classes; "
                              "give probabilities of s2pipe predict --probabilities-all")
        return MapRaster(path, kind, Grid.of(ds), ds.count, ds.dtypes[0], ds.nodata, legend, provenance,
                         tuple(ds.descriptions))


def read_band(m: MapRaster, band: int | list[int] = 1, **kwargs: Any) -> np.ndarray:
    """Band ``band`` (or bands) of an opened map (``kwargs`` as rasterio's ``read``: window, out_shape,
    resampling); :class:`RasterError` when the file is damaged."""
    import rasterio
    from rasterio.errors import RasterioError

    from s2pipe.raster.profiles import gdal_reason

    try:
        with rasterio.open(m.path) as ds:
            return ds.read(band, **kwargs)
    except RasterioError as exc:
        raise RasterError(f"{m.path} cannot be read ({gdal_reason(exc)}); the file is damaged or incomplete: "
                          "write it again") from None


# ------------------------------------------------------------------ writing
@dataclass(frozen=True)
class Layout:
    """How a kind of map is written: bands, no-data value, overview resampling, legend."""

    kind: MapKind
    count: int = 1
    nodata: float | None = 0
    overviews: Literal["mode", "average", "nearest"] = "mode"
    legend: tuple[LandCoverClass, ...] | None = None
    descriptions: tuple[str, ...] | None = None
    deflate_level: int | None = None  # None: the COG profile's
    raw_stage: bool = False  # the temporary file written before the COG uncompressed


def class_layout(legend: Sequence[LandCoverClass]) -> Layout:
    return Layout("classes", legend=tuple(legend))


def probability_layout(legend: Sequence[LandCoverClass], *, every_class: bool) -> Layout:
    """``every_class``: one band per class (kind probabilities), else the map class's (confidence)."""
    if every_class:
        return Layout("probabilities", len(legend), None, "average",
                      descriptions=tuple(probability_description(c) for c in legend))
    return Layout("confidence", 1, 0, "average", descriptions=(CONFIDENCE_DESCRIPTION,))


def change_layout() -> Layout:
    """A change map: its legend (the transitions that occur) is given to ``finish()``."""
    from s2pipe.raster.profiles import CHANGE_DEFLATE_LEVEL

    return Layout("change", descriptions=(CHANGE_DESCRIPTION,), deflate_level=CHANGE_DEFLATE_LEVEL, raw_stage=True)


SOURCES_LAYOUT = Layout("sources", 2, None, "nearest", descriptions=SOURCES_DESCRIPTIONS)


def map_files(path: str | os.PathLike, kind: MapKind) -> list[Path]:
    """The files one map is: itself, and for class maps its ``.aux.xml`` and ``.qml``."""
    return [Path(path), *(sidecar_paths(path) if kind in ("classes", "change") else [])]


@contextmanager
def atomic_class_map(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write a class map at, with :func:`write_sidecars` beside it.

    On success the sidecars are moved into place, then the map: a map that exists has its
    sidecars. On failure nothing is left, and existing outputs are refused unless
    ``overwrite``, the sidecars included.
    """
    with ExitStack() as stack:  # exits in reverse: leftovers removed, sidecars, then the map
        map_tmp = stack.enter_context(atomic_output(path, overwrite=overwrite))
        targets = [stack.enter_context(atomic_output(s, overwrite=overwrite))
                   for s in sidecar_paths(path)]
        written = sidecar_paths(map_tmp)
        for w in written:
            stack.callback(w.unlink, missing_ok=True)
        yield map_tmp
        for w, target in zip(written, targets, strict=True):
            os.replace(w, target)


@contextmanager
def write_map(path: str | os.PathLike, grid: Any, layout: Layout, provenance: Provenance, *,
              overwrite: bool = False) -> Iterator[Any]:
    """Yield a :class:`s2pipe.raster.cog.MapWriter` for a map of ``layout`` at ``path``:
    rows in order (``write_rows``), then ``finish()`` inside the block; when the block ends
    without error the COG (and a class map's sidecars) is moved into place, else nothing is
    left. Several maps of one run go into one ``ExitStack``, each finished before the block
    ends: then none is moved into place unless all were written."""
    from s2pipe.raster.cog import MapWriter

    with ExitStack() as stack:  # exits in reverse: the writer closes, then the outputs are renamed
        if layout.kind in ("classes", "change"):
            tmp = stack.enter_context(atomic_class_map(path, overwrite=overwrite))
        else:
            tmp = stack.enter_context(atomic_output(path, overwrite=overwrite))
        writer = stack.enter_context(MapWriter(
            tmp, grid, count=layout.count, nodata=layout.nodata, overview_resampling=layout.overviews,
            legend=layout.legend, tags=provenance.tags(), band_descriptions=layout.descriptions,
            deflate_level=layout.deflate_level, raw_stage=layout.raw_stage))
        yield writer
        if not tmp.exists():
            raise RuntimeError(f"{path}: the map writer was not finished")


def tile_tags(radiometry: Radiometry) -> dict[str, str]:
    """The tags of an image tile: its radiometry record."""
    return {RADIOMETRY_TAG: json.dumps(radiometry.to_dict())}


def stack_tags(radiometry: Radiometry, product: dict[str, Any]) -> dict[str, str]:
    """The tags of a stack: its radiometry record and the product metadata it came from."""
    return {RADIOMETRY_TAG: json.dumps(radiometry.to_dict()), PRODUCT_TAG: json.dumps(product)}


def read_stack_tags(tags: dict[str, str]) -> tuple[Radiometry | None, dict[str, Any] | None]:
    """(radiometry, product metadata) of a stack's tags, None where absent."""
    radiometry = Radiometry.from_dict(json.loads(tags[RADIOMETRY_TAG])) if RADIOMETRY_TAG in tags else None
    product = json.loads(tags[PRODUCT_TAG]) if PRODUCT_TAG in tags else None
    return radiometry, product


__all__ = ["DESCRIPTION", "KIND_NAMES", "LEGEND_TAG", "MAP_KINDS", "Layout", "MapKind", "MapRaster",
           "Provenance", "SOURCES_LAYOUT", "apply_legend", "atomic_class_map", "change_layout",
           "class_layout", "map_files",
           "open_map", "probability_layout", "read_band", "read_stack_tags", "sidecar_paths", "stack_tags",
           "tile_tags", "write_map", "write_sidecars"]
