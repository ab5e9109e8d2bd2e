"""Benchmark ``s2pipe vectorize`` against GDAL's ``gdal_sieve`` + ``gdal_polygonize``.

Prints one JSON object: wall time and peak RSS of ``vectorize_map`` (default 0.5 ha unit,
GeoPackage) on a synthetic full-scene class map, and of GDAL's two command-line tools
doing the same sieve (50 px, 4-connected) and polygonisation into a GeoPackage, with
their ratios. Each measured run is a child process, so its peak RSS (VmHWM via
``resource.getrusage``) is its own. The GDAL tools come from Debian's ``gdal-bin`` and
``python3-gdal``; s2pipe does not need them.

    python bench/bench_vectorize.py --size 10980 --workdir /tmp/bench-vec
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

STRIP = 512  # rows of the synthetic map made at a time


def _child(step: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--size", str(args.size), "--workdir", str(args.workdir)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _strip(rng, coarse, fine, fields, r0: int, n: int, size: int):
    """Rows r0..r0+n of a patchy map: fields of several classes in bands of rows, forest and
    wetland blobs, rivers, small woods and buildings, and classifier speckle."""
    import numpy as np

    def smooth(grid, cell: int):
        y = np.arange(r0, r0 + n) / cell
        x = np.arange(size) / cell
        y0, x0 = y.astype(int), x.astype(int)
        fy, fx = (y - y0)[:, None], (x - x0)[None, :]
        g = grid
        return (g[y0][:, x0] * (1 - fy) * (1 - fx) + g[y0 + 1][:, x0] * fy * (1 - fx)
                + g[y0][:, x0 + 1] * (1 - fy) * fx + g[y0 + 1][:, x0 + 1] * fy * fx)

    out = np.empty((n, size), dtype=np.uint8)
    for band_r0, band_r1, cuts, classes in fields:
        lo, hi = max(band_r0, r0), min(band_r1, r0 + n)
        if lo >= hi:
            continue
        out[lo - r0:hi - r0] = np.repeat(classes, np.diff(cuts))[None, :]
    big, small = smooth(coarse, 96), smooth(fine, 7)
    out[big > 0.64] = 2
    out[(big > 0.47) & (big < 0.485)] = 4
    out[big < 0.1] = 3
    out[small > 0.78] = 2
    out[small < 0.16] = 5
    out[(small > 0.48) & (small < 0.5)] = 8
    speck = rng.random((n, size)) < 0.02
    out[speck] = rng.integers(1, 9, int(speck.sum()), dtype=np.uint8)
    out[:, size - size // 30:] = 0  # a no-data strip, as along a swath edge
    return out


def _make_map(path: Path, size: int) -> dict:
    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from s2pipe.legend import DEFAULT_LEGEND
    from s2pipe.raster.cog import MapWriter

    rng = np.random.default_rng(0)
    coarse, fine = rng.random((size // 96 + 2, size // 96 + 2)), rng.random((size // 7 + 2, size // 7 + 2))
    fields, r = [], 0
    while r < size:
        h = int(rng.integers(30, 160))
        widths = rng.integers(25, 300, size // 25)
        cuts = np.concatenate([[0], np.minimum(np.cumsum(widths), size)])
        cuts = cuts[:np.searchsorted(cuts, size) + 1]
        fields.append((r, r + h, cuts, rng.choice([1, 1, 1, 1, 5, 6, 7, 8], len(cuts) - 1).astype(np.uint8)))
        r += h

    class Grid:
        crs, transform, width, height = CRS.from_epsg(32633), from_origin(499980, 5800020, 10, 10), size, size

    with MapWriter(path, Grid(), legend=DEFAULT_LEGEND) as writer:
        for r0 in range(0, size, STRIP):
            writer.write_rows(_strip(rng, coarse, fine, fields, r0, min(STRIP, size - r0), size)[None])
        writer.finish()
    return {}


def _gdal(work: Path) -> dict:
    sieved = work / "gdal_sieved.tif"
    out = work / "gdal.gpkg"
    for p in (sieved, out):
        p.unlink(missing_ok=True)
    subprocess.run(["gdal_sieve.py", "-q", "-st", "50", "-4", str(work / "map.tif"), "-of", "GTiff",
                    str(sieved)], check=True)
    subprocess.run(["gdal_polygonize.py", "-q", str(sieved), "-f", "GPKG", str(out), "landcover", "class"],
                   check=True)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the larger of the two
    import pyogrio

    return {"polygons": int(pyogrio.read_info(out)["features"]), "children_peak_rss_mb": round(rss_mb, 1)}


def _step(step: str, args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    t0 = time.perf_counter()
    if step == "map":
        extra = _make_map(work / "map.tif", args.size)
    elif step == "s2pipe":
        from s2pipe.raster.vectorize import vectorize_map

        r = vectorize_map(work / "map.tif", work / "s2pipe.gpkg", overwrite=True)
        extra = {"polygons": r.polygons, "area_ha": round(r.area_ha, 2)}
    elif step == "gdal":
        extra = _gdal(work)
    else:
        raise SystemExit(f"unknown step {step}")
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_mb = max(rss_mb, extra.pop("children_peak_rss_mb", 0.0))
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb, 1), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="map side in 10 m pixels")
    ap.add_argument("--workdir", default="bench-work", help="scratch folder (removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(_step(args.step, args)))
        return
    if not (shutil.which("gdal_sieve.py") and shutil.which("gdal_polygonize.py")):
        raise SystemExit("needs GDAL's tools: apt-get install -y gdal-bin python3-gdal")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    try:
        made = _child("map", args)
        gdal = _child("gdal", args)
        ours = _child("s2pipe", args)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps({
        "size_px": args.size, "cpus": os.cpu_count(), "map_seconds": made["seconds"],
        "min_area_ha": 0.5, "sieve_px": 50,
        "gdal_seconds": gdal["seconds"], "gdal_peak_rss_mb": gdal["peak_rss_mb"],
        "gdal_polygons": gdal["polygons"],
        "vectorize_seconds": ours["seconds"], "vectorize_peak_rss_mb": ours["peak_rss_mb"],
        "vectorize_polygons": ours["polygons"],
        "ratio_seconds": round(ours["seconds"] / gdal["seconds"], 3),
        "ratio_peak_rss": round(ours["peak_rss_mb"] / gdal["peak_rss_mb"], 3),
    }))


if __name__ == "__main__":
    main()
