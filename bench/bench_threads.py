"""Benchmark: two ``s2pipe predict`` jobs at once against one alone, on one machine.

Each job's compute threads follow the CPUs it may use (:mod:`s2pipe.resources`); two jobs
sharing the cores should each take about 2x the time of one alone, not more (target
<= 2.3x). One run measures, in order: one predict alone, then two started together, each
a separate ``s2pipe predict`` process on the same stack and model (an untrained U-Net of
``--filters``; its speed does not depend on the weights). Prints one JSON object with
each process's wall and CPU seconds and ``ratio`` = mean wall of the pair / wall alone.

    python bench/bench_threads.py --size 1024 --filters 16
    python bench/bench_threads.py --stack demo-out/stack.tif --model demo-out/model/
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def _start(stack: Path, model: Path, out: Path, extra: list[str]) -> tuple[subprocess.Popen, float]:
    cmd = [sys.executable, str(ROOT / "cli.py"), "-q", *extra, "predict", str(stack), "--model", str(model),
           "-o", str(out), "--overwrite", "--json"]
    # /usr/bin/time-like CPU figures per child: wrap in a tiny python that reports its rusage
    wrapper = [sys.executable, "-c",
               "import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]).returncode; "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'rc': r, 'cpu_s': u.ru_utime + u.ru_stime}), file=sys.stderr)", *cmd]
    return subprocess.Popen(wrapper, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), \
        time.perf_counter()


def _wait(job: tuple[subprocess.Popen, float]) -> dict:
    proc, t0 = job
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    last = json.loads(err.strip().splitlines()[-1])
    if last["rc"] != 0:
        raise SystemExit(f"predict failed:\n{err}")
    return {"wall_s": round(wall, 2), "cpu_s": round(last["cpu_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", type=Path, help="stack to map (default: a plausible one of --size px)")
    ap.add_argument("--model", type=Path, help="model (default: an untrained U-Net of --filters)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--threads", type=int, help="s2pipe --threads of each job (default: what it finds)")
    args = ap.parse_args()
    from bench_predict import write_checkpoint, write_plausible_stack

    from s2pipe.resources import cgroup_cpu_limit, thread_count, usable_cpus

    extra = [] if args.threads is None else ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="s2pipe-bench-threads-") as work:
        tmp = Path(work)
        stack = args.stack or write_plausible_stack(tmp / "stack.tif", args.size)
        model = args.model or write_checkpoint(tmp / "model.pt", args.filters, 256)
        load_before = os.getloadavg()
        _wait(_start(stack, model, tmp / "warm.tif", extra))  # page cache and imports warm
        alone = _wait(_start(stack, model, tmp / "alone.tif", extra))
        pair = [_start(stack, model, tmp / f"pair{i}.tif", extra) for i in range(2)]
        together = [_wait(j) for j in pair]
    mean = sum(t["wall_s"] for t in together) / 2
    print(json.dumps({"bench": "threads", "size_px": args.size, "filters": args.filters,
                      "stack": str(args.stack) if args.stack else None, "alone": alone, "together": together,
                      "ratio": round(mean / alone["wall_s"], 2),
                      "cpu_ratio": round(sum(t["cpu_s"] for t in together) / 2 / alone["cpu_s"], 2),
                      "threads_per_job": args.threads or thread_count(), "usable_cpus": usable_cpus(),
                      "cgroup_cpus": cgroup_cpu_limit(), "cpus": os.cpu_count(),
                      "cpu_model": platform.processor() or None,
                      "load_before": load_before, "load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
