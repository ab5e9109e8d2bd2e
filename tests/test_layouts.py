"""Other layouts of the same product: flat (no GRANULE folder) and re-packed archives."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from s2pipe.errors import MissingBandError, SafeFormatError
from s2pipe.sentinel2.reader import ReadOptions, open_scene, product_info


def _pixels(path):
    with open_scene(path, ReadOptions(mask_scl=())) as s:
        return s.read()


def _flat_copy(safe, dst):
    """The product with the granule metadata and every band file beside MTD_MSIL2A.xml."""
    flat = dst / safe.name
    flat.mkdir()
    shutil.copy(safe / "MTD_MSIL2A.xml", flat)
    for f in (safe / "GRANULE").rglob("*"):
        if f.is_file() and (f.name == "MTD_TL.xml" or "IMG_DATA" in f.parts):
            shutil.copy(f, flat / f.name)
    return flat


def test_flat_product_reads_like_the_safe(synth_n0208, tmp_path):
    flat = _flat_copy(synth_n0208.safe_path, tmp_path)
    assert not (flat / "GRANULE").exists()
    info = product_info(flat)
    assert not info.missing_bands and info.band_files["B02"] == str(flat / info.band_files["B02"].rsplit("/", 1)[-1])
    np.testing.assert_array_equal(_pixels(flat), _pixels(synth_n0208.safe_path))


def test_repacked_zip_reads_like_the_safe(synth_n0208, tmp_path):
    safe = synth_n0208.safe_path
    z = tmp_path / "repacked.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as out:
        out.write(safe / "MTD_MSIL2A.xml", f"{safe.name}/MTD_MSIL2A.xml")
        for f in (safe / "GRANULE").rglob("*"):
            if f.name == "MTD_TL.xml":
                out.write(f, f"{safe.name}/metadata/tile/MTD_TL.xml")
            elif f.is_file() and "IMG_DATA" in f.parts:
                out.write(f, f"{safe.name}/bands/{f.parent.name}/{f.name}")
    np.testing.assert_array_equal(_pixels(z), _pixels(safe))


def test_what_was_not_found_is_said(synth_n0208, tmp_path):
    flat = _flat_copy(synth_n0208.safe_path, tmp_path)
    b05 = next(flat.glob("*_B05_20m.jp2"))
    b05.unlink()
    info = product_info(flat)
    assert info.missing_bands == ["B05"]
    with pytest.raises(MissingBandError, match="B05 .*nor a file of that name elsewhere in the product"):
        open_scene(flat)
    (flat / "MTD_TL.xml").unlink()
    with pytest.raises(SafeFormatError, match="no granule metadata: not at .*GRANULE.*MTD_TL.xml nor any "
                                              "MTD_TL.xml elsewhere"):
        product_info(flat)
