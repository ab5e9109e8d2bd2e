"""``s2pipe search`` against pystac-client searching the same local STAC API directly.

Builds Items of 4 MGRS tiles (2 x 2) on a date every ``--every`` days of one summer (the
footprints of one synthetic product shifted, its COGs shared; a reprocessed twin of one
tile's scenes in a second collection), serves them with ``rustac serve`` (in-memory
backend) on 127.0.0.1, then runs, once each in this run:

* pystac-client: ``Client.open`` + ``search(...).items()``, the same collections, area,
  dates and page size, nothing else;
* ``search_scenes`` (what ``s2pipe search`` calls), without writing, ranking by the scenes'
  cloud (``--no-aoi-cloud``), so both make the same requests plus s2pipe's choices;
* ``search_scenes`` with the cloud over the area read from each kept scene's SCL (the
  default), and writing the chosen Items and products.txt.

Requests are counted as each client sends them. An untimed one-Item search warms the
server and the imports first. Prints one JSON object.

    python bench/bench_search.py --page-size 20 --every 3
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TILES = {"33UXS": (0, 0), "33UYS": (1, 0), "33UXT": (0, 1), "33UYT": (1, 1)}


def items(root: Path, every: int) -> tuple[list[dict], tuple[float, float, float, float]]:
    from s2pipe.synth.product import synth_product

    p = synth_product(root / "base", size=256, format="stac")
    base = json.loads(Path(p.safe_path).read_text())
    for asset in base["assets"].values():
        asset["href"] = str(Path(p.safe_path).parent / asset["href"])
    w, s, e, n = base["bbox"]
    dx, dy = e - w, n - s
    out = []
    day, k = dt.date(2018, 6, 1), 0
    while day <= dt.date(2018, 8, 31):
        compact = day.strftime("%Y%m%d")
        for tile, (i, j) in TILES.items():
            for c1 in ((False, True) if tile == "33UXS" else (False,)):
                v = copy.deepcopy(base)
                v["id"] = f"S2B_{tile}_{compact}_0_L2A" + ("-c1" if c1 else "")
                v["collection"] = "sentinel-2-c1-l2a" if c1 else "sentinel-2-l2a"
                ring = [[x + i * dx, y + j * dy] for x, y in base["geometry"]["coordinates"][0]]
                v["geometry"] = {"type": "Polygon", "coordinates": [ring]}
                v["bbox"] = [w + i * dx, s + j * dy, e + i * dx, n + j * dy]
                props = v["properties"]
                props.update({"datetime": f"{day.isoformat()}T09:50:29Z", "s2:mgrs_tile": tile,
                              "grid:code": f"MGRS-{tile}", "mgrs:latitude_band": tile[2],
                              "mgrs:grid_square": tile[3:], "eo:cloud_cover": float((k * 37) % 90)})
                uri = props["s2:product_uri"].replace("20180607T", f"{compact}T").replace("T33UYS", f"T{tile}")
                props["s2:product_uri"] = uri.replace("_N0208_", "_N0509_") if c1 else uri
                props["s2:processing_baseline"] = "05.09" if c1 else props["s2:processing_baseline"]
                out.append(v)
                k += 1
        day += dt.timedelta(days=every)
    inset = 0.1
    area = (w + inset * dx, s + inset * dy, e + (1 - inset) * dx, n + (1 - inset) * dy)
    return out, area


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page-size", type=int, default=20)
    ap.add_argument("--every", type=int, default=3, help="days between the dates of a tile")
    args = ap.parse_args()

    from pystac_client import Client
    from stac_api import serve_items

    from s2pipe.catalog.area import area_from_bbox
    from s2pipe.catalog.search import search_scenes

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        all_items, box = items(root, args.every)
        area = area_from_bbox(*box)
        collections = ["sentinel-2-c1-l2a", "sentinel-2-l2a"]
        first, last = dt.date(2018, 6, 1), dt.date(2018, 8, 31)
        with serve_items(all_items, root) as url:
            counted = {"n": 0}

            def count(request):  # noqa: ANN001, ANN202 - pystac-client's hook
                counted["n"] += 1

            warm = Client.open(url)  # untimed: the first connection and pystac's lazy imports
            list(warm.search(collections=collections, max_items=1).items())
            t = time.perf_counter()
            client = Client.open(url, request_modifier=count)
            direct = list(client.search(collections=collections, intersects=area.geometry.__geo_interface__,
                                        datetime=f"{first}T00:00:00Z/{last}T23:59:59Z",
                                        limit=args.page_size).items())
            t_direct = time.perf_counter() - t

            t = time.perf_counter()
            plain = search_scenes(area, dates=(first, last), catalog=url, collections=tuple(collections),
                                  out_dir=None, page_size=args.page_size, cloud_over_aoi=False)
            t_plain = time.perf_counter() - t

            t = time.perf_counter()
            full = search_scenes(area, dates=(first, last), catalog=url, collections=tuple(collections),
                                 out_dir=root / "found", page_size=args.page_size, per_tile=2)
            t_full = time.perf_counter() - t
    print(json.dumps({
        "items_served": len(all_items), "page_size": args.page_size,
        "pystac_client": {"items": len(direct), "requests": counted["n"], "seconds": round(t_direct, 3)},
        "s2pipe_search": {"items": plain.found, "chosen": len(plain.scenes), "duplicates": plain.duplicates,
                          "requests": plain.requests, "seconds": round(t_plain, 3),
                          "ratio_to_pystac_client": round(t_plain / t_direct, 3)},
        "s2pipe_search_aoi_cloud_and_write": {"chosen": len(full.scenes), "requests": full.requests,
                                              "seconds": round(t_full, 3),
                                              "ratio_to_pystac_client": round(t_full / t_direct, 3)},
    }, indent=1))


if __name__ == "__main__":
    main()
