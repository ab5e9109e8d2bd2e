"""export and ONNX/int8 prediction (issue 14).

Tiny inputs, as in test_predict: 4-filter U-Nets on 64 px windows, the 200 x 300 px stack
of test_predict, and a prepare-like tile folder cut from the same landscape pattern
(train tiles calibrate int8, val tiles check it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 's2pipe[onnx]') is not installed")
pytest.importorskip("onnx", reason="the onnx extra (pip install 's2pipe[onnx]') is not installed")

from s2pipe.errors import CheckpointError, OptionError  # noqa: E402
from s2pipe.export.engine import ExportOptions, export_model  # noqa: E402
from s2pipe.export.quantize import calibration_pairs  # noqa: E402
from s2pipe.legend import legend_to_list  # noqa: E402
from s2pipe.model.checkpoint import load_checkpoint  # noqa: E402
from s2pipe.model.normalization import Normalization  # noqa: E402
from s2pipe.model.onnx import KEY_META, open_onnx, set_metadata  # noqa: E402
from s2pipe.model.unet import UNet  # noqa: E402
from s2pipe.prediction.inference import OnnxWindowModel, WindowModel  # noqa: E402
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene  # noqa: E402
from s2pipe.prediction.runtime import load_window_model  # noqa: E402
from s2pipe.sentinel2 import BANDS, RADIOMETRY_CONVENTION  # noqa: E402
from s2pipe.training.dataset import find_tiles  # noqa: E402

from test_predict import (  # noqa: E402
    MEAN,
    STD,
    TILE,
    _fails_cleanly,
    _invoke,
    make_checkpoint,
    pattern,
    scene,
    stack_array,
    trained,
    truth,
)
from tiles_helpers import write_tif  # noqa: E402

__all__ = ["scene", "trained"]  # fixtures shared with test_predict
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    """A prepare-like folder of 12 tiles of the pattern: 8 train, 2 val, 2 test."""
    root = tmp_path_factory.mktemp("tiles")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    records = []
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    for k in range(12):
        row, col = divmod(k, 4)
        y0, x0 = 700 + row * TILE, 900 + col * TILE
        tid = f"r{y0:06d}_c{x0:06d}"
        write_tif(root / "images" / f"{tid}.tif", stack_array(TILE, TILE, x0, y0, seed=k), col=col, row=row)
        write_tif(root / "labels" / f"{tid}.tif", truth(pattern(TILE, TILE, x0, y0)), col=col, row=row)
        records.append({"id": tid, "row": y0, "col": x0, "split": splits[k]})
    manifest = {"bands": list(BANDS), "legend": legend_to_list(), "tile_size": TILE,
                "radiometry": {"convention": RADIOMETRY_CONVENTION}, "tiles": records}
    (root / "prepare.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def fp32_onnx(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_model(trained, out)
    return out


@pytest.fixture(scope="module")
def int8_onnx(trained, tiles, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx8") / "model.int8.onnx"
    export_model(trained, out, ExportOptions(precision="int8", tiles_dir=tiles, min_agreement=0.0))
    return out


# ------------------------------------------------------------------ fp32 export
def test_onnx_logits_equal_torch_within_1e4(trained, fp32_onnx):
    model, meta = load_checkpoint(trained)
    m = open_onnx(fp32_onnx)
    x = np.random.default_rng(3).normal(size=(3, 12, TILE, TILE)).astype(np.float32)  # batch 3: dynamic
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    got = OnnxWindowModel(m.session).logits(x)
    assert got.shape == (3, 8, TILE, TILE)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_carries_the_checkpoint_contract(trained, fp32_onnx):
    _, meta = load_checkpoint(trained)
    m = open_onnx(fp32_onnx)
    assert m.meta == meta and m.precision == "fp32" and m.quantization == {}
    assert m.session.get_inputs()[0].shape == ["batch", 12, TILE, TILE]


@pytest.mark.parametrize("tta", ["none", "d4"])
def test_onnx_runner_gives_window_model_probabilities(trained, fp32_onnx, tta):
    model, _ = load_checkpoint(trained)
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(2, 12, TILE, TILE)).astype(np.float32))
    want = WindowModel(model, torch.device("cpu"), tta)(x)
    got = load_window_model(fp32_onnx, tta=tta).runner(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_predict_with_onnx_maps_like_the_checkpoint(scene, trained, fp32_onnx, tmp_path):
    a = predict_scene(scene, trained, tmp_path / "pt.tif", PredictOptions(overlap=16))
    b = predict_scene(scene, fp32_onnx, tmp_path / "onnx.tif", PredictOptions(overlap=16, tta="flips"))
    c = predict_scene(scene, trained, tmp_path / "pt_flips.tif", PredictOptions(overlap=16, tta="flips"))
    assert (a.runtime, a.precision, b.runtime, b.precision) == ("torch", "fp32", "onnxruntime", "fp32")
    with rasterio.open(b.output) as nb, rasterio.open(c.output) as nc:
        np.testing.assert_array_equal(nb.read(1), nc.read(1))
        assert nb.tags()["S2PIPE_PRECISION"] == "fp32" and nb.tags()["S2PIPE_RUNTIME"] == "onnxruntime"
    assert a.windows == b.windows


# ------------------------------------------------------------------ int8
def test_int8_is_calibrated_on_recorded_train_tiles_reproducibly(trained, tiles, tmp_path):
    runs = [export_model(trained, tmp_path / f"{name}.onnx", ExportOptions(
        precision="int8", tiles_dir=tiles, calibration_tiles=3, seed=seed, min_agreement=0.0))
            for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    a, b, c = (r.calibration for r in runs)
    train = {p.id for p in find_tiles(tiles).split("train")}
    assert a is not None and b is not None and c is not None
    assert len(a.tiles) == 3 and set(a.tiles) <= train and a.available == 8 and a.split == "train"
    assert a.tiles == b.tiles != c.tiles
    assert a.tiles == [p.id for p in calibration_pairs(find_tiles(tiles), 3, 7)]
    x = np.random.default_rng(5).normal(size=(2, 12, TILE, TILE)).astype(np.float32)
    out_a, out_b = (OnnxWindowModel(open_onnx(r.output).session).logits(x) for r in runs[:2])
    np.testing.assert_array_equal(out_a, out_b)  # same tiles, same seed: the same model
    m = open_onnx(runs[0].output)
    assert m.precision == "int8"
    assert m.quantization["calibration"]["tiles"] == a.tiles and m.quantization["calibration"]["seed"] == 7
    assert m.quantization["agreement"]["split"] == "val" and m.quantization["agreement"]["tiles"] == 2


def test_int8_reports_agreement_and_maps_like_fp32(scene, trained, int8_onnx, fp32_onnx, tmp_path):
    q = open_onnx(int8_onnx).quantization["agreement"]
    assert q["pixels"] == 2 * TILE * TILE and 0.9 <= q["agreement"] <= 1.0
    assert q["fp32_seconds"] > 0 and q["int8_seconds"] > 0  # both timed on the check
    scheme = open_onnx(int8_onnx).quantization["calibration"]
    assert "tile-mean" in scheme["scheme"] and scheme["fp32_layers"]  # the class logits stay fp32
    a = predict_scene(scene, fp32_onnx, tmp_path / "fp32.tif", PredictOptions(overlap=16))
    b = predict_scene(scene, int8_onnx, tmp_path / "int8.tif", PredictOptions(overlap=16, precision="int8"))
    assert b.precision == "int8"
    with rasterio.open(a.output) as na, rasterio.open(b.output) as nb:
        ma, mb = na.read(1), nb.read(1)
    mapped = ma > 0
    assert np.array_equal(mapped, mb > 0)
    assert (ma == mb)[mapped].mean() >= 0.97  # a 4-filter toy; the bench measures the real U-Net


def test_int8_below_the_agreement_threshold_is_refused(tiles, tmp_path):
    untrained = make_checkpoint(tmp_path / "random.pt")  # random weights: many near-ties
    out = tmp_path / "m.onnx"
    with pytest.raises(CheckpointError, match="agrees with fp32 on only"):
        export_model(untrained, out, ExportOptions(precision="int8", tiles_dir=tiles, min_agreement=0.9999))
    assert not out.exists() and not list(tmp_path.glob(".m.onnx*"))


def test_int8_needs_matching_tiles(trained, tmp_path):
    from tiles_helpers import make_prepare_dir

    other = make_prepare_dir(tmp_path / "t32", size=32)  # 32 px tiles, the model reads 64
    with pytest.raises(Exception, match="32 px tiles"):
        export_model(trained, tmp_path / "m.onnx", ExportOptions(precision="int8", tiles_dir=other))
    with pytest.raises(OptionError, match="--tiles"):
        export_model(trained, tmp_path / "m.onnx", ExportOptions(precision="int8"))


# ------------------------------------------------------------------ command line
def test_cli_export_int8_then_predict(scene, trained, tiles, tmp_path):
    out = tmp_path / "model.int8.onnx"
    code, output = _invoke(["export", trained, "-o", out, "--precision", "int8", "--tiles", tiles,
                            "--calibration-tiles", 4, "--min-agreement", 0.5, "--json"])
    assert code == 0, output
    res = json.loads(output)
    assert res["precision"] == "int8" and res["output"] == str(out)
    assert len(res["calibration"]["tiles"]) == 4 and res["agreement"]["agreement"] >= 0.5
    assert res["agreement"]["int8_seconds"] > 0 and res["calibration"]["fp32_layers"]
    assert res["max_abs_diff"] < 1e-4
    code, output = _invoke(["predict", scene, "--model", out, "-o", tmp_path / "m.tif", "--overlap", 16,
                            "--precision", "int8", "--json"])
    assert code == 0, output
    assert json.loads(output)["results"][0]["precision"] == "int8"


def test_cli_export_fp32_summary_and_refusals(trained, tmp_path):
    out = tmp_path / "model.onnx"
    code, output = _invoke(["export", trained, "-o", out])
    assert code == 0 and output.startswith(f"{out}: fp32 ONNX"), output
    _fails_cleanly(["export", trained, "-o", out], tmp_path, "--overwrite")
    code, output = _invoke(["export", trained, "-o", tmp_path / "m.onnx", "--precision", "int8"])
    assert code == 2 and "--tiles" in output
    code, output = _invoke(["export", trained, "-o", tmp_path / "m.bin"])
    assert code == 2 and ".onnx" in output


def test_cli_rejects_an_onnx_file_without_s2pipe_metadata(scene, trained, tmp_path):
    model, _ = load_checkpoint(trained)
    bare = tmp_path / "bare.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 12, TILE, TILE),), str(bare), dynamo=False,
                          opset_version=17)
    _fails_cleanly(["predict", scene, "--model", bare, "-o", tmp_path / "m.tif"], tmp_path,
                   "has no s2pipe metadata")


def test_cli_rejects_an_onnx_model_for_other_bands(scene, tmp_path):
    bands = tuple(b for b in BANDS if b != "B09")
    pt = make_checkpoint(tmp_path / "no_b09.pt", UNet(11, 8, 4), bands=bands,
                         normalization=Normalization((MEAN,) * 11, (STD,) * 11))
    onnx_path = tmp_path / "no_b09.onnx"
    export_model(pt, onnx_path)
    _fails_cleanly(["predict", scene, "--model", onnx_path, "-o", tmp_path / "m.tif", "--overlap", 16],
                   tmp_path, "bands")


def test_cli_rejects_an_onnx_graph_that_contradicts_its_metadata(scene, fp32_onnx, tmp_path):
    altered = tmp_path / "altered.onnx"
    altered.write_bytes(fp32_onnx.read_bytes())
    meta = json.loads(open_onnx(fp32_onnx).session.get_modelmeta().custom_metadata_map[KEY_META])
    set_metadata(altered, {KEY_META: json.dumps({**meta, "tile_size": 2 * TILE})})
    _fails_cleanly(["predict", scene, "--model", altered, "-o", tmp_path / "m.tif"], tmp_path,
                   "the graph takes input")


def test_cli_without_onnxruntime_says_how_to_install(scene, fp32_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    _fails_cleanly(["predict", scene, "--model", fp32_onnx, "-o", tmp_path / "m.tif"], tmp_path,
                   "pip install 's2pipe[onnx]'")


def test_cli_precision_must_match_the_model(scene, trained, int8_onnx, tmp_path):
    _fails_cleanly(["predict", scene, "--model", trained, "-o", tmp_path / "m.tif", "--precision", "int8"],
                   tmp_path, "s2pipe export")
    _fails_cleanly(["predict", scene, "--model", int8_onnx, "-o", tmp_path / "m.tif", "--precision", "fp32"],
                   tmp_path, "is an int8 model")
    _fails_cleanly(["predict", scene, "--model", int8_onnx, "-o", tmp_path / "m.tif", "--device", "cuda"],
                   tmp_path, "--device cpu")
