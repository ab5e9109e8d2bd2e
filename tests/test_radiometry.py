"""The stated offset checked against the pixels, for SAFE products and STAC Items."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from s2pipe.errors import RadiometryError
from s2pipe.sentinel2.reader import ReadOptions, open_scene
from s2pipe.synth.stac import write_stac_item


def _relabel_as_n0509(safe_src, dst):
    """A copy of an N0208 SAFE whose metadata claims baseline 05.09 (DNs without offset)."""
    safe = dst / safe_src.name
    shutil.copytree(safe_src, safe)
    mtd = safe / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text().replace(">02.08<", ">05.09<"))
    return safe


def test_consistent_products_pass_and_carry_the_record(synth_n0509, synth_n0208):
    with open_scene(synth_n0509.safe_path) as s:
        check = dataclasses.asdict(s.radiometry.offset_check)
        assert check["checked"] and not check["contradicted"] and check["decision"] == "metadata"
        assert min(check["dark_dn"].values()) > 1000
    with open_scene(synth_n0208.safe_path) as s:  # no offset stated: nothing to check
        assert s.radiometry.offset_check.checked is False


def test_safe_whose_offset_is_already_removed_is_an_error_unless_pixels_are_trusted(synth_n0208, tmp_path):
    safe = _relabel_as_n0509(synth_n0208.safe_path, tmp_path)
    with pytest.raises(RadiometryError, match="--trust-pixels") as err:
        open_scene(safe)
    assert "B12" in str(err.value) and "\n" not in str(err.value)
    with open_scene(safe, ReadOptions(trust_pixels=True, mask_scl=())) as s, \
            open_scene(synth_n0208.safe_path, ReadOptions(mask_scl=())) as ref:
        assert s.radiometry.offset_check.decision == "pixels"
        assert set(s.info.offsets.values()) == {0}
        np.testing.assert_array_equal(s.read(), ref.read())


def test_earth_search_flag_wrong_both_ways(synth_n0208, synth_n0509, tmp_path):
    # offset already removed while the flag says not: contradicted by the pixels
    item = write_stac_item(synth_n0208.safe_path, tmp_path / "es", naming="earth-search")
    d = json.loads(item.read_text())
    d["properties"]["s2:processing_baseline"] = "05.09"
    for a in d["assets"].values():
        for b in a.get("raster:bands", []):
            if "offset" in b:
                b["offset"] = -0.1
    item.write_text(json.dumps(d))
    with pytest.raises(RadiometryError, match="earthsearch:boa_offset_applied"):
        open_scene(item)
    r = CliRunner().invoke(cli, ["prepare", str(item), "--labels", str(synth_n0208.labels_path),
                                 "-o", str(tmp_path / "tiles")])
    assert r.exit_code == 1 and "--trust-pixels" in r.output and not (tmp_path / "tiles").exists()
    with open_scene(item, ReadOptions(trust_pixels=True)) as s:
        assert s.radiometry.metadata["offset_applied_flag"] is False
        assert s.radiometry.offset_check.contradicted
    # the reverse: the flag says applied, the DNs still carry it -> no offset removed, recorded
    item = write_stac_item(synth_n0509.safe_path, tmp_path / "es2", naming="earth-search")
    d = json.loads(item.read_text())
    d["properties"]["earthsearch:boa_offset_applied"] = True
    item.write_text(json.dumps(d))
    with open_scene(item) as s:
        check = dataclasses.asdict(s.radiometry.offset_check)
        assert check["checked"] and not check["contradicted"] and "still carry the offset" in check["reason"]
        assert "true" in s.radiometry.metadata["source"] and set(s.info.offsets.values()) == {0}
