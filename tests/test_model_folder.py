"""The int8 model beside a training run (export/beside.py) and which model of a folder
predict runs (export/choice.py). Tiny inputs of test_onnx: 4-filter U-Nets, 64 px tiles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from test_onnx import tiles  # noqa: E402

from s2pipe.errors import InputNotFoundError, OptionError  # noqa: E402
from s2pipe.export.beside import INT8_NAME, RECIPES, RECORD_NAME, read_record, write_int8_beside  # noqa: E402
from s2pipe.export.choice import choose_model  # noqa: E402
from s2pipe.export.engine import ExportOptions, export_model  # noqa: E402

from test_predict import _invoke, make_checkpoint, scene, trained  # noqa: E402

__all__ = ["scene", "tiles", "trained"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _folder(tmp_path: Path, checkpoint: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(checkpoint, folder / "best.pt")
    return folder


def test_int8_that_passes_is_written_recorded_and_chosen_on_the_cpu(trained, tiles, tmp_path):
    folder = _folder(tmp_path, trained)
    record = write_int8_beside(folder, tiles, min_agreement=0.5, min_speedup=0)  # a 4-filter net: no speed rule
    assert record.passed and record.model == INT8_NAME and (folder / INT8_NAME).is_file()
    assert record.recipe == RECIPES[0].name and 0.5 <= record.agreement <= 1.0
    assert record.speedup is not None and record.speedup > 0 and record.tries[0]["speedup"] == record.speedup
    assert record.fp32_layers and all(isinstance(n, str) for n in record.fp32_layers)  # the logits at least
    assert read_record(folder) == record
    assert json.loads((folder / RECORD_NAME).read_text())["passed"] is True
    choice = choose_model(folder, device="cpu")
    assert choice.path == folder / INT8_NAME and "int8" in choice.why and "agrees" in choice.why
    assert choose_model(folder, precision="int8").path == folder / INT8_NAME
    assert choose_model(folder, precision="fp32").path == folder / "best.pt"  # the exact torch path
    assert choose_model(folder, device="cuda:0").path == folder / "best.pt"
    with pytest.raises(OptionError, match="CPU"):
        choose_model(folder, precision="int8", device="cuda:0")
    assert choose_model(trained).path == trained  # a file is taken as it is


def test_refused_int8_tries_every_recipe_and_leaves_no_model(tiles, tmp_path):
    folder = _folder(tmp_path, make_checkpoint(tmp_path / "random.pt"))  # random weights: near-ties
    (folder / INT8_NAME).write_bytes(b"an int8 model of earlier weights")
    record = write_int8_beside(folder, tiles, min_agreement=0.9999)
    assert not record.passed and record.model is None and not (folder / INT8_NAME).exists()
    assert [t["recipe"] for t in record.tries] == [r.name for r in RECIPES]
    assert all(t["speedup"] > 0 for t in record.tries)  # timed on the check, refused or not
    assert record.agreement == max(t["agreement"] for t in record.tries)
    assert "99.99%" in record.reason
    choice = choose_model(folder)
    assert choice.path == folder / "best.pt" and "99.99%" in choice.why
    with pytest.raises(OptionError, match="no int8 model that passed"):
        choose_model(folder, precision="int8")


def test_int8_that_agrees_but_is_not_faster_than_fp32_is_refused(trained, tiles, tmp_path):
    folder = _folder(tmp_path, trained)
    record = write_int8_beside(folder, tiles, min_agreement=0.5, min_speedup=1e9)
    assert not record.passed and not (folder / INT8_NAME).exists()
    assert len(record.tries) == 1 and record.tries[0]["passed"] is False  # the later recipes are slower
    assert "as fast as fp32 ONNX" in record.reason and record.agreement == record.tries[0]["agreement"]
    assert choose_model(folder).path == folder / "best.pt"


def test_folder_with_an_exported_int8_model_and_no_record(trained, tiles, tmp_path):
    folder = _folder(tmp_path, trained)
    export_model(trained, folder / INT8_NAME, ExportOptions(precision="int8", tiles_dir=tiles, min_agreement=0.5))
    assert read_record(folder) is None  # the model's own metadata says how it was checked
    check = _check(folder / INT8_NAME)  # chosen where it agreed and ran faster than fp32 ONNX on its check
    assert check["fp32_seconds"] > 0 and check["int8_seconds"] > 0
    ok = check["agreement"] >= 0.99 and check["int8_seconds"] < check["fp32_seconds"]
    assert choose_model(folder).path == (folder / INT8_NAME if ok else folder / "best.pt")
    (folder / INT8_NAME).unlink()
    assert "no int8.json" in choose_model(folder).why
    (folder / "best.pt").unlink()
    with pytest.raises(InputNotFoundError, match="best.pt"):
        choose_model(folder)


def _check(path: Path) -> dict:
    from s2pipe.model.onnx import open_onnx

    return open_onnx(path).quantization["agreement"]


def test_cli_predict_with_a_folder_says_which_model(scene, trained, tiles, tmp_path):
    folder = _folder(tmp_path, trained)
    write_int8_beside(folder, tiles, min_agreement=0.5, min_speedup=0)
    code, output = _invoke(["predict", scene, "--model", folder, "-o", tmp_path / "a.tif", "--overlap", 16, "--json"])
    assert code == 0, output
    assert f"predict: {folder / INT8_NAME}: int8 ONNX" in output
    assert json.loads(output.strip().splitlines()[-1])["results"][0]["precision"] == "int8"
    code, output = _invoke(["predict", scene, "--model", folder, "-o", tmp_path / "b.tif", "--overlap", 16,
                            "--precision", "fp32", "--json"])
    assert code == 0, output
    assert "fp32 torch checkpoint (--precision fp32)" in output
    assert json.loads(output.strip().splitlines()[-1])["results"][0]["runtime"] == "torch"
