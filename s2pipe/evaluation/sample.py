"""A stratified random sample of a map's pixels, for an analyst to label (Olofsson et al. 2014).

Strata are the values of the map: a class map's classes, or a change map's transitions,
stable classes and "uncertain". Allocation of the ``n`` points:

* ``proportional``: to each stratum's area (rare strata get few points, so their
  accuracy is poorly known);
* ``equal``: the same number in every stratum;
* ``neyman`` (the default for change maps, ``auto``): in proportion to each stratum's
  pixels times the anticipated spread of change in it (a mapped transition 70% change,
  uncertain 30%, a buffer stratum 5%, stable far from change 1%): Neyman's optimal
  allocation for the area of change, which puts most points where omitted change can
  hide; measured to give the intervals their coverage (``bench/bench_change.py``);
* ``minimum`` (the default for class maps, as the paper recommends for rare classes): at least
  ``min_per_stratum`` in every stratum (default ``min(50, n // (2 * strata))``: at
  least half the points go by area), the rest in proportion to area.

For a change map, stable pixels within ``buffer`` pixels (default 2) of change or
uncertain pixels form *buffer strata* of their own, one per stable class (Olofsson et
al. 2014 recommend such a buffer: the map's omissions of change lie mostly next to the
change it did map), so that they are sampled apart from the large unchanged areas.

Every stratum gets at least 2 points (one cannot estimate a variance from one) and at
most its pixels. Points lie at pixel centres, drawn without replacement in two passes
over the map (a count, then the draw), block by block: memory is a block and the points.
Each point records its stratum, the stratum's pixels and sample size, its inclusion
probability and weight, and empty reference fields (``ref_class``, or ``ref_before``
and ``ref_after`` for a change map) that ``evaluate`` reads once they are filled in.

``extend``: an earlier sample of the same map is kept (labels and all) and each stratum
topped up to the new allocation with a simple random sample of its other pixels (a random
order of distinct ranks, the earlier points skipped): within each stratum the union is a
simple random sample again, so the estimators read it as one sample. Per-transition
intervals need far more points than the area of change (bench/RESULTS.md, issue 19):
this is how an analyst adds them after a first round of labelling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.errors import InputNotFoundError, LabelError, OptionError, RasterError
from s2pipe.evaluation.allocation import ALLOCATIONS, Allocation, allocate
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.grid import pixel_area_ha
from s2pipe.raster.maps import MapRaster, open_map, read_band
from s2pipe.raster.profiles import with_gdal_env

log = logging.getLogger(__name__)

#: Buffer strata: stable pixels of a change map near change (``BUFFER + code``), where the
#: map's omissions of change gather (change patch edges, uncertain neighbours).
BUFFER = 1000
DEFAULT_BUFFER = 2  # px
#: Transitions under this share of the mapped change pool into one stratum, so that a
#: weak map's many specks of spurious change do not each take points from the large strata.
POOL_SHARE = 0.01
POOLED = 999
POOLED_NAME = "Other transitions (each under 1% of the mapped change), pooled"

ROWS = 1024  # rows read at a time


@dataclass(frozen=True)
class Stratum:
    value: int
    name: str
    pixels: int
    area_ha: float
    points: int


@dataclass
class Sample:
    """What :func:`draw_sample` wrote."""

    path: Path
    map: Path
    kind: str
    points: int
    allocation: str
    seed: int
    crs: str
    strata: list[Stratum]
    reference_fields: list[str]
    buffer: int = 0
    kept: int = 0  # points carried over from the sample extended


def _names(m: MapRaster, buffer: int) -> dict[int, str]:
    names = {c.value: c.name for c in (m.legend or ())}
    if m.kind == "change" and buffer > 0:
        t = m.transitions
        names.update({BUFFER + c: f"{t.name(c)}, within {buffer} px of change"
                      for c in range(1, t.n * t.n + 1) if not t.is_change(c)})
    return names


def map_code(stratum: np.ndarray) -> np.ndarray:
    """The map's value at a point of ``stratum`` (a buffer stratum lies on its stable code;
    the pooled stratum on one of its small transitions: :data:`POOLED` is kept)."""
    return np.where(stratum > BUFFER, stratum - BUFFER, stratum)


def _pooled(m: MapRaster, counts: np.ndarray) -> set[int]:
    """The transitions of a change map too small to be strata of their own (under
    :data:`POOL_SHARE` of the mapped change): they share the stratum :data:`POOLED`."""
    if m.kind != "change":
        return set()
    t = m.transitions
    change = [c for c in range(1, min(len(counts), t.n * t.n + 1)) if t.is_change(c) and counts[c]]
    total = sum(int(counts[c]) for c in change)
    small = {c for c in change if counts[c] < POOL_SHARE * total}
    return small if len(small) > 1 else set()


def _strata(m: MapRaster, buffer: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, strata) of each block of rows: the map's values, and for a change map
    with ``buffer`` its stable pixels within ``buffer`` pixels of change or uncertain
    pixels moved to their buffer stratum (``BUFFER + code``)."""
    import rasterio
    from scipy import ndimage

    g = m.grid
    near = m.kind == "change" and buffer > 0
    for r0 in range(0, g.height, ROWS):
        h = min(ROWS, g.height - r0)
        a0, a1 = (max(0, r0 - buffer), min(g.height, r0 + h + buffer)) if near else (r0, r0 + h)
        block = read_band(m, window=rasterio.windows.Window(0, a0, g.width, a1 - a0)).astype(np.int32)
        if near:
            t = m.transitions
            hot = t.changed(block) | (block == t.uncertain)
            grown = ndimage.binary_dilation(hot, np.ones((2 * buffer + 1, 2 * buffer + 1), bool))
            block = np.where(grown & ~hot & (block > 0), block + BUFFER, block)
        yield r0, block[r0 - a0:r0 - a0 + h]


#: Anticipated shares of true change (Neyman allocation): in a mapped transition, among
#: uncertain pixels, in a buffer stratum, and in a stable class far from change.
ANTICIPATED = {"transition": 0.7, "uncertain": 0.3, "buffer": 0.05, "stable": 0.01}


def _spread(m: MapRaster, values: np.ndarray) -> np.ndarray:
    """sqrt(p (1 - p)) of each stratum's anticipated share of change (:data:`ANTICIPATED`)."""
    if m.kind != "change":
        raise OptionError("--allocation neyman anticipates change: give a change map, or another allocation")
    t = m.transitions

    def share(v: int) -> float:
        if v == POOLED or (v <= t.n * t.n and t.is_change(v)):
            return ANTICIPATED["transition"]
        if v == t.uncertain:
            return ANTICIPATED["uncertain"]
        return ANTICIPATED["buffer"] if v > BUFFER else ANTICIPATED["stable"]

    p = np.array([share(int(v)) for v in values])
    return np.sqrt(p * (1 - p))


def value_counts(m: MapRaster, buffer: int = 0) -> np.ndarray:
    """Pixels of each value of the map (index = value), or of each stratum with ``buffer``
    (see :func:`_strata`), counted block by block."""
    counts = np.zeros(1, dtype=np.int64)
    for _, block in _strata(m, buffer):
        c = np.bincount(block.ravel().astype(np.int64))
        if len(c) > len(counts):
            counts = np.pad(counts, (0, len(c) - len(counts)))
        counts[:len(c)] += c
    return counts


def _previous(path: Path, m: MapRaster, size_of: dict[int, int]) -> tuple[Any, np.ndarray]:
    """The points of an earlier sample of this map (to extend) and their flat pixel indices."""
    import geopandas as gpd
    import rasterio

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give the sample to extend")
    try:
        g = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio's own errors
        raise LabelError(f"{path}: not a readable vector file ({exc})") from None
    if not {"stratum", "stratum_pixels", "point_id"} <= set(g.columns) or not (g.geom_type == "Point").all() \
            or g.crs is None:
        raise LabelError(f"{path} is not a sample drawn by s2pipe sample (points with their stratum fields)")
    wrong = [int(v) for v, k in zip(g["stratum"], g["stratum_pixels"]) if size_of.get(int(v)) != int(k)]
    if wrong:
        raise LabelError(f"{path}: {len(wrong)} of {len(g)} points have a stratum this map does not have or "
                         f"of another size: they were drawn from another map (or with another --buffer)")
    xy = g.geometry.to_crs(m.grid.crs)
    rows, cols = rasterio.transform.rowcol(m.grid.transform, xy.x.values, xy.y.values)
    return g, np.asarray(rows, dtype=np.int64) * m.grid.width + np.asarray(cols, dtype=np.int64)


def _draw(m: MapRaster, buffer: int, pool: np.ndarray, wanted: dict[int, np.ndarray],
          old: np.ndarray, old_strata: np.ndarray) -> dict[int, dict[int, int]]:
    """One pass over the strata: the flat pixel index of each wanted rank of each stratum
    (rank = order of the stratum's pixels in the map), checking that the ``old`` points lie
    on their stratum."""
    got: dict[int, dict[int, int]] = {v: {} for v in wanted}
    ranks = {v: np.sort(r) for v, r in wanted.items()}
    seen = dict.fromkeys(wanted, 0)
    for r0, block2d in _strata(m, buffer):
        block = block2d.ravel()
        if len(pool):
            block = np.where(np.isin(block, pool), POOLED, block)
        start = r0 * m.grid.width
        inside = (old >= start) & (old < start + len(block))
        if (block[old[inside] - start] != old_strata[inside]).any():
            raise LabelError("the sample to extend has points off their stratum: it was drawn from another map")
        for v, rk in ranks.items():
            where = np.flatnonzero(block == v)
            lo, hi = np.searchsorted(rk, [seen[v], seen[v] + len(where)])
            got[v].update(zip(rk[lo:hi].tolist(), (start + where[rk[lo:hi] - seen[v]]).tolist()))
            seen[v] += len(where)
    return got


@with_gdal_env
def draw_sample(map_path: str | os.PathLike, n: int, out: str | os.PathLike, *,
                allocation: Allocation = "auto", min_per_stratum: int | None = None, seed: int = 0,
                buffer: int = DEFAULT_BUFFER, extend: str | os.PathLike | None = None,
                overwrite: bool = False) -> Sample:
    """Draw ``n`` points from the map (class or change map) at ``map_path`` into the
    GeoPackage ``out``; see the module docstring. With ``extend`` (an earlier sample of
    this map, labels and all), its points are kept and new ones drawn among the other
    pixels of each stratum up to the allocation of ``n``."""
    import geopandas as gpd
    import pandas as pd
    import rasterio

    map_path, out = Path(map_path), Path(out)
    if allocation not in ALLOCATIONS:
        raise OptionError(f"--allocation {allocation}: choose one of {', '.join(ALLOCATIONS)}")
    if n < 1:
        raise OptionError(f"-n {n}: give a positive number of points")
    if buffer < 0:
        raise OptionError(f"--buffer {buffer}: give 0 (none) or more pixels")
    if out.suffix.lower() != ".gpkg":
        raise OptionError(f"{out}: the sample is written as a GeoPackage (.gpkg)")
    check_writable(out, overwrite=overwrite)
    m = open_map(map_path, ("classes", "change"))
    m.require_projected()
    counts = value_counts(m, buffer)
    pooled = _pooled(m, counts)
    if pooled:
        counts = np.pad(counts, (0, max(0, POOLED + 1 - len(counts))))
        counts[POOLED] = sum(int(counts[c]) for c in pooled)
        counts[sorted(pooled)] = 0
    nodata = {0} | ({int(m.nodata)} if m.nodata is not None else set())
    values = np.array([v for v in np.flatnonzero(counts) if v not in nodata], dtype=np.int64)
    if len(values) == 0:
        raise RasterError(f"{map_path} has no pixel with data to sample")
    sizes = counts[values]
    size_of = dict(zip(values.tolist(), sizes.tolist()))
    prev, old = (None, np.zeros(0, dtype=np.int64)) if extend is None else _previous(Path(extend), m, size_of)
    old_strata = np.zeros(0, dtype=np.int64) if prev is None else prev["stratum"].to_numpy().astype(np.int64)
    if prev is not None and n <= len(prev):
        raise OptionError(f"-n {n}: {extend} already holds {len(prev)} points; give the larger total wanted")
    how: Allocation = allocation if allocation != "auto" else ("neyman" if m.kind == "change" else "minimum")
    per = allocate(sizes, n, how, min_per_stratum, _spread(m, values) if how == "neyman" else None)
    have = np.array([int((old_strata == v).sum()) for v in values], dtype=np.int64)
    per = np.maximum(per, have)  # a stratum already holding more keeps its points
    rng = np.random.default_rng(seed)
    # a random order of k + (points it holds) distinct ranks: its first k new ones are a
    # simple random sample of the stratum's other pixels
    wanted = {int(v): rng.choice(int(s), int(k), replace=False) for v, s, k in zip(values, sizes, per)}
    got = _draw(m, buffer, np.array(sorted(pooled), dtype=np.int32), wanted, old, old_strata)
    taken = set(old.tolist())
    picked = []
    for v, k in zip(values.tolist(), (per - have).tolist()):
        flat = [f for f in (got[v][r] for r in wanted[v].tolist()) if f not in taken][:k]
        picked += [(f, v) for f in flat]
    picked.sort()
    r = np.array([f // m.grid.width for f, _ in picked], dtype=np.int64)
    c = np.array([f % m.grid.width for f, _ in picked], dtype=np.int64)
    s = np.array([v for _, v in picked], dtype=np.int64)
    xs, ys = rasterio.transform.xy(m.grid.transform, r, c)
    names = {**_names(m, buffer), POOLED: POOLED_NAME}
    points_of = dict(zip(values.tolist(), per.tolist()))
    first = 1 if prev is None else int(prev["point_id"].max()) + 1
    columns: dict[str, object] = {
        "point_id": np.arange(first, first + len(s)), "stratum": s.astype(np.int32),
        "stratum_name": [names.get(int(v), str(v)) for v in s],
        "stratum_pixels": np.array([size_of[int(v)] for v in s], dtype=np.int64),
        "stratum_points": 0, "inclusion_probability": 0.0, "weight": 0.0,  # below, for every point
        "map": map_path.name}
    if m.kind == "change":
        t = m.transitions
        before, after = t.before_after(map_code(s))
        columns["map_before"] = [t.classes[b - 1].name if b else "" for b in before]
        columns["map_after"] = [t.classes[a - 1].name if a else "" for a in after]
        ref_fields = ["ref_before", "ref_after"]
    else:
        ref_fields = ["ref_class"]
    for f in ref_fields:
        columns[f] = np.full(len(s), np.nan)  # for the analyst: a class value or name
    gdf = gpd.GeoDataFrame(columns, geometry=gpd.points_from_xy(xs, ys), crs=m.grid.crs)
    if prev is not None:
        gdf = gpd.GeoDataFrame(pd.concat([prev.to_crs(m.grid.crs), gdf], ignore_index=True),
                               geometry="geometry", crs=m.grid.crs)
    every = gdf["stratum"].to_numpy().astype(np.int64)
    gdf["stratum_points"] = np.array([points_of[int(v)] for v in every], dtype=np.int32)
    gdf["inclusion_probability"] = np.array([points_of[int(v)] / size_of[int(v)] for v in every])
    gdf["weight"] = np.array([size_of[int(v)] / points_of[int(v)] for v in every])
    for f in ref_fields:
        if f in gdf and gdf[f].dtype.kind in "fiu":
            gdf[f] = gdf[f].astype("Int32")
    with atomic_output(out, overwrite=overwrite) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer="sample", engine="pyogrio")
    px_ha = pixel_area_ha(m.grid) or 0.0
    strata_out = [Stratum(int(v), names.get(int(v), str(v)), int(size_of[int(v)]),
                          round(size_of[int(v)] * px_ha, 4), int(points_of[int(v)])) for v in values]
    log.info("sampled %d points in %d strata of %s", len(gdf), len(values), map_path)
    return Sample(path=out, map=map_path, kind=m.kind, points=int(len(gdf)), allocation=how, seed=seed,
                  crs=m.grid.crs.to_string(), strata=strata_out, reference_fields=ref_fields,
                  buffer=buffer if m.kind == "change" else 0, kept=0 if prev is None else len(prev))
