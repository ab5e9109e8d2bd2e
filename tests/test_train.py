"""Training: masked loss, overfitting, resume, outputs and the CLI contract."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import cli
from s2pipe.errors import CheckpointError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.model.checkpoint import load_checkpoint, read_checkpoint
from s2pipe.model.normalization import Normalization
from s2pipe.model.unet import Arch, UNet
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION
from s2pipe.training.loop import masked_cross_entropy
from s2pipe.training.train import TrainOptions, train_model

from conftest import SEED_SAMPLE, needs_seed_sample
from tiles_helpers import STUDY_BREAKAGES, break_study_dirs, make_prepare_dir, make_study_dirs, make_study_format_dirs

TINY = dict(batch_size=4, filters=4, save_samples=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convolutions: one thread is faster


def test_loss_ignores_label_zero():
    torch.manual_seed(0)
    model = UNet(filters=4)
    x = torch.randn(2, 12, 16, 16)
    loss, denom = masked_cross_entropy(model(x), torch.zeros(2, 16, 16, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == 0.0 and denom.item() == 0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    # changing logits where the label is 0 leaves the loss unchanged
    labels = torch.randint(0, 9, (1, 4, 4))
    logits = torch.randn(1, 8, 4, 4)
    other = logits.clone()
    other[:, :, labels[0] == 0] += 100.0
    same = masked_cross_entropy(other, labels)[0].item()
    assert masked_cross_entropy(logits, labels)[0].item() == pytest.approx(same)
    w = torch.arange(1.0, 9.0)
    loss_w, denom_w = masked_cross_entropy(logits, labels, w)
    assert denom_w.item() == pytest.approx(w[labels[labels > 0].long() - 1].sum().item())


def test_overfits_a_tiny_set(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=2, size=16, splits=(2, 0, 0))
    result = train_model(tmp_path / "m", tiles_dir=tiles,
                         options=TrainOptions(epochs=60, batch_size=2, filters=8, lr=1e-2, augment=False,
                                              save_samples=False, save_model=False))
    assert result.scores["train"] is not None and result.scores["train"].overall_accuracy >= 0.95
    assert result.scores["val"] is None and result.scores["test"] is None


def test_outputs_and_checkpoint_meta(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles")
    opts = TrainOptions(epochs=2, class_weights="inverse-frequency", save_summary=True,
                        **{**TINY, "save_samples": True})
    result = train_model(tmp_path / "m", tiles_dir=tiles, options=opts)
    out = tmp_path / "m"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pt", "last.pt", "history.csv", "metrics.json", "curves.png", "samples.png",
         "training_summary.txt", "run.json"])
    model, meta = load_checkpoint(out / "best.pt")
    assert meta.arch == Arch("unet", 12, 8, 4) and meta.legend == DEFAULT_LEGEND
    assert meta.tile_size == 32 and len(meta.normalization.mean) == 12 and meta.s2pipe_version
    assert meta.bands == BANDS and meta.radiometry.convention == RADIOMETRY_CONVENTION
    assert meta.train_options["class_weights"] == "inverse-frequency"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"train", "val", "test"} <= metrics.keys() and metrics["tiles"] == {"train": 8, "val": 2, "test": 2}
    # each split evaluated on its own tiles: pixel counts differ as the tiles do
    assert metrics["train"]["pixels"] > metrics["val"]["pixels"] > 0
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == metrics["test"]["pixels"]
    assert meta.metrics["test"]["miou"] == pytest.approx(metrics["test"]["miou"])
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_iou_8" in rows[0]
    assert result.best_epoch in (1, 2) and result.epochs_run == 2
    with pytest.raises(CheckpointError, match="best.pt holds no training state"):
        train_model(out, tiles_dir=tiles, options=opts, resume=out / "best.pt")


def test_resume_equals_uninterrupted(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, splits=(4, 1, 1))
    full = train_model(tmp_path / "full", tiles_dir=tiles, options=TrainOptions(epochs=4, seed=5, **TINY))
    train_model(tmp_path / "part", tiles_dir=tiles, options=TrainOptions(epochs=2, seed=5, **TINY))
    resumed = train_model(tmp_path / "part", tiles_dir=tiles, options=TrainOptions(epochs=4, seed=5, **TINY),
                          resume=tmp_path / "part" / "last.pt")
    assert resumed.epochs_run == full.epochs_run == 4
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "part" / "last.pt")
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
    ha = json.loads((tmp_path / "full" / "metrics.json").read_text())
    hb = json.loads((tmp_path / "part" / "metrics.json").read_text())
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h["history"]]  # noqa: E731
    assert strip(ha) == strip(hb)
    assert ha["test"] == hb["test"]


class _Interrupt(Exception):
    pass


def _interrupt_after(batches: int):
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] > batches:
            raise _Interrupt

    return progress


def test_onecycle_warms_up_anneals_and_resumes_exactly(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, splits=(4, 1, 1))  # 1 batch of 4 per epoch
    opts = TrainOptions(epochs=6, seed=5, schedule="onecycle", lr=1e-2, **TINY)
    train_model(tmp_path / "full", tiles_dir=tiles, options=opts)
    lrs = [float(r["lr"]) for r in csv.DictReader((tmp_path / "full" / "history.csv").open())]
    peak = int(np.argmax(lrs))
    assert lrs[0] < 1e-2 / 10 and 0 < peak < 5 and max(lrs) <= 1e-2 and lrs[-1] < lrs[peak] / 5
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    # killed during epoch 4: last.pt holds epoch 3, and the resumed run ends where the full one did
    with pytest.raises(_Interrupt):
        train_model(tmp_path / "part", tiles_dir=tiles, options=opts, progress=_interrupt_after(3))
    assert read_checkpoint(tmp_path / "part" / "last.pt").extra_state["epoch"] == 3
    train_model(tmp_path / "part", tiles_dir=tiles, options=opts, resume=tmp_path / "part" / "last.pt")
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "part" / "last.pt")
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
    # the schedule follows the epochs: neither another schedule nor more epochs resume it
    last = tmp_path / "part" / "last.pt"
    with pytest.raises(CheckpointError, match="--schedule onecycle, not plateau"):
        train_model(tmp_path / "part", tiles_dir=tiles, resume=last,
                    options=TrainOptions(epochs=6, seed=5, schedule="plateau", lr=1e-2, **TINY))
    with pytest.raises(CheckpointError, match="--epochs 6 under --schedule onecycle"):
        train_model(tmp_path / "part", tiles_dir=tiles, resume=last,
                    options=TrainOptions(epochs=9, seed=5, schedule="onecycle", lr=1e-2, **TINY))


def test_time_budget_stops_early(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(3, 1, 0))
    result = train_model(tmp_path / "m", tiles_dir=tiles,
                         options=TrainOptions(epochs=500, max_minutes=0.02, patience=10_000, **TINY))
    assert result.stop_reason.startswith("time budget") and 1 <= result.epochs_run < 500


@pytest.mark.parametrize("real", [pytest.param(True, marks=needs_seed_sample), False])
def test_cli_study_tile_writes_loadable_checkpoint(tmp_path, real):
    """The study's own tile (shared/seed-sample), or one written here in its exact format."""
    images, labels = (SEED_SAMPLE / "images", SEED_SAMPLE / "labels") if real else \
        make_study_format_dirs(tmp_path / "study")
    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train", "--images-dir", str(images),
                                      "--labels-dir", str(labels), "-o", str(out),
                                      "--epochs", "2", "--batch-size", "1", "--filters", "4", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["epochs_run"] == 2 and payload["tiles"]["train"] == 1
    model, meta = load_checkpoint(out / "best.pt")
    assert meta.train_options["tiles_source"] == "study" and meta.radiometry.assumed
    assert (out / "samples.png").stat().st_size > 0
    assert "epoch 2/2" in result.stderr


def _run(args):
    return CliRunner().invoke(cli, ["train", *args, "--epochs", "1", "--filters", "4"])


@pytest.mark.parametrize("breakage", sorted(STUDY_BREAKAGES))
def test_cli_bad_tiles_exit_1(tmp_path, breakage):
    images, labels = make_study_dirs(tmp_path, n=3)
    break_study_dirs(images, labels, breakage)
    culprit = STUDY_BREAKAGES[breakage]
    out = tmp_path / "model"
    result = _run(["--images-dir", str(images), "--labels-dir", str(labels), "-o", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and culprit in lines[-1]
    assert not out.exists()


def test_cli_refuses_existing_run_and_bad_usage(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=2, splits=(1, 1, 0))
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _run([str(tiles), "-o", str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _run(["-o", str(tmp_path / "x")]).exit_code == 2
    assert _run([str(tiles), "--images-dir", str(tiles), "-o", str(tmp_path / "x")]).exit_code == 2
    assert _run([str(tiles), "-o", str(tmp_path / "x"), "--class-weights", "magic"]).exit_code == 2
    bad_device = _run([str(tiles), "-o", str(tmp_path / "x"), "--device", "tpu7"])
    assert bad_device.exit_code == 1 and "Error: unknown device" in bad_device.stderr
    assert not (tmp_path / "x").exists()


def test_inputs_normalised_like_predict():
    from s2pipe.training.loop import Step

    norm = Normalization((100.0,) * 12, (50.0,) * 12)
    step = Step(torch.device("cpu"), norm.normalizer())
    images = torch.full((1, 12, 2, 2), 200, dtype=torch.uint16)
    images[0, :, 0, 0] = 0  # no data
    x, _ = step.inputs(images, torch.zeros(1, 2, 2, dtype=torch.uint8))
    assert x[0, :, 0, 0].abs().max() == 0 and torch.allclose(x[0, :, 1, 1], torch.full((12,), 2.0))


def test_cli_train_writes_the_int8_model_and_its_record(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(3, 1, 0))
    out = tmp_path / "model"
    result = _run([str(tiles), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "int8.json").read_text())
    assert record["passed"] == (out / "best.int8.onnx").is_file()  # kept only where it agrees >= 99%
    assert record["min_agreement"] == 0.99 and record["tries"]
    assert json.loads(result.stdout)["int8"]["passed"] == record["passed"]
    assert "train: " in result.stderr and "int8" in result.stderr
    plain = _run([str(tiles), "-o", str(tmp_path / "plain"), "--no-int8"])
    assert plain.exit_code == 0 and not (tmp_path / "plain" / "int8.json").exists()
