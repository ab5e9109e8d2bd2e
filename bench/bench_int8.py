"""Benchmark: int8 recipes for a trained checkpoint, their agreement with fp32 and speed.

For each recipe (calibration method, first convolution fp32 or not; the class logits stay
fp32 always), the checkpoint's fp32 ONNX graph is quantised on ``--calibration-tiles``
train tiles of ``--tiles`` (a prepare output) and compared with fp32 on every pixel with
data of its val tiles, as ``s2pipe export --precision int8`` does. Speed: the best of
``--rounds`` timings of ``--batches`` forward passes of a batch of 4 tiles, ONNX Runtime
fp32 and each int8 model, in this process, one after another. Prints one JSON object.

    python bench/bench_int8.py model/best.pt --tiles tiles/
    python bench/bench_int8.py model/best.pt --tiles tiles/ --recipes minmax tile-mean tile-mean+fp32-first
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_recipe(text: str):  # noqa: ANN201 (bench script)
    from s2pipe.export.quantize import Recipe

    tail = 0
    if "+fp32-tail-" in text:
        text, n = text.rsplit("+fp32-tail-", 1)
        tail = int(n)
    first = text.endswith("+fp32-first")
    method = text.removesuffix("+fp32-first")
    if method.startswith("percentile"):
        pct = float(method.split("-", 1)[1]) if "-" in method else 99.999
        return Recipe("percentile", percentile=pct, fp32_first=first, fp32_tail=tail)
    return Recipe(method, fp32_first=first, fp32_tail=tail)  # type: ignore[arg-type]


def _speed(session, x: np.ndarray, batches: int, rounds: int) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(batches):
            session.run(None, {name: x})
        best = min(best, time.perf_counter() - t)
    return best / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--tiles", type=Path, required=True)
    ap.add_argument("--recipes", nargs="+", default=["minmax", "tile-mean", "tile-mean+fp32-first", "percentile-99.999",
                                                     "percentile-99.99", "entropy", "percentile-99.999+fp32-first"])
    ap.add_argument("--calibration-tiles", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from s2pipe.export.quantize import class_agreement, open_tiles, quantize_onnx
    from s2pipe.model.checkpoint import load_checkpoint
    from s2pipe.model.onnx import FORMAT, KEY_FORMAT, KEY_META, KEY_PRECISION, open_onnx, set_metadata, write_onnx  # noqa: I001
    from s2pipe.prediction.inference import OnnxWindowModel
    from s2pipe.resources import apply_threads

    threads = apply_threads()
    model, meta = load_checkpoint(args.checkpoint, device="cpu")
    tileset = open_tiles(args.tiles, meta)
    x = np.random.default_rng(0).normal(size=(4, len(meta.bands), meta.tile_size, meta.tile_size)).astype(np.float32)
    out: dict = {"bench": "int8", "checkpoint": str(args.checkpoint), "filters": meta.arch.filters,
                 "epoch": (meta.metrics or {}).get("best_epoch") or (meta.metrics or {}).get("epoch"),
                 "threads": threads, "load_before": os.getloadavg(), "recipes": {}}
    with tempfile.TemporaryDirectory(prefix="s2pipe-bench-int8-") as work:
        fp32 = write_onnx(model, meta, Path(work) / "fp32.onnx")
        ref = open_onnx(fp32, threads=threads)
        out["fp32_s_per_batch"] = round(_speed(ref.session, x, args.batches, args.rounds), 4)
        for text in args.recipes:
            recipe = parse_recipe(text)
            q = Path(work) / f"{recipe.name}.onnx"
            t = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # ORT's histogram calibrators print
                quantize_onnx(fp32, q, meta=meta, tiles_dir=args.tiles, count=args.calibration_tiles, recipe=recipe)
            quantise_s = time.perf_counter() - t
            set_metadata(q, {KEY_FORMAT: FORMAT, KEY_META: json.dumps(meta.to_dict()), KEY_PRECISION: "int8"})
            m = open_onnx(q, threads=threads)
            a = class_agreement(OnnxWindowModel(ref.session), OnnxWindowModel(m.session), meta=meta,
                                tileset=tileset, threshold=0.99)
            s = _speed(m.session, x, args.batches, args.rounds)
            out["recipes"][recipe.name] = {
                "agreement": round(a.agreement, 5), "fp32_accuracy": a.fp32_accuracy, "int8_accuracy": a.int8_accuracy,
                "s_per_batch": round(s, 4), "speedup_vs_onnx_fp32": round(out["fp32_s_per_batch"] / s, 2),
                "quantise_s": round(quantise_s, 1)}
            print(json.dumps({text: out["recipes"][recipe.name]}), flush=True, file=sys.stderr)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
