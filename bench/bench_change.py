"""The figures of the change issue: false change, area errors, interval coverage, scale.

Prints one JSON object:

* ``rules``: on a synthetic two-date world with known change (``synth --changes``), a
  model trained on tiles of both dates, maps with probabilities of both dates, and
  ``change`` run with naive comparison and with a grid of ``--min-confidence`` x
  ``--mmu``: changed-vs-unchanged F1, the false-change area (mapped as change where the
  truth did not change), and each transition's mapped area against the true one;
  ``false_change_ratio`` is the default's false-change area over naive comparison's;
* ``coverage``: ``sample`` + ``evaluate`` of the default change map repeated over
  ``--seeds`` seeds with the synthetic truth as the analyst: how often the 95% interval of
  the area of change (and of each true transition) covers the true area, for each sample
  size of ``--points`` (one object per size, as a list), and for ``--extend-to``, each
  seed's labelled sample of the first size extended to that size (``sample --extend``);
* ``scale`` (with ``--full``): two ``--full-size`` px probability rasters, the world's
  predicted ones tiled (they compress as predict's output does): wall time, CPU-seconds
  and peak memory of ``change`` against reading both inputs once, in the same run.

    python bench/bench_change.py --workdir /tmp/bench-change --size 1024 --epochs 30 [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: Any) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from cli import cli; cli(sys.argv[1:], prog_name='s2pipe')",
                    "-q", *map(str, args)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def _world(work: Path, size: int, epochs: int, filters: int) -> dict[str, Path]:
    from s2pipe.synth.product import synth_product

    a = synth_product(work / "a", size=size, date="2018-06-07", baseline="02.08", overwrite=True) \
        if not (work / "a" / "truth.tif").exists() else None
    b = synth_product(work / "b", size=size, date="2024-06-20", baseline="05.10", changes=1, overwrite=True) \
        if not (work / "b" / "change_truth.tif").exists() else None
    del a, b
    safe_a, safe_b = next((work / "a").glob("*.SAFE")), next((work / "b").glob("*.SAFE"))
    for name, safe, labels in (("ta", safe_a, work / "a" / "landcover.gpkg"),
                               ("tb", safe_b, work / "b" / "landcover.gpkg")):
        if not (work / name / "prepare.json").exists():
            _cli("prepare", safe, "--labels", labels, "-o", work / name, "--overwrite")
    if not (work / "model" / "run.json").exists():
        _cli("train", work / "ta", work / "tb", "-o", work / "model", "--epochs", epochs, "--filters", filters,
             "--batch-size", 8, "--class-weights", "inverse-frequency", "--seed", 0, "--device", "cpu",
             "--overwrite")  # the demo's settings
    out = {}
    for key, safe in (("pa", safe_a), ("pb", safe_b)):
        out[key] = work / f"{key}.tif"
        if not out[key].exists():
            _cli("predict", safe, "--model", work / "model" / "best.pt", "-o", work / f"map_{key}.tif",
                 "--probabilities", out[key], "--probabilities-all", "--mask-clouds", "--device", "cpu", "--overwrite")
    return out


def _score(change: Path, truth: np.ndarray) -> dict[str, Any]:
    from s2pipe.raster.maps import open_map

    t = open_map(change, ("change",)).transitions
    codes = _read(change)
    valid = (codes > 0) & (truth > 0)
    mapped, true = t.changed(codes) & valid, t.changed(truth) & valid
    tp, fp, fn = int((mapped & true).sum()), int((mapped & ~true).sum()), int((~mapped & true).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    areas = {}
    for code in sorted(set(np.unique(truth[true]).tolist()) | set(np.unique(codes[mapped]).tolist())):
        m_ha, t_ha = int((codes[valid] == code).sum()) * 0.01, int((truth[valid] == code).sum()) * 0.01
        if t_ha or m_ha > 1:
            areas[t.name(code)] = {"mapped_ha": round(m_ha, 2), "true_ha": round(t_ha, 2),
                                   "error_ha": round(m_ha - t_ha, 2)}
    return {"f1": round(f1, 4), "false_change_ha": round(fp * 0.01, 2), "missed_change_ha": round(fn * 0.01, 2),
            "mapped_change_ha": round(int(mapped.sum()) * 0.01, 2), "true_change_ha": round(int(true.sum()) * 0.01, 2),
            "uncertain_ha": round(int((codes[valid] == t.uncertain).sum()) * 0.01, 2), "transitions": areas}


def _rules(work: Path, maps: dict[str, Path], truth: np.ndarray) -> dict[str, Any]:
    from s2pipe.change.compare import change_map
    from s2pipe.change.options import DEFAULT_MIN_CONFIDENCE, DEFAULT_MMU_HA, ChangeOptions

    out: dict[str, Any] = {}
    grid = [("naive", 0.0, 0.0), ("naive+mmu", 0.0, DEFAULT_MMU_HA)]
    grid += [(f"conf{c}_mmu{m}", c, m) for c in (0.5, 0.6, 0.7, 0.8, 0.9) for m in (0.0, 0.5, 1.0)]
    for name, conf, mmu in grid:
        r = change_map(maps["pa"], maps["pb"], work / f"change_{name}.tif",
                       ChangeOptions(min_confidence=conf, mmu_ha=mmu, overwrite=True))
        out[name] = {"min_confidence": conf, "mmu_ha": mmu, "seconds": r.seconds, **_score(r.path, truth)}
    default = f"conf{DEFAULT_MIN_CONFIDENCE}_mmu{DEFAULT_MMU_HA}"
    return {"by_rule": out, "default": default,
            "false_change_ratio": round(out[default]["false_change_ha"]
                                        / max(out["naive"]["false_change_ha"], 1e-9), 4),
            "f1_naive": out["naive"]["f1"], "f1_default": out[default]["f1"]}


def _coverage(work: Path, change: Path, truth: np.ndarray, seeds: int, n: int,
              extend_to: int | None = None) -> dict[str, Any]:
    import geopandas as gpd
    import rasterio

    from s2pipe.evaluation.change import evaluate_change
    from s2pipe.evaluation.sample import draw_sample
    from s2pipe.raster.maps import open_map

    t = open_map(change, ("change",)).transitions
    codes = _read(change)
    valid = codes > 0
    true_change = int((t.changed(truth) & valid).sum()) * 0.01
    true_codes = {int(c): int((truth[valid] == c).sum()) * 0.01 for c in np.unique(truth[valid]) if t.is_change(int(c))}
    tb, ta = t.before_after(truth)
    hits, per = 0, {c: 0 for c in true_codes}
    estimates = []
    for seed in range(seeds):
        s = draw_sample(change, n, work / "cov" / f"s{seed}.gpkg", seed=seed, overwrite=True)
        for step in range(1 if extend_to is None else 2):
            if step:  # the labelled sample extended (sample --extend), the new points labelled
                s = draw_sample(change, extend_to, work / "cov" / f"s{seed}.gpkg", seed=1000 + seed,
                                extend=work / "cov" / f"l{seed}.gpkg", overwrite=True)
            g = gpd.read_file(s.path)
            with rasterio.open(change) as ds:
                rows, cols = rasterio.transform.rowcol(ds.transform, g.geometry.x.values, g.geometry.y.values)
            g["ref_before"] = [t.classes[v - 1].value if v else None for v in tb[rows, cols]]
            g["ref_after"] = [t.classes[v - 1].value if v else None for v in ta[rows, cols]]
            g.to_file(work / "cov" / f"l{seed}.gpkg", driver="GPKG")
        e = evaluate_change(change, work / "cov" / f"l{seed}.gpkg", work / "cov" / f"e{seed}", overwrite=True)
        est = e.change["area_ha"]
        estimates.append(est["value"])
        hits += abs(est["value"] - true_change) <= est["ci95"]
        for c in true_codes:
            row = next((p for p in e.per_code if p["code"] == c), None)
            if row is not None and row["area_ha"]["value"] is not None:
                per[c] += abs(row["area_ha"]["value"] - true_codes[c]) <= (row["area_ha"]["ci95"] or 0)
    return {"seeds": seeds, "points": n if extend_to is None else extend_to, "extended_from": extend_to and n,
            "true_change_ha": round(true_change, 2),
            "mean_estimate_ha": round(float(np.mean(estimates)), 2), "change_area_coverage": hits / seeds,
            "transition_coverage": {t.name(c): per[c] / seeds for c in true_codes}}


def _cpu(who: int) -> float:
    """User + system CPU-seconds of this process or of its finished children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _scale(work: Path, size: int, maps: dict[str, Path]) -> dict[str, Any]:
    """Two ``size`` px probability rasters tiled from the world's predicted ones (so they
    compress as predict's output does), then change against reading both once."""
    import rasterio

    from s2pipe.raster.grid import Grid
    from s2pipe.raster.maps import open_map, probability_layout, write_map

    paths = [work / f"full_{k}.tif" for k in ("a", "b")]
    for src, path in zip((maps["pa"], maps["pb"]), paths):
        if path.exists():
            continue
        m = open_map(src, ("probabilities",))
        with rasterio.open(src) as ds:
            tile = ds.read()
        g = m.grid
        grid = Grid(g.crs, g.transform, size, size)
        h0, w0 = tile.shape[1:]
        reps = -(-size // w0)
        with write_map(path, grid, probability_layout(m.legend or (), every_class=True), m.provenance) as w:
            for r0 in range(0, size, 512):
                rows = np.arange(r0, min(size, r0 + 512)) % h0
                w.write_rows(np.tile(tile[:, rows], (1, 1, reps))[:, :, :size])
            w.finish()
    t0, c0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    for path in paths:  # reading both inputs once, block by block (one thread)
        with rasterio.open(path) as ds:
            for _, win in ds.block_windows(1):
                ds.read(window=win)
    read_s, read_cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - c0
    code = ("import json, sys; from s2pipe.change.compare import change_map; from s2pipe.change.options import "
            "ChangeOptions; r = change_map(sys.argv[1], sys.argv[2], sys.argv[3], ChangeOptions(overwrite=True)); "
            "print(json.dumps({'seconds': r.seconds, 'peak_rss_mb': r.peak_rss_mb}))")
    t0, c0 = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", code, *map(str, paths), str(work / "full_change.tif")],
                       capture_output=True, text=True, check=True, cwd=ROOT)
    wall, change_cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_CHILDREN) - c0
    got = json.loads(p.stdout.strip().splitlines()[-1])
    return {"size_px": size, "read_both_s": round(read_s, 1), "read_cpu_s": round(read_cpu, 1),
            "change_s": got["seconds"], "change_wall_s": round(wall, 1), "change_cpu_s": round(change_cpu, 1),
            "ratio_to_read": round(got["seconds"] / read_s, 2), "peak_rss_mb": got["peak_rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-change"))
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--points", type=int, nargs="+", default=[400, 2000],
                    help="sample sizes whose coverage is measured")
    ap.add_argument("--extend-to", type=int, default=2000,
                    help="also each labelled sample of the first size extended to this many points (0: not)")
    ap.add_argument("--full", action="store_true", help="also the full-size scale run")
    ap.add_argument("--only-full", action="store_true", help="only the full-size scale run")
    ap.add_argument("--full-size", type=int, default=10980)
    args = ap.parse_args()
    work = args.workdir
    (work / "cov").mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "size_px": args.size,
                              "epochs": args.epochs}
    if not args.only_full:
        maps = _world(work, args.size, args.epochs, args.filters)
        truth = _read(work / "b" / "change_truth.tif")
        result["rules"] = _rules(work, maps, truth)
        from s2pipe.change.options import DEFAULT_MIN_CONFIDENCE, DEFAULT_MMU_HA

        default = work / f"change_conf{DEFAULT_MIN_CONFIDENCE}_mmu{DEFAULT_MMU_HA}.tif"
        result["coverage"] = [_coverage(work, default, truth, args.seeds, n) for n in args.points]
        if args.extend_to:
            result["coverage"].append(_coverage(work, default, truth, args.seeds, args.points[0], args.extend_to))
    if args.full or args.only_full:
        result["scale"] = _scale(work, args.full_size, _world(work, args.size, args.epochs, args.filters))
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
