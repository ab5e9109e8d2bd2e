"""Benchmark of ``s2pipe predict``: pipeline overhead, tiles/s and peak memory.

For each scene size, a child process runs ``predict_scene`` end to end on a 12-band
stack (reading, normalising, inference, blending, writing the COG), then times the pure
model forward passes over the same number of windows with the same batch size, device
and memory format, in the same process right after. Prints one JSON object:

    overhead = predict seconds / forward seconds    (target <= 1.15 on CPU, overlap 64)
    tiles_per_s, peak_rss_mb (VmHWM of the child, measured before the forward timing)

The stack is a random-but-plausible harmonised scene (smooth fields of land-cover-like
spectra plus noise, written strip by strip), or ``--stack PATH``: any scene ``predict``
reads (a stack written by ``s2pipe prepare --stack``, or a SAFE from ``s2pipe synth``).
The checkpoint is an untrained U-Net of ``--filters`` (32 = the study's; its speed does
not depend on the weights), or ``--checkpoint PATH``.

``--precisions torch-fp32 onnx-fp32 onnx-int8`` runs the same scene, windows and batch
size once per model: the checkpoint in torch, its fp32 ONNX export and its int8 export
in ONNX Runtime (``s2pipe export``; calibrated on ``--tiles DIR``, a prepare output, or
else on 8 windows cut from the stack as train tiles and 4 as val tiles). Each run also
reports ``agreement``: the fraction of pixels mapped by both whose class equals the first
precision's map (meaningful only for a trained ``--checkpoint``). ``summary`` gives each
precision's best windows/s over ``--rounds`` round-robin runs (end to end and forward
only) and ``ratio``/``forward_ratio`` to the first precision's best.

    python bench/bench_predict.py --sizes 2560 --filters 32
    python bench/bench_predict.py --sizes 2560 10980 --filters 8
    python bench/bench_predict.py --sizes 2560 --filters 32 --rounds 2 \
        --precisions torch-fp32 onnx-fp32 onnx-int8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np, torch
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene
from s2pipe.prediction.runtime import load_window_model
from s2pipe.resources import peak_rss_mb

stack, ckpt, out, overlap, batch, device, timing = sys.argv[1:8]
overlap, batch = int(overlap), int(batch)
t0 = time.perf_counter()
r = predict_scene(stack, ckpt, out, PredictOptions(overlap=overlap, batch_size=batch, device=device))
wall = time.perf_counter() - t0
peak = peak_rss_mb()
loaded = load_window_model(ckpt, device=device)
fwd, meta = loaded.runner, loaded.meta
dev = torch.device(loaded.device)
t = meta.tile_size
x = torch.from_numpy(np.random.default_rng(0).normal(size=(batch, 12, t, t)).astype(np.float32))
fwd(x)  # warm-up; predict_s includes its own cold first batch, so the ratio errs high
if dev.type == "cuda":
    torch.cuda.synchronize()
t1 = time.perf_counter()
left = r.windows if timing == "forward" else 0
while left > 0:
    fwd(x[:min(batch, left)])
    left -= batch
if dev.type == "cuda":
    torch.cuda.synchronize()
forward = time.perf_counter() - t1 if timing == "forward" else None
print(json.dumps({"size": [r.width, r.height], "windows": r.windows, "predict_s": r.seconds,
                  "predict_wall_s": wall, "forward_s": forward,
                  "overhead": r.seconds / forward if forward else None,
                  "tiles_per_s": r.windows / r.seconds,
                  "forward_tiles_per_s": r.windows / forward if forward else None,
                  "peak_rss_mb": peak, "runtime": r.runtime, "precision": r.precision,
                  "torch_threads": torch.get_num_threads(), "device": str(dev)}))
"""

PRECISIONS = ("torch-fp32", "onnx-fp32", "onnx-int8")


def write_plausible_stack(path: Path, size: int, seed: int = 0, rows: int | None = None) -> Path:
    """A harmonised 12-band uint16 stack: smooth class regions with spectra, plus noise."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    rng = np.random.default_rng(seed)
    spectra = rng.uniform(300, 4500, size=(8, 12))
    height = rows or size
    profile = dict(driver="GTiff", width=size, height=height, count=12, dtype="uint16",
                   crs="EPSG:32633", transform=from_origin(600000, 5700000, 10, 10), nodata=0,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                   interleave="pixel", BIGTIFF="IF_SAFER")
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = BANDS
        dst.update_tags(S2PIPE_RADIOMETRY=json.dumps({"convention": RADIOMETRY_CONVENTION}))
        for r0 in range(0, height, 512):
            h = min(512, height - r0)
            yy, xx = np.mgrid[r0:r0 + h, 0:size].astype(np.float32)
            field = np.sin(xx / 173.0) * np.cos(yy / 131.0) + 0.5 * np.sin((xx + yy) / 57.0)
            cls = np.clip(((field + 1.5) / 3.0 * 8).astype(int), 0, 7)
            data = spectra[cls].transpose(2, 0, 1) + rng.normal(0, 150, (12, h, size))
            dst.write(np.clip(data, 1, 10000).astype(np.uint16), window=Window(0, r0, size, h))
    return path


def write_checkpoint(path: Path, filters: int, tile: int) -> Path:
    import torch

    from s2pipe.legend import DEFAULT_LEGEND
    from s2pipe.model.checkpoint import ModelMeta, save_checkpoint
    from s2pipe.model.normalization import Normalization
    from s2pipe.model.unet import UNet
    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    torch.manual_seed(0)
    model = UNet(12, 8, filters)
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, tile_size=tile, arch=model.arch,
                     normalization=Normalization((2000.0,) * 12, (1200.0,) * 12),
                     radiometry={"convention": RADIOMETRY_CONVENTION})
    save_checkpoint(path, model=model, meta=meta)
    return path


def write_calibration_tiles(root: Path, stack: Path, tile: int) -> Path:
    """A prepare-like folder of 8 train and 4 val windows cut from ``stack`` (labels 0):
    enough to calibrate an int8 model for a speed run, not to judge its quality."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from s2pipe.legend import legend_to_list
    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    tiles = []
    with rasterio.open(stack) as src:
        step = max(1, (min(src.width, src.height) - tile) // 3)
        for k in range(12):
            row, col = (k // 4) * step, (k % 4) * step * 3 // 4
            tid = f"r{row:06d}_c{col:06d}"
            window = Window(col, row, tile, tile)
            profile = dict(driver="GTiff", width=tile, height=tile, crs=src.crs,
                           transform=src.window_transform(window))
            with rasterio.open(root / "images" / f"{tid}.tif", "w", count=12, dtype="uint16",
                               **profile) as dst:
                dst.write(src.read(window=window, boundless=True, fill_value=0))
            with rasterio.open(root / "labels" / f"{tid}.tif", "w", count=1, dtype="uint8",
                               **profile) as dst:
                dst.write(np.zeros((1, tile, tile), np.uint8))
            tiles.append({"id": tid, "row": row, "col": col, "split": "train" if k < 8 else "val"})
    (root / "prepare.json").write_text(json.dumps({
        "bands": list(BANDS), "legend": legend_to_list(), "tile_size": tile,
        "radiometry": {"convention": RADIOMETRY_CONVENTION}, "tiles": tiles}))
    return root


@dataclass
class Model:
    path: Path
    val_agreement: float | None = None  # int8: agreement with fp32 on the val tiles (export's check)


def models_for(precisions: list[str], ckpt: Path, tmp: Path, tiles: Path | None,
               stack: Path) -> dict[str, Model]:
    """The model file of each precision: the checkpoint, or its ONNX exports."""
    from s2pipe.export.engine import ExportOptions, export_model
    from s2pipe.model.checkpoint import read_checkpoint

    models = {}
    for p in precisions:
        if p == "torch-fp32":
            models[p] = Model(ckpt)
        elif p == "onnx-fp32":
            models[p] = Model(export_model(ckpt, tmp / "model.onnx", ExportOptions(overwrite=True)).output)
        else:
            tile = read_checkpoint(ckpt).meta.tile_size
            tiles = tiles or write_calibration_tiles(tmp / "calibration", stack, tile)
            r = export_model(ckpt, tmp / "model.int8.onnx",
                             ExportOptions(precision="int8", tiles_dir=tiles, min_agreement=0.0, overwrite=True))
            models[p] = Model(r.output, r.agreement.agreement if r.agreement else None)
    return models


def map_agreement(a: Path, b: Path) -> float:
    """Fraction of the pixels mapped in both maps (not 0) whose classes are equal."""
    import rasterio

    same = both = 0
    with rasterio.open(a) as ma, rasterio.open(b) as mb:
        for _, window in ma.block_windows(1):
            x, y = ma.read(1, window=window), mb.read(1, window=window)
            mapped = (x > 0) & (y > 0)
            same += int((x == y)[mapped].sum())
            both += int(mapped.sum())
    return same / both if both else 1.0


def summarize(runs: list[dict], precisions: list[str]) -> dict[str, dict]:
    """Per precision: the best windows/s of its rounds (end to end and forward only) and
    their ratios to the first precision's best, plus the map agreement with the first."""
    out: dict[str, dict] = {}
    for p in precisions:
        mine = [r for r in runs if r["model"] == p]
        fwd = [r["forward_tiles_per_s"] for r in mine if r.get("forward_tiles_per_s")]
        out[p] = {"tiles_per_s": max(r["tiles_per_s"] for r in mine),
                  "forward_tiles_per_s": max(fwd) if fwd else None,
                  "agreement": mine[0].get("agreement"),
                  "export_val_agreement": mine[0].get("export_val_agreement")}
    ref = out[precisions[0]]
    for v in out.values():
        v["ratio"] = v["tiles_per_s"] / ref["tiles_per_s"]
        if v["forward_tiles_per_s"] and ref["forward_tiles_per_s"]:
            v["forward_ratio"] = v["forward_tiles_per_s"] / ref["forward_tiles_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2560])
    ap.add_argument("--stack", type=Path, help="Use this stack instead of generating one.")
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int,
                    help="Scene height (default: square).")
    ap.add_argument("--no-forward", action="store_true",
                    help="Skip the forward-only timing (memory runs on big scenes).")
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["torch-fp32"],
                    help="Models to run side by side on the same windows (first = reference).")
    ap.add_argument("--rounds", type=int, default=1,
                    help="Run the precisions round-robin this many times; the summary keeps each "
                         "one's best (on a shared machine the load changes between runs).")
    ap.add_argument("--checkpoint", type=Path, help="A trained best.pt instead of a random U-Net.")
    ap.add_argument("--tiles", type=Path, help="int8: the prepare output to calibrate and check on.")
    args = ap.parse_args()
    runs = []
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        ckpt = args.checkpoint or write_checkpoint(tmp / "best.pt", args.filters, args.tile)
        stacks = [args.stack] if args.stack else [None] * len(args.sizes)
        for size, stack in zip(args.sizes, stacks, strict=False):  # --stack: one scene
            t0 = time.perf_counter()
            stack = stack or write_plausible_stack(tmp / f"stack_{size}.tif", size, rows=args.rows)
            made = time.perf_counter() - t0
            models = models_for(args.precisions, ckpt, tmp, args.tiles, stack)
            first: dict | None = None
            these = []
            for round_ in range(args.rounds):
                for precision in args.precisions:
                    out_map = tmp / f"map_{size}_{precision}_{round_}.tif"
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, str(stack), str(models[precision].path),
                         str(out_map), str(args.overlap), str(args.batch_size), args.device,
                         "none" if args.no_forward else "forward"],
                        capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(out.stderr)
                    run = json.loads(out.stdout.strip().splitlines()[-1])
                    run.update(stack_seconds=made, model=precision, round=round_)
                    if len(args.precisions) > 1:
                        first = first or {**run, "map": out_map}
                        run["agreement"] = map_agreement(first["map"], out_map)
                        if models[precision].val_agreement is not None:
                            run["export_val_agreement"] = models[precision].val_agreement
                    these.append(run)
            runs += these
            if len(args.precisions) > 1:
                name = args.stack.name if args.stack else str(size)
                summaries[name] = summarize(these, args.precisions)
    print(json.dumps({"benchmark": "predict", "filters": args.filters, "tile": args.tile,
                      "overlap": args.overlap, "batch_size": args.batch_size,
                      "device": args.device, "target_overhead": 1.15,
                      "checkpoint": str(args.checkpoint) if args.checkpoint else "random",
                      "rounds": args.rounds, "summary": summaries, "runs": runs}))


if __name__ == "__main__":
    main()
