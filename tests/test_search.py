"""s2pipe search against a real STAC API on 127.0.0.1 (rustac serve, in-memory backend),
and against canned servers for what rustac does not do (CQL2 filter and sort conformance,
HTTP 429 / 5xx, the paging forms of the public catalogues)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from click.testing import CliRunner
from shapely.geometry import box
from stac_api import CannedApi, free_port, landing, serve_items, synth_items

from cli import cli
from s2pipe.catalog.area import area_from_bbox, read_area
from s2pipe.catalog.catalogues import resolve_catalogue, sign_items
from s2pipe.catalog.choose import drop_slivers
from s2pipe.catalog.scenes import candidate
from s2pipe.catalog.search import PRODUCTS_FILE, parse_dates, search_scenes
from s2pipe.errors import AreaError, CatalogError, OptionError, RemoteError
from s2pipe.sentinel2.reader import product_info, read_product_list

SUMMER = (dt.date(2018, 6, 1), dt.date(2018, 8, 31))
BOTH = ("sentinel-2-c1-l2a", "sentinel-2-l2a")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synth_items(tmp_path_factory.mktemp("items"))


@pytest.fixture(scope="module")
def api(synth, tmp_path_factory):
    with serve_items(synth["items"], tmp_path_factory.mktemp("api")) as url:
        yield url


@pytest.fixture(scope="module")
def area(synth):
    """Both tiles, a little inside their outer edges."""
    w = synth["by_key"]["w0607"]["bbox"]
    e = synth["by_key"]["e0607"]["bbox"]
    return area_from_bbox(w[0] + 0.002, max(w[1], e[1]) + 0.002, e[2] - 0.002, min(w[3], e[3]) - 0.002)


def _by_tile(result):
    out: dict[str, list[str]] = {}
    for s in result.scenes:
        out.setdefault(s.tile, []).append(s.date.isoformat())
    return out


# ------------------------------------------------------------------ the real server
def test_search_pages_through_the_server_and_drops_the_older_baseline(api, area, tmp_path):
    res = search_scenes(area, dates=SUMMER, catalog=api, collections=BOTH, out_dir=tmp_path / "found",
                        page_size=2, cloud_over_aoi=False)
    assert res.found == 13 and res.matching == 13 and res.duplicates == 1
    assert res.requests >= 1 + 7  # the landing page and 7 pages of 2 Items
    assert len(res.scenes) == 12
    twin = [s for s in res.scenes if s.tile == "33UXS" and s.date == dt.date(2018, 6, 7)]
    assert [s.baseline for s in twin] == ["05.09"] and twin[0].collection == "sentinel-2-c1-l2a"
    listed = read_product_list(res.products_file)
    assert len(listed) == 12 and all(p.is_file() for p in listed)
    assert (tmp_path / "found" / PRODUCTS_FILE).read_text().startswith("# s2pipe search: ")
    info = product_info(listed[0])  # what prepare and predict read, as written
    assert info.tile in ("33UXS", "33UYS") and all(Path(f).is_file() for f in info.band_files.values())


def test_per_tile_keeps_the_least_cloudy_and_the_server_ignoring_the_filter_lets_nothing_through(api, area):
    res = search_scenes(area, dates=SUMMER, catalog=api, out_dir=None, per_tile=1, cloud_over_aoi=False)
    assert _by_tile(res) == {"33UXS": ["2018-07-17"], "33UYS": ["2018-07-17"]}
    limited = search_scenes(area, dates=SUMMER, catalog=api, out_dir=None, max_cloud=10, cloud_over_aoi=False)
    assert limited.found > limited.matching  # rustac's memory backend does not filter: s2pipe does
    assert all(s.cloud <= 10 for s in limited.scenes) and len(limited.scenes) == 5


@pytest.mark.parametrize("target, day", [("2018-06-18", "2018-06-17"), ("2018-06-26", "2018-06-27")])
def test_ties_in_cloud_go_to_the_date_nearest_the_target(api, area, target, day):
    res = search_scenes(area, dates=(dt.date(2018, 6, 10), dt.date(2018, 6, 30)), catalog=api, out_dir=None,
                        per_tile=1, target_date=dt.date.fromisoformat(target), cloud_over_aoi=False)
    assert _by_tile(res)["33UXS"] == [day]  # 06-17 and 06-27 both state 8 % cloud


def test_cloud_over_the_area_is_measured_from_the_scl(api, area):
    res = search_scenes(area, dates=(dt.date(2018, 6, 1), dt.date(2018, 6, 20)), catalog=api, out_dir=None)
    assert res.scenes and all(s.aoi_cloud is not None and 0 <= s.aoi_cloud <= 100 for s in res.scenes)


def test_sliver_tiles_are_dropped_where_the_others_cover_the_area(synth, area):
    import pystac

    items = [pystac.Item.from_dict(copy.deepcopy(synth["by_key"][k])) for k in ("w0607", "e0607")]
    sliver = pystac.Item.from_dict(copy.deepcopy(synth["by_key"]["w0607"]))
    sliver.id = "S2B_33UXR_20180607_0_L2A"
    sliver.properties.update({"s2:mgrs_tile": "33UXR", "grid:code": "MGRS-33UXR"})
    w, s, e, n = area.bbox  # a tile reaching into the area by a strip the west tile covers too
    sliver.geometry = box(w - 1, s - 1, w + (e - w) * 0.05, s + (n - s) * 0.05).__geo_interface__
    kept, dropped = drop_slivers([candidate(i, area) for i in [*items, sliver]], area)
    assert dropped == ["33UXR"] and len(kept) == 2
    alone, none = drop_slivers([candidate(sliver, area)], area)
    assert none == [] and len(alone) == 1  # the only tile is never dropped


def test_prepare_and_predict_read_the_products_the_search_wrote(api, area, synth, tmp_path):
    from test_predict import make_checkpoint

    res = search_scenes(area, dates=SUMMER, catalog=api, out_dir=tmp_path / "found", per_tile=1,
                        cloud_over_aoi=False)
    labels = synth["products"]["w0607"].labels_path
    runner = CliRunner()
    out = runner.invoke(cli, ["prepare", "--products", str(res.products_file), "--labels", str(labels),
                              "-o", str(tmp_path / "tiles"), "--tile-size", "64"])
    assert out.exit_code == 0, out.output
    keys = [p["key"] for p in json.loads((tmp_path / "tiles" / "prepare.json").read_text())["products"]]
    assert "T33UXS_20180717" in keys  # (the labels are the west tile's)
    model = make_checkpoint(tmp_path / "m.pt")
    first = read_product_list(res.products_file)[0]
    out = runner.invoke(cli, ["predict", str(first), "--model", str(model), "-o", str(tmp_path / "map.tif"),
                              "--device", "cpu", "--overlap", "16"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "map.tif").is_file()


def test_cli_prints_the_table_and_one_json_object(api, area):
    w, s, e, n = area.bbox
    args = ["search", "--bbox", str(w), str(s), str(e), str(n), "--dates", "2018-06-01/2018-08-31", "--catalog",
            api, "--per-tile", "1", "--no-aoi-cloud"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split()[:4] == ["tile", "date", "cloud", "%"]
    assert "2 scene(s) chosen" in out.output
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    assert [s["tile"] for s in data["scenes"]] == ["33UXS", "33UYS"] and data["requests"] >= 2


def test_a_local_folder_of_items_is_a_catalogue(synth, area, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    for key in ("w0607", "e0607", "w0607-n0509"):
        (folder / f"{key}.json").write_text(json.dumps(synth["by_key"][key]))
    res = search_scenes(area, dates=SUMMER, catalog=str(folder), collections=BOTH, out_dir=None,
                        cloud_over_aoi=False)
    assert res.duplicates == 1 and sorted(s.baseline for s in res.scenes) == ["02.08", "05.09"]


# ------------------------------------------------------------------ bad input
def _fails(args, tmp_path):
    out = CliRunner().invoke(cli, ["search", *args, "-o", str(tmp_path / "found")])
    assert out.exit_code == 1, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.output
    assert not (tmp_path / "found").exists()  # nothing half written
    return lines[0]


def test_an_area_without_crs_or_without_geometry_is_refused(api, tmp_path):
    nocrs = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame(geometry=[box(17.8, 51.3, 17.9, 51.4)]).to_file(nocrs)
    assert "has no CRS" in _fails(["--aoi", str(nocrs), "--dates", "2018-06-01/2018-06-30", "--catalog", api],
                                  tmp_path)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    assert "holds no geometry" in _fails(["--aoi", str(empty), "--dates", "2018-06-01/2018-06-30"], tmp_path)
    with pytest.raises(AreaError, match="has no CRS"):
        read_area(nocrs)


@pytest.mark.parametrize("dates, message", [("2018-08-31/2018-06-01", "before the first"),
                                            ("2018-06", "YYYY-MM-DD"), ("2018-02-30/2018-03-01", "day is out")])
def test_reversed_or_malformed_dates_are_refused(dates, message, tmp_path):
    assert message in _fails(["--bbox", "17", "51", "18", "52", "--dates", dates], tmp_path)
    with pytest.raises(OptionError):
        parse_dates(dates)


def test_no_scene_found_says_what_was_searched(api, area, tmp_path):
    w, s, e, n = area.bbox
    line = _fails(["--bbox", str(w), str(s), str(e), str(n), "--dates", "2019-06-01/2019-06-30",
                   "--max-cloud", "20", "--catalog", api], tmp_path)
    assert "no Sentinel-2 L2A scene" in line and "2019-06-01 to 2019-06-30" in line and "<= 20%" in line
    assert api in line


def test_a_catalogue_that_does_not_answer_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    line = _fails(["--bbox", "17", "51", "18", "52", "--dates", "2018-06-01/2018-06-30", "--catalog", url,
                   "--retries", "1"], tmp_path)
    assert url in line and "does not answer" in line


# ------------------------------------------------------------------ canned servers
def _canned(pages, *, conforms=("core", "item-search"), fail=None):
    """A responder: the landing page, then ``pages`` (a list of (features, next link or
    None)) in order on /search; ``fail`` (status, headers, times) answers the first
    searches with an error."""
    state = {"page": 0, "failed": 0}

    def respond(method, path, body):
        if path.split("?")[0] in ("/", ""):
            return 200, {}, landing(api.url, conforms)
        if fail and state["failed"] < fail[2]:
            state["failed"] += 1
            return fail[0], fail[1], {"code": "busy", "description": "try later"}
        features, nxt = pages[min(state["page"], len(pages) - 1)]
        state["page"] += 1
        links = [{"rel": "root", "href": api.url}] + ([nxt] if nxt else [])
        return 200, {}, {"type": "FeatureCollection", "features": features, "links": links}

    api = CannedApi(respond)
    return api


def _item(synth, key, **props):
    item = copy.deepcopy(synth["by_key"][key])
    item["properties"].update(props)
    item["links"] = []
    return item


def test_cql2_filter_and_sort_are_sent_where_the_api_conforms(synth, area):
    api = _canned([([_item(synth, "w0617")], None)], conforms=("core", "item-search", "filter", "cql2-json", "sort"))
    with api:
        res = search_scenes(area, dates=SUMMER, catalog=api.url, out_dir=None, max_cloud=20, cloud_over_aoi=False)
    body = next(b for m, p, b in api.requests if p.startswith("/search"))
    assert body["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]}
    assert body["filter-lang"] == "cql2-json" and body["sortby"][0]["direction"] == "asc"
    assert body["collections"] == ["sentinel-2-l2a"] and body["intersects"]["type"] == "Polygon"
    assert len(res.scenes) == 1


# The next links of the three public catalogues, as they answer a POST search:
# Earth Search (stac-server) a POST with the body's "next" token; Planetary Computer and
# CDSE (stac-fastapi-pgstac) a POST with "token": "next:<id>" (CDSE's GET pages carry it
# in the href's query instead).
NEXT_LINKS = {
    "earth-search": lambda url: {"rel": "next", "href": f"{url}/search", "method": "POST",
                                 "type": "application/geo+json",
                                 "body": {"next": "MjAxOC0wNi0xN1QwOTo1MDoyOS4wMDBafFMyQl8zM1VYUw=="}, "merge": True},
    "planetary-computer": lambda url: {"rel": "next", "href": f"{url}/search", "method": "POST",
                                       "type": "application/geo+json",
                                       "body": {"token": "next:S2B_MSIL2A_20180617T095029_R079_T33UXS"}, "merge": True},
    "cdse": lambda url: {"rel": "next", "href": f"{url}/search?token=next:S2B_MSIL2A_20180617", "method": "GET",
                         "type": "application/geo+json"},
}


@pytest.mark.parametrize("style", sorted(NEXT_LINKS))
def test_the_public_catalogues_paging_forms_are_followed(synth, area, style):
    pages: list = [([_item(synth, "w0607")], None), ([_item(synth, "e0607")], None)]
    api = _canned(pages)
    pages[0] = (pages[0][0], NEXT_LINKS[style](api.url))
    with api:
        res = search_scenes(area, dates=SUMMER, catalog=api.url, out_dir=None, cloud_over_aoi=False)
    searches = [(m, p, b) for m, p, b in api.requests if p.startswith("/search")]
    assert res.found == 2 and len(searches) == 2
    method, path, body = searches[1]
    if style == "cdse":
        assert method == "GET" and "token=next" in path
    else:
        token = NEXT_LINKS[style](api.url)["body"]
        assert method == "POST" and all(body[k] == v for k, v in token.items())
        assert body["collections"] == ["sentinel-2-l2a"]  # merged with the first search's body


@pytest.mark.parametrize("status, headers", [(503, {}), (502, {}), (429, {"Retry-After": "1"})])
def test_busy_or_failing_answers_are_retried_with_backoff(synth, area, status, headers):
    api = _canned([([_item(synth, "w0617")], None)], fail=(status, headers, 2))
    with api:
        res = search_scenes(area, dates=SUMMER, catalog=api.url, out_dir=None, cloud_over_aoi=False, backoff=0.01)
    assert len(res.scenes) == 1
    assert sum(p.startswith("/search") for _, p, _ in api.requests) == 3
    assert res.requests == 2  # what s2pipe asked for; the retries are below it


def test_a_catalogue_failing_after_the_retries_is_named(synth, area, tmp_path):
    api = _canned([([], None)], fail=(500, {}, 99))
    with api, pytest.raises(CatalogError, match=r"http://127\.0\.0\.1:\d+ answered HTTP 500"):
        search_scenes(area, dates=SUMMER, catalog=api.url, out_dir=tmp_path / "o", retries=2, backoff=0.01)
    assert not (tmp_path / "o").exists()
    assert sum(p.startswith("/search") for _, p, _ in api.requests) == 3


def test_planetary_computer_without_its_package_says_what_to_install(synth, monkeypatch):
    import pystac

    assert resolve_catalogue("planetary-computer").signing == "planetary-computer"
    monkeypatch.setitem(sys.modules, "planetary_computer", None)
    with pytest.raises(CatalogError, match=r"pip install 's2pipe\[planetary-computer\]'"):
        sign_items([pystac.Item.from_dict(_item(synth, "w0607"))], "planetary-computer")


def test_an_unsigned_planetary_computer_item_is_refused(synth, tmp_path):
    from s2pipe.sentinel2.stac import read_stac_item

    item = _item(synth, "w0607")
    for asset in item["assets"].values():
        asset["href"] = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/33/U/XS/" + Path(asset["href"]).name
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    with pytest.raises(RemoteError, match="not signed"):
        read_stac_item(path)
