"""Real change on a synthetic world: what turned between two dates, and the truth of it.

A world's ground is the same on every date; ``apply_changes`` turns patches of it on
the later date, drawn from the world's seed and a change set (``--changes K``), so that
every product of that date in the world shows the same change:

* urban growth: fields next to the town become urban fabric (roofs, asphalt, gardens);
* construction sites: fields or forest near the town become bare soil, sand and spoil;
* felled forest: a forest patch cleared to bare soil and grass (agricultural);
* a new water body: a field flooded (a reservoir or a pit filled with water).

Only pixels of the "from" class inside a patch change, so each patch is one transition.
The truth of the change (from -> to codes of :mod:`s2pipe.raster.transitions`) and its
polygons are written by the later product (:func:`write_change_truth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.synth import terrain as T
from s2pipe.synth.landscape import Layers

CHANGE_TRUTH_NAME = "change_truth.tif"
CHANGES_NAME = "changes.gpkg"

#: kind: (from classes, to class, materials with their shares, radius range px, per 10^6 px of world)
KINDS: dict[str, tuple[tuple[int, ...], int, tuple[tuple[str, float], ...], tuple[float, float], float]] = {
    "urban growth": ((T.AGRI,), T.URBAN, (("roof_red", .35), ("roof_grey", .25), ("asphalt", .2), ("grass", .2)),
                     (14.0, 34.0), 5.0),
    "construction site": ((T.AGRI, T.FOREST), T.MINE, (("bare_soil", .45), ("sand", .35), ("spoil", .2)),
                          (7.0, 18.0), 4.0),
    "felled forest": ((T.FOREST,), T.AGRI, (("bare_soil", .6), ("grass", .4)), (10.0, 26.0), 3.0),
    "new water body": ((T.AGRI,), T.WATER, (("water", .8), ("water_turbid", .2)), (8.0, 20.0), 1.5),
}


@dataclass(frozen=True)
class Patch:
    kind: str
    rows: slice
    cols: slice
    mask: np.ndarray  # bool, on the window: the pixels that changed
    before: np.ndarray  # uint8 classes there before (on the window)


def _near(classes: np.ndarray, target: int, at: tuple[int, int], radius: int) -> bool:
    r, c = at
    h, w = classes.shape
    win = classes[max(0, r - radius):min(h, r + radius), max(0, c - radius):min(w, c + radius)]
    return bool((win == target).any())


def apply_changes(layers: Layers, seed: int, changes: int) -> list[Patch]:
    """Turn patches of the world's ``layers`` in place for change set ``changes`` (> 0);
    the patches, with the classes they had."""
    rng = np.random.default_rng([seed, 7919, changes])
    h, w = layers.classes.shape
    area = h * w / 1e6
    patches: list[Patch] = []
    for kind, (sources, target, materials, radii, density) in KINDS.items():
        names, shares = zip(*materials)
        cover = np.array([T.M[n] for n in names], dtype=np.uint8)
        probs = np.array(shares) / sum(shares)
        wanted = max(1, round(density * area))
        for _ in range(wanted):
            for _attempt in range(60):
                r, c = int(rng.integers(0, h)), int(rng.integers(0, w))
                if layers.classes[r, c] not in sources or not layers.valid[r, c]:
                    continue
                if kind in ("urban growth", "construction site") and not _near(layers.classes, T.URBAN, (r, c), 90):
                    continue
                radius = float(rng.uniform(*radii))
                win, rr = T.blob(rng, (h, w), r, c, radius, float(rng.uniform(0.6, 1.5)), 0.3)
                inside = (rr < 1.0) & np.isin(layers.classes[win], sources) & layers.valid[win]
                if inside.sum() < 20:
                    continue
                before = layers.classes[win].copy()
                layers.classes[win][inside] = target
                layers.cover[win][inside] = rng.choice(cover, int(inside.sum()), p=probs)
                layers.gain[win][inside] = rng.uniform(0.9, 1.1, int(inside.sum())).astype(np.float32)
                patches.append(Patch(kind, win[0], win[1], inside, before))
                break
    return patches


def before_classes(layers: Layers, patches: list[Patch]) -> np.ndarray:
    """The world's classes as they were before ``patches`` (a copy)."""
    out = layers.classes.copy()
    for p in reversed(patches):
        out[p.rows, p.cols][p.mask] = p.before[p.mask]
    return out


def write_change_truth(tif: Path, gpkg: Path, before: np.ndarray, after: np.ndarray, *,
                       origin: tuple[float, float], epsg: int) -> int:
    """The change truth raster ``tif`` (codes of before -> after, with its legend) and
    ``gpkg`` (its change polygons with from/to names and hectares); the number of polygons."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import shapes
    from rasterio.transform import from_origin
    from shapely.geometry import shape

    from s2pipe.provenance import Provenance
    from s2pipe.raster import profiles
    from s2pipe.raster.style import apply_legend, write_sidecars
    from s2pipe.raster.transitions import Transitions

    t = Transitions(DEFAULT_LEGEND)
    codes = t.encode(before, after)
    legend = t.legend(np.unique(codes))
    transform = from_origin(*origin, 10, 10)
    tags = Provenance(legend=t.classes, before="synth truth, earlier date", after="synth truth, later date").tags()
    with profiles.written(tif), \
            rasterio.open(tif, "w", **profiles.CLASS_RASTER, width=codes.shape[1], height=codes.shape[0],
                          count=1, crs=f"EPSG:{epsg}", transform=transform) as dst:
        dst.write(codes, 1)
        apply_legend(dst, legend)
        dst.update_tags(**tags)
    write_sidecars(tif, legend)
    changed = t.changed(codes)
    geoms, values = [], []
    for geom, value in shapes(codes, mask=changed, connectivity=4, transform=transform):
        geoms.append(shape(geom))
        values.append(int(value))
    pairs = [t.decode(v) for v in values]
    gdf = gpd.GeoDataFrame({"class": np.array(values, dtype=np.int32), "name": [t.name(v) for v in values],
                            "from": [t.classes[b - 1].name for b, _ in pairs],
                            "to": [t.classes[a - 1].name for _, a in pairs],
                            "area_ha": [g.area / 10_000 for g in geoms]},
                           geometry=geoms, crs=f"EPSG:{epsg}")
    gdf.to_file(gpkg, layer="changes", driver="GPKG")
    return len(gdf)
