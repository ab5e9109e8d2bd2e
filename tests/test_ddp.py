"""DDP: two CPU processes with the gloo backend train and write one checkpoint, print the
result once, and a resume with another option or process count is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s2pipe.errors import CheckpointError
from s2pipe.model.checkpoint import load_checkpoint
from s2pipe.training.dataset import find_tiles, load_tiles
from s2pipe.training.options import TrainOptions
from s2pipe.training.train import train_model

from tiles_helpers import make_prepare_dir

CLI = Path(__file__).resolve().parents[1] / "cli.py"


def test_two_gloo_processes(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=7, splits=(4, 2, 1))
    out = tmp_path / "model"
    proc = _torchrun(tiles, out, "--epochs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert "int8.json" in names  # rank 0 alone writes the int8 model (where it passes) and its record
    assert [n for n in names if n not in ("int8.json", "best.int8.onnx")] == [
        "best.pt", "curves.png", "history.csv", "last.pt", "metrics.json", "run.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 2
    # metrics are reduced over ranks: every labelled pixel of each split counted once
    labelled = {s: int((load_tiles(find_tiles(tiles).split(s))[1] > 0).sum())
                for s in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        assert metrics[split]["pixels"] == labelled[split]
    model, meta = load_checkpoint(out / "best.pt")
    assert meta.arch.filters == 4
    # rank 0 alone printed the result and wrote the files (no stray temporaries above)
    assert proc.stdout.count('"epochs_run": 2') == 1 and len(proc.stdout.strip().splitlines()) == 1
    assert meta.train_options["world_size"] == 2
    last = (out / "last.pt").stat().st_mtime_ns
    # a resume must keep every option that shapes the run, the number of processes too
    with pytest.raises(CheckpointError, match="trained by 2 torchrun process"):
        train_model(out, tiles_dir=tiles, resume=out / "last.pt",
                    options=TrainOptions(epochs=3, batch_size=2, filters=4, device="cpu", save_samples=False))
    proc = _torchrun(tiles, out, "--epochs", "3", "--lr", "0.01", "--resume", str(out / "last.pt"))
    assert proc.returncode != 0 and "was trained with --lr 0.001, not 0.01" in proc.stderr
    assert (out / "last.pt").stat().st_mtime_ns == last


def _torchrun(tiles: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(CLI),
         "train", str(tiles), "-o", str(out), "--batch-size", "2", "--filters", "4", "--device", "cpu",
         "--no-save-samples", "--json", *options],
        env=env, capture_output=True, text=True, timeout=240)
