"""Benchmark: s2pipe's default predict path against geoai's ``predict_geotiff``, side by side.

Same model (a ``train`` folder: its ``best.pt``), same stack, same windows (256 px, overlap
64, batch 4), CPU. Each path runs in its own process, one after the other, and reports its
wall time and peak resident memory:

* ``s2pipe``: ``s2pipe predict STACK --model MODEL_DIR`` (the default path: the folder's
  int8 model where it passed, else ``best.pt``);
* ``s2pipe-fp32``: the same with ``--precision fp32`` (torch, the exact path);
* ``geoai``: geoai's ``predict_geotiff`` on the checkpoint's torch module, with the
  checkpoint's normalisation as ``preprocess_fn`` and argmax as ``postprocess_fn``.

geoai is taken from its released source without its package: ``--geoai-source`` is the
``geoai/`` folder of a geoai-py wheel (``pip download --no-deps geoai-py``, unzipped);
only ``inference.py`` is loaded, and ``geoai.utils.get_device`` (all it imports from the
package, whose ``__init__`` pulls in leafmap and more) is given as "the CPU". Prints one
JSON object: per path wall_s, cpu_s, peak_rss_mb; ratios to geoai's; how many pixels of
each map equal geoai's; and with ``--truth`` each map's mIoU against it.

    python bench/bench_geoai.py --stack demo-out/stack.tif --model demo-out/model \\
        --geoai-source /tmp/geoai/x/geoai --truth demo-out/scene/truth.tif
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GEOAI_RUN = r"""
import importlib.util, json, resource, sys, time, types
import numpy as np
import torch
src, stack, model_dir, out = sys.argv[1:5]
utils = types.ModuleType("geoai.utils")
utils.get_device = lambda: torch.device("cpu")
pkg = types.ModuleType("geoai"); pkg.__path__ = []; pkg.utils = utils
sys.modules["geoai"], sys.modules["geoai.utils"] = pkg, utils
spec = importlib.util.spec_from_file_location("geoai.inference", src + "/inference.py")
inference = importlib.util.module_from_spec(spec); spec.loader.exec_module(inference)
from s2pipe.model.checkpoint import load_checkpoint
from s2pipe.resources import apply_threads
apply_threads()
model, meta = load_checkpoint(model_dir + "/best.pt")
mean = np.asarray(meta.normalization.mean, np.float32)[:, None, None]
std = np.asarray(meta.normalization.std, np.float32)[:, None, None]
t0 = time.perf_counter()
inference.predict_geotiff(model, stack, out, tile_size=meta.tile_size, overlap=meta.tile_size // 4,
                          batch_size=4, num_classes=meta.num_classes, output_dtype="uint8", output_nodata=0,
                          preprocess_fn=lambda x: (x - mean) / std,
                          postprocess_fn=lambda p: (p.argmax(axis=0) + 1).astype(np.uint8)[None],
                          device="cpu", verbose=False)
print(json.dumps({"inner_s": time.perf_counter() - t0}))
"""


def _run(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, CPU seconds and peak RSS (of the child alone)."""
    wrapper = [sys.executable, "-c",
               "import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]).returncode; "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'rc': r, 'cpu_s': u.ru_utime + u.ru_stime, 'rss_kb': u.ru_maxrss}), "
               "file=sys.stderr)", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(wrapper, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    last = json.loads(proc.stderr.strip().splitlines()[-1])
    if last["rc"] != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stderr}")
    return {"wall_s": round(wall, 2), "cpu_s": round(last["cpu_s"], 2),
            "peak_rss_mb": round(last["rss_kb"] / 1024, 1)}


def _equal_share(a: Path, b: Path) -> float:
    import numpy as np
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        pa, pb = x.read(1), y.read(1)
    return round(float(np.mean(pa == pb)), 5)


def _miou(path: Path, truth: Path) -> float:
    """mIoU of a map against a truth raster on the same grid, over every labelled pixel (the
    training area included: a comparison of two maps of one model, not an accuracy)."""
    import numpy as np
    import rasterio

    with rasterio.open(path) as m, rasterio.open(truth) as t:
        p, y = m.read(1), t.read(1)
    keep = y > 0
    n = int(max(p.max(), y.max()))
    cm = np.bincount(y[keep].astype(np.int64) * (n + 1) + p[keep], minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
    tp = np.diag(cm)[1:].astype(float)
    union = cm[1:, :].sum(1) + cm[:, 1:].sum(0) - tp
    return round(float(np.mean(tp[union > 0] / union[union > 0])), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", type=Path, required=True, help="a 12-band stack (prepare --stack)")
    ap.add_argument("--model", type=Path, required=True, help="a train output folder")
    ap.add_argument("--geoai-source", type=Path, required=True, help="the geoai/ folder of a geoai-py wheel")
    ap.add_argument("--truth", type=Path, help="a truth raster on the stack's grid: each map's mIoU against it")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = {p: Path(tmp) / f"{p}.tif" for p in ("s2pipe", "s2pipe-fp32", "geoai")}
        cli = [sys.executable, str(ROOT / "cli.py"), "-q", "predict", str(args.stack), "--model",
               f"{args.model}/", "--overlap", "64", "--batch-size", "4"]
        runs = {"s2pipe": _run([*cli, "-o", str(out["s2pipe"])]),
                "s2pipe-fp32": _run([*cli, "--precision", "fp32", "-o", str(out["s2pipe-fp32"])]),
                "geoai": _run([sys.executable, "-c", GEOAI_RUN, str(args.geoai_source), str(args.stack),
                               str(args.model), str(out["geoai"])])}
        g = runs["geoai"]
        for name in ("s2pipe", "s2pipe-fp32"):
            runs[name]["wall_vs_geoai"] = round(runs[name]["wall_s"] / g["wall_s"], 3)
            runs[name]["memory_vs_geoai"] = round(runs[name]["peak_rss_mb"] / g["peak_rss_mb"], 3)
            runs[name]["pixels_equal_to_geoai"] = _equal_share(out[name], out["geoai"])
        if args.truth is not None:
            for name, path in out.items():
                runs[name]["miou_vs_truth"] = _miou(path, args.truth)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                      "stack": str(args.stack), "model": str(args.model), **runs}, indent=1))


if __name__ == "__main__":
    main()
