"""Transfer on synthetic worlds: a pretrained encoder and ``--init`` against from scratch.

Worlds are ``s2pipe synth`` products of different ``--seed`` (other ground, the same
classes and spectra). The target world's tiles keep ``--fraction`` of their train tiles
(its val and test tiles stay whole); every model is then evaluated as a user would: the
target scene predicted and its map compared with the scene's truth (``s2pipe evaluate``).

A. encoder: a resnet18 U-Net trained (supervised) on the ``--source-seeds`` worlds; its
   checkpoint passed as ``--encoder-weights`` (preset s2pipe: the file's ``encoder.*``
   keys are taken) to a resnet18 U-Net fine-tuned on the few target labels, against the
   same network from random weights on the same tiles and the same ``--minutes``.
B. init: a study U-Net (``--filters``) trained on the first source world (another region);
   ``--init`` from it on the few target labels, against the study U-Net from scratch on
   the same tiles and minutes.

Every run trains to its whole time budget (no early stop; the best epoch is kept).
Prints one JSON object: each model's map mIoU and OA, epochs and minutes, and the load.

    python bench/bench_transfer.py --size 768 --pretrain-minutes 3 --minutes 1.5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "cli"]
ROOT = Path(__file__).resolve().parents[1]


def s2pipe(*args: object) -> dict:
    out = subprocess.run([*CLI, *map(str, args), "--json"], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"s2pipe {' '.join(map(str, args))} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def few_labels(tiles: Path, out: Path, fraction: float, seed: int) -> int:
    """A copy of ``tiles`` keeping ``fraction`` of its train tiles (val, test whole)."""
    shutil.copytree(tiles, out)
    manifest = json.loads((out / "prepare.json").read_text())
    train = [t for t in manifest["tiles"] if t["split"] == "train"]
    keep = {t["id"] for t in random.Random(seed).sample(train, max(2, round(fraction * len(train))))}
    for t in train:
        if t["id"] not in keep:
            for sub in ("images", "labels"):
                (out / sub / f"{t['id']}.tif").unlink()
    manifest["tiles"] = [t for t in manifest["tiles"] if t["split"] != "train" or t["id"] in keep]
    (out / "prepare.json").write_text(json.dumps(manifest))
    return len(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--source-seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--target-seed", type=int, default=9)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--pretrain-minutes", type=float, default=3.0)
    ap.add_argument("--minutes", type=float, default=1.5, help="Budget of each target run.")
    ap.add_argument("--filters", type=int, default=16)
    args = ap.parse_args()
    t0, load0 = time.perf_counter(), os.getloadavg()
    # every run spends its whole budget: no early stop (the best epoch is kept anyway)
    common = ["--epochs", 100000, "--patience", 100000, "--batch-size", 8, "--no-save-samples", "--device", "cpu"]
    out: dict = {"benchmark": "transfer", "size": args.size, "tile": args.tile, "fraction": args.fraction,
                 "source_seeds": args.source_seeds, "target_seed": args.target_seed,
                 "minutes_each": args.minutes, "pretrain_minutes": args.pretrain_minutes}
    with tempfile.TemporaryDirectory(prefix="bench_transfer_") as tmp:
        root = Path(tmp)
        worlds = {}
        for seed in [*args.source_seeds, args.target_seed]:
            s = s2pipe("synth", root / f"w{seed}", "--size", args.size, "--seed", seed)
            s2pipe("prepare", s["safe_path"], "--labels", s["labels_path"], "-o", root / f"tiles{seed}",
                   "--tile-size", args.tile)
            worlds[seed] = s
        target = worlds[args.target_seed]
        out["target_train_tiles"] = few_labels(root / f"tiles{args.target_seed}", root / "few",
                                               args.fraction, 0)

        def train(name: str, *options: object, tiles: list | None = None, minutes: float = args.minutes) -> dict:
            r = s2pipe("train", *(tiles or [root / "few"]), "-o", root / name, *common,
                       "--max-minutes", minutes, *options)
            s2pipe("predict", target["safe_path"], "--model", root / name / "best.pt", "-o", root / f"{name}.tif",
                   "--overlap", args.tile // 4)
            ev = s2pipe("evaluate", root / f"{name}.tif", "--labels", target["truth_path"], "-o", root / f"ev_{name}")
            return {"map_miou": ev["miou"], "map_oa": ev["overall_accuracy"], "epochs": r["epochs_run"],
                    "best_epoch": r["best_epoch"], "minutes": r["minutes"], "stop": r["stop_reason"]}

        sources = [root / f"tiles{s}" for s in args.source_seeds]
        out["A_source_resnet18"] = train("src_enc", "--encoder", "resnet18", tiles=sources,
                                         minutes=args.pretrain_minutes)
        out["A_finetuned"] = train("ft", "--encoder", "resnet18", "--encoder-weights", root / "src_enc" / "best.pt",
                                   "--encoder-preset", "s2pipe", "--freeze-encoder", 2)
        out["A_scratch"] = train("enc_scratch", "--encoder", "resnet18")
        out["B_region_unet"] = train("region", "--filters", args.filters, tiles=sources[:1],
                                     minutes=args.pretrain_minutes)
        out["B_init"] = train("init", "--init", root / "region" / "best.pt")
        out["B_scratch"] = train("unet_scratch", "--filters", args.filters)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["loadavg_start"], out["loadavg_end"] = load0, os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
