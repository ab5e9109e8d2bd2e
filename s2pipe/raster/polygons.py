"""The polygon algorithms of ``vectorize``: sieve to a minimum mapping unit, exact rings.

See :mod:`s2pipe.raster.vectorize` for what they promise: patches are 4-connected; small
patches merge into their largest edge neighbour, smallest first; rings follow pixel edges
and carry a vertex wherever three patches (or no data) meet, so neighbours share borders
vertex for vertex.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CONNECTIVITY = 4  # patches: edge neighbours only (diagonals are separate patches)
NODE_BATCH = 1_000_000  # pixel edges of polygon rings rebuilt at a time (~60 MB of work arrays)


def _valid(data: np.ndarray, nodata: set[int]) -> np.ndarray:
    first, *others = sorted(nodata)
    valid = data != first
    for v in others:
        valid &= data != v
    return valid


def _pixel_polygons(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected patches of ``data`` as polygons in pixel coordinates, and their values."""
    import shapely
    from rasterio.features import shapes

    geoms, values = [], []
    for geom, value in shapes(data, connectivity=CONNECTIVITY):
        geoms.append(shapely.geometry.shape(geom))
        values.append(int(value))
    return np.array(geoms, dtype=object), np.array(values, dtype=np.int64)


def _merge_small(geoms: np.ndarray, values: np.ndarray, nodata: set[int], min_px: int) -> dict[int, int]:
    """Polygon index -> new value for the small patches that merge into a neighbour."""
    import shapely

    area = shapely.area(geoms).round().astype(np.int64)
    data_poly = ~np.isin(values, list(nodata))
    small = np.flatnonzero(data_poly & (area < min_px))
    if not small.size:
        return {}
    pairs = shapely.STRtree(geoms).query(geoms[small], predicate="intersects")
    i, j = small[pairs[0]], pairs[1]
    keep = (i != j) & data_poly[j]
    i, j = i[keep], j[keep]
    edge = shapely.length(shapely.intersection(geoms[i], geoms[j])) > 0  # not a corner alone
    nbrs: dict[int, set[int]] = {int(s): set() for s in small}  # of each group, by its root
    for a, b in zip(i[edge].tolist(), j[edge].tolist(), strict=True):
        nbrs[a].add(b)
    parent = {int(s): int(s) for s in small}
    size = {int(s): int(area[s]) for s in small}

    def find(k: int) -> int:
        while parent.get(k, k) != k:
            k = parent[k]
        return k

    for s in sorted(parent, key=lambda k: (area[k], k)):  # smallest first
        root = find(s)
        if size.get(root, area[root]) >= min_px:
            continue
        cands = {find(n) for n in nbrs[root]} - {root}
        if not cands:
            continue  # a piece of map smaller than the unit
        target = max(cands, key=lambda k: (size.get(k, int(area[k])), -k))
        parent[root] = target
        size[target] = size.get(target, int(area[target])) + size[root]
        nbrs[target] = nbrs.get(target, set()) | cands
    return {k: int(values[find(k)]) for k in parent if values[find(k)] != values[k]}


def _relabel(data: np.ndarray, geoms: np.ndarray, new_values: dict[int, int]) -> None:
    """Burn each polygon with its new value into ``data``."""
    from affine import Affine
    from rasterio.features import geometry_mask

    for k, v in new_values.items():
        c0, r0, c1, r1 = (int(round(b)) for b in geoms[k].bounds)
        inside = ~geometry_mask([geoms[k]], out_shape=(r1 - r0, c1 - c0),
                                transform=Affine.translation(c0, r0))
        data[r0:r1, c0:c1][inside] = v


def sieve(data: np.ndarray, nodata: set[int], min_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge patches under ``min_px`` pixels into their neighbours, in place; the polygons
    (pixel coordinates) and values of the result."""
    from rasterio.features import sieve as gdal_sieve

    if min_px > 1:
        gdal_sieve(data, min_px, out=data, mask=_valid(data, nodata), connectivity=CONNECTIVITY)
    geoms, values = _pixel_polygons(data)
    for _ in range(3):  # one round leaves nothing to merge; the loop is a safeguard
        new_values = _merge_small(geoms, values, nodata, min_px) if min_px > 1 else {}
        if not new_values:
            break
        log.info("merging %d small patches GDAL's sieve left", len(new_values))
        _relabel(data, geoms, new_values)
        geoms, values = _pixel_polygons(data)
    return geoms, values


def _corner_is_node(data: np.ndarray, nodata: set[int], xy: np.ndarray) -> np.ndarray:
    """Whether three or four patch borders meet at pixel corners ``xy`` (column, row)."""
    h, w = data.shape

    def pixel(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        v = np.full(r.shape, -1, dtype=np.int32)  # outside the map: no data
        v[inside] = data[r[inside], c[inside]]
        v[np.isin(v, list(nodata))] = -1
        return v

    x, y = xy[:, 0], xy[:, 1]
    p, q, r, s = pixel(y - 1, x - 1), pixel(y - 1, x), pixel(y, x - 1), pixel(y, x)
    return ((p != q).astype(np.int8) + (r != s) + (p != r) + (q != s)) >= 3


def _canonical_polygons(geoms: np.ndarray, data: np.ndarray, nodata: set[int], transform: Any) -> np.ndarray:
    """Pixel-space polygons georeferenced, with a vertex at every turn and every node and
    nowhere else, so that neighbours share their borders vertex for vertex."""
    import shapely

    _, coords, (ring_off, poly_off) = shapely.to_ragged_array(geoms)
    coords = coords.round().astype(np.int32)
    n_rings = len(ring_off) - 1
    is_start = np.ones(len(coords), dtype=bool)
    is_start[ring_off[1:] - 1] = False  # a ring's closing point starts no segment
    start = np.flatnonzero(is_start)
    delta = coords[start + 1] - coords[start]
    length = np.abs(delta).sum(axis=1)  # edges are axis-aligned
    seg = np.repeat(np.arange(len(start), dtype=np.int32), length)
    k = (np.arange(len(seg)) - np.repeat(np.cumsum(length) - length, length)).astype(np.int32)
    step = np.sign(delta).astype(np.int8)[seg]
    pts = coords[start][seg] + k[:, None] * step  # every pixel corner along the rings
    ring = np.repeat(np.arange(n_rings, dtype=np.int32), np.diff(ring_off) - 1)[seg]
    counts = np.bincount(ring, minlength=n_rings)
    first = (np.cumsum(counts) - counts)[ring]
    prev = np.arange(len(pts)) - 1
    wrap = prev < first
    prev[wrap] = (first + counts[ring] - 1)[wrap]
    keep = np.any(step[prev] != step, axis=1)
    keep[~keep] = _corner_is_node(data, nodata, pts[~keep])
    kept, kept_ring = pts[keep], ring[keep]
    kc = np.bincount(kept_ring, minlength=n_rings)
    closing = kept[np.cumsum(kc) - kc]
    new = np.insert(kept, np.cumsum(kc), closing, axis=0).astype(np.float64)
    a, b, c, d, e, f = transform[:6]
    xy = np.column_stack([a * new[:, 0] + b * new[:, 1] + c, d * new[:, 0] + e * new[:, 1] + f])
    new_ring_off = np.concatenate([[0], np.cumsum(kc + 1)])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (new_ring_off, poly_off))


def georeference(geoms: np.ndarray, data: np.ndarray, nodata: set[int], transform: Any,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """:func:`_canonical_polygons` in batches of at most ``NODE_BATCH`` pixel edges."""
    import shapely

    if not len(geoms):
        return geoms
    batch = np.cumsum(shapely.length(geoms)) // NODE_BATCH
    out = []
    for b in np.unique(batch):
        out.append(_canonical_polygons(geoms[batch == b], data, nodata, transform))
        if progress:
            progress(int((batch == b).sum()))
    return np.concatenate(out)
