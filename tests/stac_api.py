"""STAC API servers on 127.0.0.1 for the search tests.

- :func:`serve_items`: a real STAC API (``rustac serve``, its in-memory backend, from the
  ``test`` extra) loaded with Items, started as a process; stopped by the context manager.
- :class:`CannedApi`: a small HTTP server in a thread that answers each path with the
  responses given (landing page, search pages in the forms of the public catalogues,
  HTTP 429 / 5xx), and records the requests it got.
- :func:`synth_items`: Items of synthetic products (``synth --format stac``), several tiles,
  dates and baselines, and variants of them with other dates and cloud covers.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, wait_for_port

#: Upper-left corners (EPSG:32633) of two neighbouring synthetic tiles, 33UXS and 33UYS.
WEST_ORIGIN, EAST_ORIGIN = (697440.0, 5700000.0), (700000.0, 5700000.0)
WORLD = (697440.0, 5697440.0, 702560.0, 5700000.0)
SIZE = 256


def _rustac() -> str:
    exe = Path(sys.executable).parent / "rustac"
    found = str(exe) if exe.exists() else shutil.which("rustac")
    if not found:
        pytest.skip("rustac (the test extra) is not installed: no local STAC API server")
    return found


@contextmanager
def serve_items(items: list[dict[str, Any]], folder: Path) -> Iterator[str]:
    """The URL of a ``rustac serve`` STAC API holding ``items`` (collections made for them)."""
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    port = free_port()
    proc = subprocess.Popen([_rustac(), "serve", str(path), "--create-collections", "-a", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(proc, port):
            pytest.fail("rustac serve did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


Responder = Callable[[str, str, dict[str, Any] | None], tuple[int, dict[str, str], Any]]


class CannedApi:
    """An HTTP server on 127.0.0.1 whose answers come from ``respond(method, path_and_query,
    json_body)`` -> (status, headers, JSON value); ``requests`` records what it was sent."""

    def __init__(self, respond: Responder) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append((method, self.path, body))
                status, headers, value = respond(method, self.path, body)
                data = json.dumps(value).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CannedApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def landing(url: str, conforms: tuple[str, ...] = ("core", "item-search")) -> dict[str, Any]:
    """A landing page of a STAC API at ``url`` declaring ``conforms`` classes."""
    uris = {"core": "https://api.stacspec.org/v1.0.0/core", "item-search": "https://api.stacspec.org/v1.0.0/item-search",
            "filter": "https://api.stacspec.org/v1.0.0/item-search#filter",
            "cql2-json": "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
            "sort": "https://api.stacspec.org/v1.0.0/item-search#sort"}
    return {"type": "Catalog", "id": "test", "stac_version": "1.0.0", "description": "test",
            "conformsTo": [uris[c] for c in conforms],
            "links": [{"rel": "self", "href": url}, {"rel": "root", "href": url},
                      {"rel": "search", "href": f"{url}/search", "method": "GET", "type": "application/geo+json"},
                      {"rel": "search", "href": f"{url}/search", "method": "POST", "type": "application/geo+json"}]}


def synth_items(root: Path) -> dict[str, Any]:
    """Items of real synthetic products and variants of them, as plain dicts with
    absolute asset hrefs: ``"products"`` (name -> SynthResult), ``"items"`` (all Items)."""
    from s2pipe.synth.product import synth_product

    common = dict(world=WORLD, world_epsg=32633, size=SIZE, seed=0, format="stac")
    specs = {"w0607": dict(origin=WEST_ORIGIN), "e0607": dict(origin=EAST_ORIGIN),
             "w0617": dict(origin=WEST_ORIGIN, date="2018-06-17"), "e0617": dict(origin=EAST_ORIGIN, date="2018-06-17"),
             "w0607-n0509": dict(origin=WEST_ORIGIN, baseline="05.09")}
    products = {k: synth_product(root / k, **common, **v) for k, v in specs.items()}  # type: ignore[arg-type]
    items: dict[str, dict[str, Any]] = {}
    for key, p in products.items():
        item = json.loads(Path(p.safe_path).read_text())
        for asset in item["assets"].values():
            asset["href"] = str(Path(p.safe_path).parent / asset["href"])
        items[key] = item
    items["w0607-n0509"]["collection"] = "sentinel-2-c1-l2a"  # the reprocessed twin, in another collection
    items["w0607-n0509"]["id"] += "-c1"
    clouds = {"w0607": 30.0, "e0607": 12.0, "w0617": 8.0, "e0617": 40.0, "w0607-n0509": 30.0}
    for key, cloud in clouds.items():
        items[key]["properties"]["eo:cloud_cover"] = cloud
    # other dates of the same ground (the same COGs), to page through and rank
    for day, cloud in (("2018-06-27", 8.0), ("2018-07-07", 55.0), ("2018-07-17", 3.0), ("2018-07-27", 18.0)):
        for side in ("w", "e"):
            v = copy.deepcopy(items[f"{side}0607"])
            compact = day.replace("-", "")
            v["id"] = v["id"].replace("20180607", compact)
            v["properties"]["datetime"] = f"{day}T09:50:29Z"
            v["properties"]["s2:product_uri"] = v["properties"]["s2:product_uri"].replace("20180607T", f"{compact}T")
            v["properties"]["eo:cloud_cover"] = cloud + (1.0 if side == "e" else 0.0)
            items[f"{side}{compact[4:]}"] = v
    return {"products": products, "items": list(items.values()), "by_key": items}
