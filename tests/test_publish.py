"""STAC Items of the maps s2pipe writes: predict --stac, mosaic --stac, describe_map on any
kind; validated by pystac against the extension schemas kept in tests/data (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from click.testing import CliRunner
from pystac.validation import JsonSchemaSTACValidator, RegisteredValidator

from cli import cli
from s2pipe.catalog.publish import (
    CLASSIFICATION_SCHEMA,
    PROCESSING_SCHEMA,
    describe_map,
    read_model_contract,
    stac_item_path,
)
from s2pipe.errors import OutputExistsError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.synth.product import synth_product

from test_predict import make_checkpoint

SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"


@pytest.fixture(scope="module")
def offline_validator():
    """pystac's validator with the extension schemas of tests/data, fetching nothing."""
    validator = JsonSchemaSTACValidator()
    for f in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(f.read_text())
        validator.schema_cache[schema["$id"].rstrip("#")] = schema

    def refuse(uri):
        raise AssertionError(f"schema {uri} is not kept in tests/data/stac-schemas")

    validator._get_schema = lambda uri: validator.schema_cache.get(uri) or refuse(uri)
    before = RegisteredValidator.get_validator()
    RegisteredValidator.set_validator(validator)
    yield validator
    RegisteredValidator.set_validator(before)


def _valid(path: Path) -> dict:
    from pystac.validation import validate_dict

    data = json.loads(path.read_text())
    schemas = validate_dict(data)  # as written (pystac.Item.from_dict would migrate the extension versions)
    assert set(data["stac_extensions"]) <= {s.rstrip("#") for s in schemas}
    return data


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """A synthetic scene's Item, predicted with --stac (map and probabilities), then mosaicked with --stac."""
    root = tmp_path_factory.mktemp("publish")
    product = synth_product(root / "scene", size=256, format="stac")
    model = make_checkpoint(root / "m.pt")
    runner = CliRunner()
    out = runner.invoke(cli, ["predict", str(product.safe_path), "--model", str(model), "-o", str(root / "map.tif"),
                              "--probabilities", str(root / "probs.tif"), "--probabilities-all", "--device", "cpu",
                              "--overlap", "16", "--stac", "--json"])
    assert out.exit_code == 0, out.output
    predicted = json.loads(out.output)
    out = runner.invoke(cli, ["mosaic", str(root / "probs.tif"), "-o", str(root / "mosaic.tif"),
                              "--sources", str(root / "sources.tif"), "--stac"])
    assert out.exit_code == 0, out.output
    return {"root": root, "item": Path(product.safe_path), "model": model, "predicted": predicted,
            "mosaic_output": out.output}


def test_predict_stac_describes_the_map_with_classes_colours_source_and_model(maps, offline_validator):
    root = maps["root"]
    assert maps["predicted"]["stac_items"] == [str(root / "map.json"), str(root / "probs.json")]
    data = _valid(root / "map.json")
    assert CLASSIFICATION_SCHEMA in data["stac_extensions"] and PROCESSING_SCHEMA in data["stac_extensions"]
    asset = data["assets"]["data"]
    assert asset["href"] == "map.tif" and asset["type"] == pystac.MediaType.COG
    classes = asset["classification:classes"]
    assert classes[0] == {"value": 0, "name": "nodata", "description": "No data"}
    assert [(c["value"], c["description"], "#" + c["color_hint"].lower()) for c in classes[1:]] == \
        [(c.value, c.name, c.color) for c in DEFAULT_LEGEND]
    [band] = asset["raster:bands"]
    assert {k: band[k] for k in ("nodata", "data_type", "spatial_resolution")} == \
        {"nodata": 0, "data_type": "uint8", "spatial_resolution": 10.0}
    props = data["properties"]
    assert props["proj:code"] == "EPSG:32633" and props["proj:shape"] == [256, 256]
    assert props["datetime"] == "2018-06-07T09:50:29Z" and props["processing:software"]["s2pipe"]
    links = [lk for lk in data["links"] if lk["rel"] == "derived_from"]
    assert [(root / lk["href"]).resolve() for lk in links] == [maps["item"].resolve()]  # the scene's Item
    model = props["s2pipe:model"]
    assert model["bands"][0] == "B01" and model["tile_size"] == 64 and model["arch"]["name"]
    assert model["normalization"] and model["radiometry"]["convention"] and len(model["legend"]) == 8
    assert model == {**model, **read_model_contract(maps["model"])}


def test_probabilities_and_mosaic_items_validate_and_link_back(maps, offline_validator):
    root = maps["root"]
    probs = _valid(root / "probs.json")
    bands = probs["assets"]["data"]["raster:bands"]
    assert len(bands) == 8 and bands[0]["scale"] == pytest.approx(1 / 255)
    assert bands[0]["s2pipe:description"] == f"P({DEFAULT_LEGEND[0].name})"
    assert "classification:classes" not in probs["assets"]["data"]  # its pixels are not class values
    mosaic = _valid(root / "mosaic.json")
    assert [lk["href"] for lk in mosaic["links"] if lk["rel"] == "derived_from"] == ["probs.json"]
    assert mosaic["properties"]["s2pipe:mosaic"]["rule"] == "probabilities"
    assert len(mosaic["assets"]["data"]["classification:classes"]) == 9
    sources = _valid(root / "sources.json")
    assert sources["properties"]["s2pipe:kind"] == "sources"
    assert f"STAC Item: {root / 'mosaic.json'}" in maps["mosaic_output"]


def test_describe_map_refuses_to_overwrite_and_needs_no_write(maps):
    root = maps["root"]
    with pytest.raises(OutputExistsError):
        describe_map(root / "map.tif")
    item = describe_map(root / "map.tif", write=False, sources=["https://example.com/items/x.json"],
                        collection="my-maps")
    assert item.collection_id == "my-maps" and stac_item_path(root / "map.tif") == root / "map.json"
    assert [lk.href for lk in item.links if lk.rel == "derived_from"][-1] == "https://example.com/items/x.json"


def test_a_map_of_no_known_product_is_dated_by_its_file(tmp_path, offline_validator):
    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from s2pipe.raster.grid import Grid
    from s2pipe.raster.maps import Provenance, class_layout, write_map

    grid = Grid(CRS.from_epsg(32633), from_origin(500000, 6000000, 10, 10), 32, 32)
    with write_map(tmp_path / "m.tif", grid, class_layout(DEFAULT_LEGEND), Provenance(legend=DEFAULT_LEGEND)) as w:
        w.write_rows(np.ones((1, 32, 32), np.uint8))
        w.finish()
    describe_map(tmp_path / "m.tif")
    data = _valid(tmp_path / "m.json")
    assert data["properties"]["datetime"] and not [lk for lk in data["links"] if lk["rel"] == "derived_from"]


def test_the_offline_schemas_do_catch_a_wrong_item(maps, offline_validator):
    from pystac.errors import STACValidationError
    from pystac.validation import validate_dict

    data = json.loads((maps["root"] / "map.json").read_text())
    data["assets"]["data"]["classification:classes"][1]["color_hint"] = "#e6cc4d"  # the hex, without '#'
    with pytest.raises(STACValidationError, match="classification"):
        validate_dict(data)
    data = json.loads((maps["root"] / "map.json").read_text())
    data["properties"]["proj:shape"] = [256]
    with pytest.raises(STACValidationError, match="projection"):
        validate_dict(data)


def test_change_stac_describes_the_transitions_and_the_rule(tmp_path, offline_validator):
    from test_change import T, two_dates

    b, a, *_ = two_dates(tmp_path)
    res = CliRunner().invoke(cli, ["change", str(b), str(a), "-o", str(tmp_path / "c.tif"), "--stac", "--json"])
    assert res.exit_code == 0, res.output
    item = _valid(tmp_path / "c.json")
    assert json.loads(res.output)["stac_items"] == [str(tmp_path / "c.json")]
    p = item["properties"]
    assert p["s2pipe:kind"] == "change" and p["s2pipe:change"]["rule"] == "confidence" and "s2pipe:mosaic" not in p
    classes = item["assets"]["data"]["classification:classes"]
    assert {c["value"] for c in classes} >= {T.code(1, 5), T.code(1, 1), T.uncertain}
    assert next(c for c in classes if c["value"] == T.code(1, 5))["description"] == T.name(T.code(1, 5))
