"""Benchmark of ``s2pipe mosaic``: 4 scenes (2 tiles x 2 dates, 2 UTM zones) vs 2, and GDAL.

Writes per-scene probability rasters as ``predict --probabilities-all`` does (8 uint8
bands of a smooth ground field in world coordinates plus noise of each scene; the second
date has clouds where the first has none) and their class maps, then measures in child
processes, one after the other in the same run:

- ``mosaic`` of the 4 probability rasters into zone 33 (peak memory, wall time);
- ``mosaic`` of the 2 scenes of the first date (peak memory, for the ratio);
- GDAL warping the 4 *class maps* into the same grid (``gdalwarp`` nearest when the
  command exists, else ``rasterio.warp.reproject``), the baseline of the time target;
- ``gdalwarp`` of the 4 *probability rasters* (8 bands, bilinear) into the same grid: the
  resampling alone of what the mosaic blends, without weights or decision.

Prints one JSON object: seconds, peak_rss_mb, ratios (targets: peak < 1.5 GB and within
20% of the 2-scene peak; wall <= 1.5 x GDAL's).

    python bench/bench_mosaic.py --size 4096
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_MOSAIC = r"""
import json, sys, time
from s2pipe.mosaic.mosaic import mosaic_maps
from s2pipe.mosaic.options import MosaicOptions
out, maps = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
r = mosaic_maps(maps, out, MosaicOptions(crs="EPSG:32633"))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": r.peak_rss_mb,
                  "size": [r.width, r.height]}))
"""

CHILD_WARP = r"""
import json, sys, time
import numpy as np, rasterio
from rasterio.warp import Resampling, reproject
from s2pipe.resources import peak_rss_mb
out, w, h, x0, y1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
maps = sys.argv[6:]
t0 = time.perf_counter()
transform = rasterio.transform.from_origin(x0, y1, 10, 10)
dst = np.zeros((h, w), np.uint8)
for m in maps:
    with rasterio.open(m) as src:
        reproject(rasterio.band(src, 1), dst, dst_transform=transform, dst_crs="EPSG:32633",
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0, num_threads=2, init_dest_nodata=False)
with rasterio.open(out, "w", driver="COG", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=transform, nodata=0, compress="deflate") as ds:
    ds.write(dst, 1)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "tool": "rasterio.warp"}))
"""


def make_scenes(root: Path, size: int) -> dict[str, list[Path]]:
    """4 scenes: A, A' (zone 33, two dates) and C, C' (zone 34, overlapping A by a third)."""
    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp_points

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_mosaic import UTM33, UTM34, X0, Y0, scene_probs, write_classes, write_probs

    cx, cy = warp_points(UTM33, UTM34, [X0 + size * 10 * 2 / 3], [Y0])
    grids = {"A": (UTM33, from_origin(X0, Y0, 10, 10)),
             "C": (UTM34, from_origin(round(cx[0] / 10) * 10, round(cy[0] / 10) * 10, 10, 10))}
    probs, classes = [], []
    for name, (crs, t) in grids.items():
        for date in (1, 2):
            p = np.empty((8, size, size), np.uint8)
            for r0 in range(0, size, 512):  # in strips: the field is computed in float64
                h = min(512, size - r0)
                p[:, r0:r0 + h] = scene_probs(crs, t * t.translation(0, r0), h, size, seed=date * 7 + len(probs))
            if date == 2:  # clouds on the second date
                yy, xx = np.ogrid[:size, :size]
                for k in range(6):
                    cy_, cx_ = (k * 0.37 % 1) * size, (k * 0.61 % 1) * size
                    p[:, (yy - cy_) ** 2 + (xx - cx_) ** 2 < (size / 12) ** 2] = 0
            tag = f"{name}{date}"
            probs.append(write_probs(root / f"p_{tag}.tif", p, crs, t, tag))
            cls = (p.argmax(axis=0) + 1).astype(np.uint8)
            cls[~p.any(axis=0)] = 0
            classes.append(write_classes(root / f"c_{tag}.tif", cls, CRS.from_user_input(crs), t))
            del p, cls
    return {"probs": probs, "classes": classes}


def child(code: str, *args: object) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


CHILD_GDALWARP = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
print(json.dumps({"seconds": time.perf_counter() - t0, "tool": "gdalwarp",
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def gdalwarp(out: Path, grid: tuple[int, int, float, float], maps: list[Path], resampling: str = "near") -> dict:
    """GDAL warping ``maps`` into the grid, in a child process of its own (its peak memory)."""
    w, h, x0, y1 = grid
    if shutil.which("gdalwarp") is None:
        return child(CHILD_WARP, out, w, h, x0, y1, *maps)
    nodata = ["-srcnodata", "0", "-dstnodata", "0"] if resampling == "near" else []
    return child(CHILD_GDALWARP, "gdalwarp", "-q", "-t_srs", "EPSG:32633", "-tr", "10", "10",
                 "-te", x0, y1 - 10 * h, x0 + 10 * w, y1, "-r", resampling, *nodata, "-wo", "NUM_THREADS=2",
                 "-multi", "-of", "COG", "-co", "COMPRESS=DEFLATE", *maps, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="Side of each scene in 10 m pixels.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_mosaic_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        scenes = make_scenes(root, args.size)
        made = time.perf_counter() - t0
        four = child(CHILD_MOSAIC, root / "m4.tif", *scenes["probs"])
        two = child(CHILD_MOSAIC, root / "m2.tif", *scenes["probs"][:2])
        import rasterio

        with rasterio.open(root / "m4.tif") as m:
            grid = (m.width, m.height, m.transform.c, m.transform.f)
        gdal = gdalwarp(root / "g4.tif", grid, scenes["classes"])
        gdal_probs = gdalwarp(root / "g4p.tif", grid, scenes["probs"], "bilinear")
    print(json.dumps({
        "benchmark": "mosaic", "scene_size": args.size, "scenes_written_s": round(made, 1),
        "output_size": four["size"], "mosaic_4": four, "mosaic_2": two, "gdal_warp_4_class_maps": gdal,
        "gdal_warp_4_probabilities_bilinear": gdal_probs,
        "time_ratio_vs_gdal_probabilities": four["seconds"] / gdal_probs["seconds"],
        "peak_ratio_4_vs_2": four["peak_rss_mb"] / two["peak_rss_mb"],
        "time_ratio_vs_gdal": four["seconds"] / gdal["seconds"],
        "targets": {"peak_rss_mb": 1536, "peak_ratio_4_vs_2": 1.2, "time_ratio_vs_gdal": 1.5}}))


if __name__ == "__main__":
    main()
