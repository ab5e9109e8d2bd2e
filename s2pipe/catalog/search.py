"""``s2pipe search``: an area and a time span to the scenes that map it.

The catalogue is searched (:mod:`s2pipe.catalog.catalogues`), every Item is checked against
the area, the dates and the cloud limit, then the choices of :mod:`s2pipe.catalog.choose`
are made. The chosen Items are written into one folder, with asset hrefs made absolute
(and signed where the catalogue needs it), and ``products.txt`` listing them, which
``prepare --products``, ``predict`` and the workflows read as it is. The folder is written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from s2pipe.catalog.area import Area
from s2pipe.catalog.catalogues import Catalogue, local_items, open_api, resolve_catalogue, sign_items
from s2pipe.catalog.choose import SLIVER, best_per_tile, drop_duplicates, drop_slivers
from s2pipe.catalog.scenes import Candidate, Scene, asset_href, candidate, cloud_over_area
from s2pipe.errors import NoScenesError, OptionError
from s2pipe.outputs import atomic_output, check_writable

log = logging.getLogger(__name__)

PRODUCTS_FILE = "products.txt"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_dates(text: str) -> tuple[dt.date, dt.date]:
    """``2018-06-01/2018-08-31`` (or one day ``2018-06-07``) as (first, last) day."""
    parts = [p.strip() for p in text.split("/")]
    if not 1 <= len(parts) <= 2 or not all(_DATE.fullmatch(p) for p in parts):
        raise OptionError(f"--dates {text!r}: give FIRST/LAST as YYYY-MM-DD/YYYY-MM-DD, e.g. 2018-06-01/2018-08-31")
    try:
        days = [dt.date.fromisoformat(p) for p in parts]
    except ValueError as exc:
        raise OptionError(f"--dates {text!r}: {exc}") from None
    first, last = days[0], days[-1]
    if last < first:
        raise OptionError(f"--dates {text!r}: the last day is before the first; give FIRST/LAST in order")
    return first, last


@dataclass
class SearchResult:
    """The chosen ``scenes`` (best first within each tile); where they were written
    (``out_dir``, ``products_file``; None for a dry search); what was searched; Items the
    catalogue returned (``found``) and those left after the area/date/cloud checks
    (``matching``); duplicates dropped; sliver tiles dropped; HTTP requests made."""

    scenes: list[Scene]
    out_dir: Path | None
    products_file: Path | None
    catalogue: str
    searched: str
    found: int
    matching: int
    duplicates: int
    dropped_tiles: list[str] = field(default_factory=list)
    requests: int = 0


def _matches(c: Candidate, area: Area, first: dt.date, last: dt.date, max_cloud: float | None) -> bool:
    if c.footprint is None or not c.footprint.intersects(area.geometry):
        return False
    if not first <= c.scene.date <= last:
        return False
    return max_cloud is None or (c.scene.cloud is not None and c.scene.cloud <= max_cloud)


def _described(area: Area, catalogue: str, collections: tuple[str, ...], first: dt.date, last: dt.date,
               max_cloud: float | None) -> str:
    where = f"{catalogue}" + (f" ({', '.join(collections)})" if collections else "")
    cloud = f", cloud cover <= {max_cloud:g}%" if max_cloud is not None else ""
    return f"{where} over {area.source}, {first.isoformat()} to {last.isoformat()}{cloud}"


def search_scenes(area: Area, *, dates: tuple[dt.date, dt.date], catalog: str, out_dir: str | os.PathLike | None,
                  max_cloud: float | None = None, per_tile: int | None = None, target_date: dt.date | None = None,
                  collections: tuple[str, ...] = (), cloud_over_aoi: bool = True, sliver: float = SLIVER,
                  page_size: int = 100, retries: int = 4, backoff: float = 1.0,
                  overwrite: bool = False) -> SearchResult:
    """Search ``catalog`` (a known name, an API URL or a local folder/catalogue) for
    Sentinel-2 L2A scenes over ``area`` within ``dates`` (first, last day, inclusive),
    make the choices, and write the chosen Items and ``products.txt`` into ``out_dir``
    (nothing written when None). Raises :class:`NoScenesError` naming the search when
    nothing is left, :class:`CatalogError` when the catalogue cannot be searched.
    """
    first, last = dates
    target = target_date or first + (last - first) / 2
    if out_dir is not None:
        check_writable(out_dir, overwrite=overwrite)
    where = resolve_catalogue(catalog, collections)
    requests = 0
    if isinstance(where, Catalogue):
        api = open_api(where, retries=retries, backoff=backoff)
        window = f"{first.isoformat()}T00:00:00Z/{last.isoformat()}T23:59:59Z"
        items = list(api.items(intersects=area.geometry.__geo_interface__, datetime=window, max_cloud=max_cloud,
                               limit=page_size))
        requests, order, signing, name = api.requests, where.collections, where.signing, where.name
    else:
        items = list(local_items(where))
        order, signing, name = collections, None, str(where)
    searched = _described(area, name, order, first, last, max_cloud)
    cands = [candidate(i, area) for i in items]
    matching = [c for c in cands if _matches(c, area, first, last, max_cloud)
                and (not collections or c.scene.collection in collections or isinstance(where, Catalogue))]
    if not matching:
        raise NoScenesError(f"no Sentinel-2 L2A scene found in {searched} ({len(items)} Item(s) returned); widen "
                            "the dates, raise --max-cloud or check the area")
    kept, duplicates = drop_duplicates(matching, order)
    signed = sign_items([c.item for c in kept], signing)
    for c, item in zip(kept, signed):
        c.item = item
        if cloud_over_aoi:
            c.scene.aoi_cloud = cloud_over_area(item, area)
    chosen = best_per_tile(kept, per_tile, target)
    chosen, dropped_tiles = drop_slivers(chosen, area, sliver)
    log.info("%d Item(s) returned, %d matching, %d duplicate(s) dropped, %d chosen", len(items), len(matching),
             duplicates, len(chosen))
    result = SearchResult([c.scene for c in chosen], None, None, name, searched, len(items), len(matching),
                          duplicates, dropped_tiles, requests)
    if out_dir is None:
        return result
    out = Path(out_dir)
    with atomic_output(out, overwrite=overwrite, directory=True) as tmp:
        lines = [f"# s2pipe search: {searched}"]
        for c in chosen:
            name_json = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', c.item.id)}.json"
            for asset in c.item.assets.values():  # absolute, so that the Item reads from any folder
                asset.href = asset_href(asset)
            data = c.item.to_dict(include_self_link=False, transform_hrefs=False)
            data["links"] = [lk for lk in data.get("links", []) if lk.get("rel") not in ("self", "root", "parent")]
            (tmp / name_json).write_text(json.dumps(data, indent=1), encoding="utf-8")
            c.scene.item_path = str(out / name_json)
            lines.append(name_json)
        (tmp / PRODUCTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    result.out_dir, result.products_file = out, out / PRODUCTS_FILE
    return result


def scenes_table(result: SearchResult) -> str:
    """The chosen scenes as a text table (tile, date, cloud, cloud over the area, baseline,
    area coverage, Item), then what was dropped."""
    rows = [("tile", "date", "cloud %", "area cloud %", "baseline", "covers", "item")]
    for s in result.scenes:
        rows.append((s.tile, s.date.isoformat(), "-" if s.cloud is None else f"{s.cloud:.1f}",
                     "-" if s.aoi_cloud is None else f"{s.aoi_cloud:.1f}", s.baseline or "?",
                     f"{s.coverage * 100:.0f}%", s.item_path or s.item_id))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    notes = [f"{len(result.scenes)} scene(s) chosen of {result.matching} matching ({result.found} returned by "
             f"{result.catalogue}, {result.requests} request(s))"]
    if result.duplicates:
        notes.append(f"{result.duplicates} duplicate product(s) dropped (an older baseline or another collection)")
    if result.dropped_tiles:
        notes.append(f"tile(s) {', '.join(result.dropped_tiles)} dropped: they touch the area only where others "
                     "cover it")
    if result.products_file:
        notes.append(f"Items and product list: {result.products_file}")
    return "\n".join(lines + notes)
