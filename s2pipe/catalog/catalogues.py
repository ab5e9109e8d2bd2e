"""Where scenes are searched: the public STAC APIs known by name, any API by URL, or a
local folder / static catalogue of Items.

APIs are searched with pystac-client (paging through ``next`` links, whatever form the
server gives them: stac-server's ``next`` tokens, pgstac's ``token=next:...``, ``skip``
offsets), with a CQL2 cloud filter and a sort by cloud cover where the API declares the
``filter`` and ``sort`` conformance classes; :mod:`s2pipe.catalog.search` checks every
Item against the area, dates and cloud limit itself as well, so a server that ignores a
filter cannot let a wrong scene through. Requests are retried with exponential backoff on
HTTP 429 and 5xx (honouring ``Retry-After``) and on lost connections; then one
:class:`CatalogError` names the URL.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2pipe.errors import CatalogError, InputNotFoundError

log = logging.getLogger(__name__)

#: HTTP statuses retried with backoff: rate limiting and server errors.
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Catalogue:
    """A STAC API: its root URL, the collections of Sentinel-2 L2A searched in it (in order
    of preference for the same product), the sort field it understands, its signing."""

    name: str
    url: str
    collections: tuple[str, ...]
    sort_field: str = "eo:cloud_cover"
    signing: str | None = None


#: The public catalogues known by name. Earth Search serves each product in its newer
#: ``sentinel-2-c1-l2a`` collection (reprocessed, baseline 05.xx) and in the older one.
KNOWN: dict[str, Catalogue] = {
    "earth-search": Catalogue("earth-search", "https://earth-search.aws.element84.com/v1",
                              ("sentinel-2-c1-l2a", "sentinel-2-l2a"), sort_field="properties.eo:cloud_cover"),
    "planetary-computer": Catalogue("planetary-computer", "https://planetarycomputer.microsoft.com/api/stac/v1",
                                    ("sentinel-2-l2a",), signing="planetary-computer"),
    "cdse": Catalogue("cdse", "https://stac.dataspace.copernicus.eu/v1", ("sentinel-2-l2a",)),
}


def resolve_catalogue(spec: str, collections: tuple[str, ...] = ()) -> Catalogue | Path:
    """The catalogue ``spec`` names: a known name, an ``http(s)://`` URL of a STAC API
    (collection ``sentinel-2-l2a`` unless ``collections``), or a local folder / catalogue
    file (a :class:`Path`)."""
    if spec in KNOWN:
        cat = KNOWN[spec]
        return Catalogue(cat.name, cat.url, collections or cat.collections, cat.sort_field, cat.signing)
    if spec.lower().startswith(("http://", "https://")):
        signing = "planetary-computer" if "planetarycomputer.microsoft.com" in spec else None
        return Catalogue(spec.rstrip("/"), spec.rstrip("/"), collections or ("sentinel-2-l2a",), signing=signing)
    path = Path(spec)
    if not path.exists():
        raise InputNotFoundError(f"catalogue {spec}: not a known catalogue ({', '.join(KNOWN)}), not an "
                                 "http(s) URL and no such folder or file")
    return path


class _Counter:
    """Counts the requests a client sends (retries below it are not counted)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: Any) -> None:
        self.requests += 1
        log.debug("%s %s", request.method, request.url)


def _api_error(exc: Exception, url: str, tries: int) -> CatalogError:
    status = getattr(exc, "status_code", None)
    text = " ".join(str(exc).split())
    if status:
        return CatalogError(f"{url} answered HTTP {status} ({text[:120]}) after {tries} tries; the catalogue "
                            "may be down or refusing the search: try again later")
    if "Max retries" in text or "Connection" in text or "timed out" in text.lower():
        reason = "timed out" if "timed out" in text.lower() else "no connection"
        return CatalogError(f"{url} does not answer ({reason}, {tries} tries); check the URL and the network")
    return CatalogError(f"{url}: the search failed ({text[:160]})")


@dataclass
class ApiSearch:
    """An open API client and the counter of its requests."""

    client: Any
    counter: _Counter
    catalogue: Catalogue
    tries: int

    @property
    def requests(self) -> int:
        return self.counter.requests

    def items(self, *, intersects: dict[str, Any], datetime: str, max_cloud: float | None,
              limit: int) -> Iterator[Any]:
        """Every Item of the search, page after page (pystac Items)."""
        from pystac_client.exceptions import APIError
        from pystac_client.warnings import DoesNotConformTo

        kwargs: dict[str, Any] = {}
        if max_cloud is not None and self.client.conforms_to("FILTER"):
            kwargs.update(filter={"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]},
                          filter_lang="cql2-json")
        if self.client.conforms_to("SORT"):
            kwargs["sortby"] = [{"field": self.catalogue.sort_field, "direction": "asc"}]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DoesNotConformTo)
                search = self.client.search(collections=list(self.catalogue.collections), intersects=intersects,
                                            datetime=datetime, limit=limit, **kwargs)
                yield from search.items()
        except APIError as exc:
            raise _api_error(exc, self.catalogue.url, self.tries) from None


def open_api(catalogue: Catalogue, *, retries: int = 4, backoff: float = 1.0, timeout: float = 60.0) -> ApiSearch:
    """Open ``catalogue``'s landing page; raise :class:`CatalogError` if it does not answer
    after ``retries`` retries (waits ``backoff * 2**n`` seconds) or is not a STAC API."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, backoff_factor=backoff, status_forcelist=RETRY_STATUSES, allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    counter = _Counter()
    io = StacApiIO(max_retries=retry)
    try:  # Client.open hands its own request_modifier and timeout to the IO: give them there
        client = Client.open(catalogue.url, stac_io=io, request_modifier=counter, timeout=timeout)
    except APIError as exc:
        raise _api_error(exc, catalogue.url, retries + 1) from None
    except (ValueError, KeyError) as exc:
        raise CatalogError(f"{catalogue.url} is not a STAC API landing page ({exc})") from None
    return ApiSearch(client, counter, catalogue, retries + 1)


def local_items(path: Path) -> Iterator[Any]:
    """The Items of a local catalogue: a catalogue or collection JSON (walked through its
    links), a folder holding one (``catalog.json``/``collection.json``), an ItemCollection
    file, or a folder of Item files (searched recursively). Asset hrefs are made absolute."""
    import pystac

    for name in ("catalog.json", "collection.json"):
        if path.is_dir() and (path / name).is_file():
            path = path / name
            break
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            try:
                obj = pystac.read_file(str(file))
            except (pystac.STACError, ValueError, KeyError, TypeError):
                log.debug("%s: not a STAC object, skipped", file)
                continue
            if isinstance(obj, pystac.Item):
                obj.make_asset_hrefs_absolute()
                yield obj
        return
    try:
        if path.suffix.lower() == ".json" and '"FeatureCollection"' in path.read_text(encoding="utf-8")[:4000]:
            collection = pystac.ItemCollection.from_file(str(path))
            for item in collection:
                item.set_self_href(str(path.resolve()))
                item.make_asset_hrefs_absolute()
                yield item
            return
        root = pystac.read_file(str(path))
    except (pystac.STACError, ValueError, KeyError, TypeError, OSError) as exc:
        raise CatalogError(f"{path}: not a STAC catalogue, collection or item collection ({exc})") from None
    if isinstance(root, pystac.Item):
        root.make_asset_hrefs_absolute()
        yield root
        return
    if not isinstance(root, pystac.Catalog):
        raise CatalogError(f"{path}: a {type(root).__name__}, not a catalogue of Items")
    for item in root.get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        yield item


def sign_items(items: list[Any], signing: str | None) -> list[Any]:
    """``items`` with signed asset hrefs where the catalogue needs it (Planetary Computer)."""
    if signing != "planetary-computer" or not items:
        return items
    try:
        import planetary_computer
    except ImportError:
        raise CatalogError("Planetary Computer assets must be signed and the planetary-computer package is "
                           "not installed: pip install 's2pipe[planetary-computer]'") from None
    try:
        return [planetary_computer.sign(item) for item in items]
    except Exception as exc:  # noqa: BLE001 - requests/pydantic errors of the token service
        raise CatalogError(f"Planetary Computer: signing the assets failed ({' '.join(str(exc).split())[:160]}); "
                           f"check the network or set PC_SDK_SUBSCRIPTION_KEY") from None

