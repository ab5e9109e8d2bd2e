"""CPU cost of the encoder U-Nets against the study's U-Net, fp32 and int8, in one run.

For each architecture (``--archs``; ``unet`` is the study's 32-filter U-Net) an untrained
checkpoint (speed does not depend on the weights) is written, exported to fp32 ONNX and
to int8 ONNX (``s2pipe export --precision int8``, calibrated on 8 windows of a generated
stack, checked on 4), and then every (architecture, precision) is timed round-robin over
``--rounds`` rounds (after ``--warmup`` untimed batches of each: torch's first passes on
the CPU are 2-5x slower): ``--windows`` normalised windows of ``--tile`` px in batches of
``--batch`` through :func:`s2pipe.prediction.runtime.load_window_model`'s runner, i.e. the
model alone as predict runs it. Prints one JSON object: per run windows/s, per model the
best round, its ratio to the study's U-Net in torch fp32, and the minutes a full
10980 px scene (3,364 windows of 256 px at overlap 64) implies for the model alone
(end to end, predict's reading and blending add 13-29%: bench_predict.py).

    python bench/bench_encoders.py --rounds 2
    python bench/bench_encoders.py --archs unet resnet18 --precisions torch-fp32 onnx-int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_predict import write_calibration_tiles, write_plausible_stack  # noqa: E402

FULL_SCENE_WINDOWS = 3364  # a 10980 px scene, 256 px windows, overlap 64 (bench_predict.py)
ARCHS = ("unet", "resnet18", "resnet34", "resnet50", "efficientnet_b0")
PRECISIONS = ("torch-fp32", "onnx-fp32", "onnx-int8")


def write_checkpoint(path: Path, arch: str, tile: int) -> Path:
    import torch

    from s2pipe.legend import DEFAULT_LEGEND
    from s2pipe.model.checkpoint import ModelMeta, save_checkpoint
    from s2pipe.model.encoder_unet import EncoderUNet
    from s2pipe.model.normalization import Normalization
    from s2pipe.model.unet import UNet
    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    torch.manual_seed(0)
    model = UNet(12, 8, 32) if arch == "unet" else EncoderUNet(arch, 12, 8)
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, tile_size=tile, arch=model.arch,
                     normalization=Normalization((2000.0,) * 12, (1200.0,) * 12),
                     radiometry={"convention": RADIOMETRY_CONVENTION})
    return save_checkpoint(path, model=model, meta=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS))
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3, help="Untimed batches of each model before round 0.")
    args = ap.parse_args()

    import numpy as np
    import torch

    from s2pipe.export.engine import ExportOptions, export_model
    from s2pipe.prediction.runtime import load_window_model

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="s2pipe-bench-enc-") as work:
        tmp = Path(work)
        stack = write_plausible_stack(tmp / "stack.tif", 1024)
        tiles = write_calibration_tiles(tmp / "calibration", stack, args.tile)
        runners, params, exports = {}, {}, {}
        for arch in args.archs:
            ckpt = write_checkpoint(tmp / f"{arch}.pt", arch, args.tile)
            params[arch] = sum(int(v.numel()) for v in torch.load(ckpt, weights_only=True)["model"].values())
            for p in args.precisions:
                t0 = time.perf_counter()
                if p == "torch-fp32":
                    path = ckpt
                elif p == "onnx-fp32":
                    path = export_model(ckpt, tmp / f"{arch}.onnx", ExportOptions(overwrite=True)).output
                else:
                    path = export_model(ckpt, tmp / f"{arch}.int8.onnx", ExportOptions(
                        precision="int8", tiles_dir=tiles, min_agreement=0.0, overwrite=True)).output
                exports[f"{arch}/{p}"] = time.perf_counter() - t0
                runners[(arch, p)] = load_window_model(path, device="cpu").runner
        x = np.random.default_rng(0).normal(size=(args.batch, 12, args.tile, args.tile)).astype(np.float32)
        for run in runners.values():  # torch's CPU kernels need a few passes to reach speed
            for _ in range(args.warmup):
                run(x)
        runs = []
        for r in range(args.rounds):
            for (arch, p), run in runners.items():
                run(x)  # warm-up
                t0 = time.perf_counter()
                left = args.windows
                while left > 0:
                    run(x[:min(args.batch, left)])
                    left -= args.batch
                s = time.perf_counter() - t0
                runs.append({"round": r, "arch": arch, "precision": p, "windows_per_s": args.windows / s})
    best: dict[str, dict] = {}
    for run in runs:
        key = f"{run['arch']}/{run['precision']}"
        if key not in best or run["windows_per_s"] > best[key]["windows_per_s"]:
            best[key] = {"arch": run["arch"], "precision": run["precision"], "windows_per_s": run["windows_per_s"]}
    base = best.get("unet/torch-fp32", next(iter(best.values())))["windows_per_s"]
    for b in best.values():
        b["ratio_to_study_unet_torch_fp32"] = b["windows_per_s"] / base
        b["full_scene_min_model_alone"] = FULL_SCENE_WINDOWS / b["windows_per_s"] / 60
        b["parameters"] = params[b["arch"]]
    print(json.dumps({"tile": args.tile, "batch": args.batch, "windows": args.windows,
                      "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup, "loadavg_start": load0,
                      "loadavg_end": os.getloadavg(), "seconds": time.perf_counter() - t_start,
                      "export_s": exports, "summary": list(best.values()), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
