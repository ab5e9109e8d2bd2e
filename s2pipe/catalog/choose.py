"""The choices among the scenes a search found.

1. :func:`drop_duplicates`: the same datatake over the same tile served twice (a
   reprocessed baseline, the same product in two collections) keeps the newest baseline.
2. :func:`best_per_tile`: the N best scenes of each MGRS tile: least cloud (over the area
   where measured, else the scene's), ties to the date nearest the target date.
3. :func:`drop_slivers`: a tile that adds less than ``sliver`` of the area to what the
   other tiles cover is dropped (tiles overlap by some 10 km; one that only touches the
   area there maps nothing the others do not).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from s2pipe.catalog.area import Area
from s2pipe.catalog.scenes import Candidate
from s2pipe.sentinel2.facts import baseline_number

#: A tile adding less than this share of the area to the others' coverage is a sliver.
SLIVER = 0.01


def _version(c: Candidate, order: Sequence[str]) -> tuple[float, int, str]:
    number = baseline_number(c.scene.baseline)
    rank = -order.index(c.scene.collection) if c.scene.collection in order else -len(order)
    return (float(number) if number is not None else -1.0, rank, c.scene.product)


def drop_duplicates(cands: Sequence[Candidate], collections: Sequence[str] = ()) -> tuple[list[Candidate], int]:
    """One candidate per product (:attr:`Candidate.product_key`): the newest baseline, then
    the collection listed first in ``collections``. Returns (kept, how many dropped)."""
    best: dict[tuple[str, str, str], Candidate] = {}
    for c in cands:
        key = c.product_key
        if key not in best or _version(c, collections) > _version(best[key], collections):
            best[key] = c
    kept = [c for c in cands if best[c.product_key] is c]
    return kept, len(cands) - len(kept)


def best_per_tile(cands: Sequence[Candidate], n: int | None, target: dt.date) -> list[Candidate]:
    """The ``n`` best candidates of each tile (all when ``n`` is None), best first: least
    :attr:`Scene.ranking_cloud`, then the date nearest ``target``, then the earlier date."""
    by_tile: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_tile[c.scene.tile].append(c)
    out: list[Candidate] = []
    for tile in sorted(by_tile):
        ranked = sorted(by_tile[tile], key=lambda c: (round(c.scene.ranking_cloud, 3),
                                                      abs((c.scene.date - target).days), c.scene.datetime))
        out.extend(ranked if n is None else ranked[:n])
    return out


def drop_slivers(cands: Sequence[Candidate], area: Area, sliver: float = SLIVER) -> tuple[list[Candidate], list[str]]:
    """Candidates without the tiles that add less than ``sliver`` of ``area`` to the other
    tiles' coverage, smallest first; a tile is never dropped if it is the only one. Returns
    (kept, the dropped tiles)."""
    from shapely import union_all

    whole = area.equal_area(area.geometry)
    if whole.area <= 0:
        return list(cands), []
    cover: dict[str, object] = {}
    for c in cands:
        if c.footprint is None:
            continue
        part = area.equal_area(c.footprint).intersection(whole)
        cover[c.scene.tile] = union_all([cover[c.scene.tile], part]) if c.scene.tile in cover else part
    dropped: list[str] = []
    for tile in sorted(cover, key=lambda t: (cover[t].area, t)):  # type: ignore[attr-defined]
        others = [g for t, g in cover.items() if t != tile and t not in dropped]
        if not others:
            break
        rest = union_all(others)
        gain = cover[tile].difference(rest).area / whole.area  # type: ignore[attr-defined]
        if gain < sliver:
            dropped.append(tile)
    return [c for c in cands if c.scene.tile not in dropped], sorted(dropped)
