"""Each product is opened, parsed and offset-checked once per command run (issue 18).

The functions that parse a SAFE's metadata XML, fetch a STAC Item and check the offset
against the dark pixels are counted while ``predict`` maps two scenes and ``prepare``
cuts three products: planning learns each product once and the work reuses it.
"""

from __future__ import annotations

import pickle
from collections import Counter

import pytest
from click.testing import CliRunner

import s2pipe.sentinel2.metadata as metadata
import s2pipe.sentinel2.radiometry as radiometry
import s2pipe.sentinel2.stac as stac
from cli import cli
from s2pipe.sentinel2.reader import Product, open_scene

from test_predict import make_checkpoint


@pytest.fixture
def counted(monkeypatch):
    """A Counter of metadata XML parses, Item fetches and offset checks made from now on."""
    counts: Counter[str] = Counter()

    def spy(module, name, key):
        original = getattr(module, name)

        def counting(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    spy(metadata, "_parse", "xml")
    spy(stac, "read_bytes", "item")
    spy(radiometry, "_dark", "offset_check")
    return counts


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three dates of one ground (baseline 05.09, so the offset is checked), one as a STAC Item."""
    from s2pipe.synth.product import synth_product
    from s2pipe.synth.stac import write_stac_item

    root = tmp_path_factory.mktemp("three")
    made = [synth_product(root / f"p{i}", size=256, baseline="05.09", date=d)
            for i, d in enumerate(("2018-06-07", "2018-07-02", "2018-08-11"))]
    item = write_stac_item(made[2].safe_path, root / "item", naming="earth-search")
    return [made[0].safe_path, made[1].safe_path, item], made[0].labels_path, make_checkpoint(root / "m.pt")


def test_predict_parses_and_checks_each_scene_once(three, counted, tmp_path):
    (safe_a, safe_b, item), _, model = three
    res = CliRunner().invoke(cli, ["-q", "predict", str(safe_a), str(item), "--model", str(model),
                                   "-o", str(tmp_path / "maps"), "--overlap", "16", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "maps").glob("*.tif"))) == 2
    # a SAFE is MTD_MSIL2A.xml + MTD_TL.xml, parsed once; the Item fetched once; one check each
    assert counted == {"xml": 2, "item": 1, "offset_check": 2}


def test_prepare_parses_and_checks_each_product_once(three, counted, tmp_path):
    products, labels, _ = three
    res = CliRunner().invoke(cli, ["-q", "prepare", *map(str, products), "--labels", str(labels),
                                   "-o", str(tmp_path / "tiles"), "--tile-size", "64"])
    assert res.exit_code == 0, res.output
    assert counted == {"xml": 4, "item": 1, "offset_check": 3}


def test_a_product_reopens_without_parsing_or_checking(three, counted):
    (safe, _, item), _, _ = three
    for path in (safe, item):
        with open_scene(path) as scene:
            first = scene.read()
            product = scene.product
        assert isinstance(product, Product) and product.path == path
        before = counted.copy()
        with open_scene(pickle.loads(pickle.dumps(product))) as again:  # as a cluster task gets it
            assert (again.read() == first).all() and again.radiometry == scene.radiometry
        assert counted == before
