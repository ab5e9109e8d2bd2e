"""DDP: two CPU processes with the gloo backend train and write one checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from s2pipe.model.checkpoint import load_checkpoint
from s2pipe.training.dataset import find_tiles, load_tiles

from tiles_helpers import make_prepare_dir

CLI = Path(__file__).resolve().parents[1] / "cli.py"


def test_two_gloo_processes(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=7, splits=(4, 2, 1))
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(CLI),
         "train", str(tiles), "-o", str(out), "--epochs", "2", "--batch-size", "2", "--filters", "4",
         "--device", "cpu", "--no-save-samples", "--json"],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "curves.png", "history.csv", "last.pt",
                                                     "metrics.json", "run.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 2
    # metrics are reduced over ranks: every labelled pixel of each split counted once
    labelled = {s: int((load_tiles(find_tiles(tiles).split(s))[1] > 0).sum())
                for s in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        assert metrics[split]["pixels"] == labelled[split]
    model, meta = load_checkpoint(out / "best.pt")
    assert meta.arch.filters == 4
    # both ranks printed a result; rank 0 alone wrote the files (no stray temporaries above)
    assert proc.stdout.count('"epochs_run": 2') == 2
