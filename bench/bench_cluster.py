"""Benchmark of ``predict`` on a local Dask cluster against the same scenes in one process.

Writes ``--scenes`` plausible 12-band stacks of ``--size`` px (as ``bench_predict`` does)
and an untrained U-Net of ``--filters`` (32 = the study's; speed does not depend on the
weights), then maps all of them, one after the other in the same run:

1. in one child process with 2 torch threads (``predict`` without a cluster);
2. on a ``LocalCluster`` of 2 worker processes x 1 thread started here (its start-up timed
   apart), cold: the workers import torch and load the model;
3. ``--repeat`` times: in one process, then on the (warm) cluster, so that each cluster
   run has an in-process run right before it (the machine's load drifts).

Prints one JSON object: wall seconds of each run, the ratios cluster / in-process (target
<= 1.10): cold (against the mean of the in-process runs around it) and warm (the median
of each pair), per-scene seconds and windows/s of both (the figures of the scaling table
in ``bench/RESULTS.md``) and the load average before and after.

    python bench/bench_cluster.py --scenes 4 --size 1024 --filters 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import write_checkpoint, write_plausible_stack  # noqa: E402  (a sibling script)

CHILD = r"""
import json, sys, time, torch
from s2pipe.prediction.predict import predict_scenes
from s2pipe.prediction.options import PredictOptions
torch.set_num_threads(2)
ckpt, out, scenes = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
run = predict_scenes(scenes, ckpt, out, device="cpu")
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "scene_s": [r.seconds for r in run.results],
                  "windows": [r.windows for r in run.results], "peak_rss_mb": run.peak_rss_mb}))
"""


def in_process(ckpt: Path, out: Path, scenes: list[Path]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(out), *map(str, scenes)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def on_cluster(runner, ckpt: Path, out: Path, scenes: list[Path]) -> dict:
    from s2pipe.prediction.options import PredictOptions
    from s2pipe.prediction.predict import predict_scenes

    t0 = time.perf_counter()
    run = predict_scenes(scenes, ckpt, out, PredictOptions(device="cpu"), runner=runner)
    if run.failures:
        sys.exit(run.failures)
    return {"wall_s": time.perf_counter() - t0, "scene_s": [r.seconds for r in run.results],
            "windows": [r.windows for r in run.results],
            "worker_peak_rss_mb": max(r.peak_rss_mb for r in run.results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from s2pipe.cluster.runner import open_runner

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        tmp = Path(tmp)
        ckpt = write_checkpoint(tmp / "best.pt", args.filters, 256)
        scenes = [write_plausible_stack(tmp / f"scene{i}.tif", args.size, seed=i) for i in range(args.scenes)]
        here = [in_process(ckpt, tmp / "a", scenes)]
        t0 = time.perf_counter()
        with open_runner(workers=args.workers, threads=1) as runner:
            start_s = time.perf_counter() - t0
            cold = on_cluster(runner, ckpt, tmp / "b", scenes)
            warm = []
            for r in range(args.repeat):
                here.append(in_process(ckpt, tmp / f"a{r}", scenes))
                warm.append(on_cluster(runner, ckpt, tmp / f"b{r}", scenes))
    pairs = [w["wall_s"] / h["wall_s"] for h, w in zip(here[1:], warm)]
    one_thread = [s for r in (cold, *warm) for s in r["scene_s"]]
    two_threads = [s for r in here for s in r["scene_s"]]
    windows = here[0]["windows"][0]
    print(json.dumps({
        "benchmark": "cluster", "scenes": args.scenes, "size": args.size, "filters": args.filters,
        "workers": args.workers, "threads_per_worker": 1, "in_process_threads": 2, "cpus": os.cpu_count(),
        "in_process_s": [round(h["wall_s"], 2) for h in here],
        "cluster_start_s": round(start_s, 2), "cluster_cold_s": round(cold["wall_s"], 2),
        "cluster_warm_s": [round(w["wall_s"], 2) for w in warm],
        "ratio_cold": round(cold["wall_s"] / mean([h["wall_s"] for h in here[:2]]), 3),
        "ratio_warm_pairs": [round(r, 3) for r in pairs], "ratio_warm": round(median(pairs), 3),
        "target_ratio": 1.10,
        "windows_per_scene": windows,
        "scene_s_2_threads_median": round(median(two_threads), 2),
        "scene_s_1_thread_median": round(median(one_thread), 2),
        "windows_per_s_2_threads": round(windows / median(two_threads), 3),
        "windows_per_s_1_thread": round(windows / median(one_thread), 3),
        "peak_rss_mb_in_process": here[0]["peak_rss_mb"], "peak_rss_mb_worker": cold["worker_peak_rss_mb"],
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
