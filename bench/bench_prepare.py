"""Benchmark ``s2pipe prepare`` against GDAL making the same 10 m 12-band stack.

Prints one JSON object: prepare wall time and peak RSS on a synthetic scene, the time
GDAL takes (12 warped VRTs onto the 10 m grid, bilinear, written as one tiled deflate
GeoTIFF, as ``gdalwarp``/``gdal_translate`` would: the ``gdalwarp`` binary is used when
installed), their ratio, and the same for ``prepare --stack``. Each step runs in its own
child process so that its peak RSS (``resource.getrusage``) is its own.

    python bench/bench_prepare.py --size 2048 --workdir /tmp/bench
    python bench/bench_prepare.py --tif-product --workdir /tmp/bench   # full 10980 px tile
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


def _child(step: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--size", str(args.size),
           "--workdir", str(args.workdir), "--synth-dir", str(_synth_dir(args))]
    cmd += ["--tif-product"] if args.tif_product else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _synth_dir(args: argparse.Namespace) -> Path:
    return Path(args.synth_dir) if args.synth_dir else Path(args.workdir) / "synth"


def _step(step: str, args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    synth = _synth_dir(args)
    t0 = time.perf_counter()
    if step == "synth" and args.tif_product:
        _tif_product(synth)
        extra = {}
    elif step == "synth":
        from s2pipe.synth.product import synth_product

        r = synth_product(synth, size=args.size, seed=0, baseline="05.09", overwrite=True)
        extra = {"safe": str(r.safe_path), "labels": str(r.labels_path)}
    elif step in ("prepare", "prepare_stack"):
        from s2pipe.tiles.prepare import prepare_tiles

        safe = next(synth.glob("*.SAFE"))
        r = prepare_tiles([safe], synth / "landcover.gpkg", work / step, overwrite=True,
                          stack=(work / "prepare_stack.tif") if step == "prepare_stack" else None)
        extra = {"tiles": r.tiles}
    elif step == "gdal":
        extra = _gdal_stack(next(synth.glob("*.SAFE")), work / "gdal_stack.tif")
    else:
        raise SystemExit(f"unknown step {step}")
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb, 1), **extra}


def _tif_product(out: Path) -> None:
    """A full-size (10980 px) product with the real N0400 metadata (GeoTIFF band files, as
    that product has) and simple ramps: minutes to build instead of JPEG2000's hours."""
    import re

    import geopandas as gpd
    import numpy as np
    import rasterio
    import shapely
    from affine import Affine

    ref = (Path(__file__).resolve().parents[2] / "shared" / "s2-reference" /
           "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE")
    safe = out / ref.name
    shutil.rmtree(safe, ignore_errors=True)
    shutil.copytree(ref, safe)
    for f in re.findall(r"<IMAGE_FILE>(.*?)</IMAGE_FILE>", (safe / "MTD_MSIL2A.xml").read_text()):
        band, res = re.search(r"_(\w+)_(\d+)m$", f).groups()
        if band in ("TCI", "AOT", "WVP"):
            continue
        size = 10980 * 10 // int(res)
        y, x = np.ogrid[0:size, 0:size]
        if band == "SCL":
            arr = ((x // 37 + y // 53) % 7 + 4).astype("uint8")
            arr[:40, :40] = 9
        else:
            arr = (1000 + (x * 7 + y * 3 + int(band[1:3], 16)) % 4000).astype("uint16")
            arr[:, -max(1, size // 50):] = 0  # a no-data strip along the east edge
        (safe / f).parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(safe / f"{f}.tif", "w", driver="GTiff", width=size, height=size, count=1,
                           dtype=arr.dtype, crs="EPSG:32633", tiled=True, blockxsize=512,
                           blockysize=512, transform=Affine(int(res), 0, 499980, 0, -int(res), 8900040)) as d:
            d.write(arr, 1)
    rng = np.random.default_rng(0)
    geoms, values = [], []
    for i in range(40):
        for j in range(40):
            if rng.random() < 0.8:
                gx, gy = 499980 + (i + 0.05) * 2745, 8900040 - (j + 0.05) * 2745
                geoms.append(shapely.box(gx, gy - 2400, gx + 2400, gy))
                values.append(int(rng.integers(1, 9)))
    gpd.GeoDataFrame({"class": values}, geometry=geoms, crs=32633).to_file(out / "landcover.gpkg")


def _gdal_stack(safe: Path, out: Path) -> dict:
    """The same 10 m 12-band stack, made by GDAL alone (bilinear warp + deflate GeoTIFF)."""
    from s2pipe.sentinel2 import BANDS, read_product_metadata

    info = read_product_metadata(safe)
    files = [info.band_files[b] for b in BANDS]
    a, _, c, _, e, f = info.transform
    te = [c, f + e * info.height, c + a * info.width, f]
    if shutil.which("gdalwarp") and shutil.which("gdalbuildvrt"):
        vrts = []
        for i, path in enumerate(files):  # each band onto the 10 m grid, then stacked
            v = out.with_name(f"b{i}.vrt")
            subprocess.run(["gdalwarp", "-q", "-overwrite", "-of", "VRT", "-r", "bilinear",
                            "-tr", "10", "10", "-te", *map(str, te), path, str(v)], check=True)
            vrts.append(str(v))
        stack = out.with_suffix(".vrt")
        subprocess.run(["gdalbuildvrt", "-q", "-separate", "-overwrite", str(stack), *vrts], check=True)
        subprocess.run(["gdal_translate", "-q", "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE",
                        "-co", "PREDICTOR=2", "-co", "NUM_THREADS=ALL_CPUS", "-co", "BIGTIFF=IF_SAFER",
                        "--config", "GDAL_NUM_THREADS", "ALL_CPUS", str(stack), str(out)], check=True)
        return {"tool": "gdalwarp + gdal_translate binaries"}
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    transform = Affine(*info.transform)
    srcs = [rasterio.open(p) for p in files]
    vrts = [WarpedVRT(s, crs=s.crs, transform=transform, width=info.width, height=info.height,
                      resampling=Resampling.bilinear) for s in srcs]
    profile = dict(driver="GTiff", width=info.width, height=info.height, count=12, dtype="uint16",
                   crs=srcs[0].crs, transform=transform, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    with rasterio.open(out, "w", **profile) as dst:
        for r0 in range(0, info.height, 512):
            w = Window(0, r0, info.width, min(512, info.height - r0))
            for i, v in enumerate(vrts, start=1):
                dst.write(v.read(1, window=w), i, window=w)
    for v, s in zip(vrts, srcs):
        v.close()
        s.close()
    return {"tool": "rasterio WarpedVRT (GDAL warper, bilinear) + GTiff write (no gdalwarp binary)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="scene side in 10 m pixels")
    ap.add_argument("--workdir", default="bench-work", help="scratch folder (removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--synth-dir", help="an existing 's2pipe synth' folder to use (not timed)")
    ap.add_argument("--tif-product", action="store_true",
                    help="instead of 's2pipe synth', a fast full-size product with GeoTIFF band "
                         "files (no JPEG2000 decoding: measures s2pipe's own work)")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")
    if args.step:
        print(json.dumps(_step(args.step, args)))
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    try:
        synth = {"seconds": None} if args.synth_dir else _child("synth", args)
        gdal = _child("gdal", args)
        prep = _child("prepare", args)
        prep_stack = _child("prepare_stack", args)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps({
        "size_px": 10980 if args.tif_product else args.size, "cpus": os.cpu_count(),
        "product": "GeoTIFF bands (--tif-product)" if args.tif_product else "s2pipe synth (JPEG2000)",
        "synth_seconds": synth["seconds"],
        "gdal_stack_seconds": gdal["seconds"], "gdal_tool": gdal["tool"],
        "gdal_peak_rss_mb": gdal["peak_rss_mb"],
        "prepare_seconds": prep["seconds"], "prepare_peak_rss_mb": prep["peak_rss_mb"],
        "tiles": prep["tiles"],
        "ratio_prepare_to_gdal": round(prep["seconds"] / gdal["seconds"], 3),
        "prepare_with_stack_seconds": prep_stack["seconds"],
        "prepare_with_stack_peak_rss_mb": prep_stack["peak_rss_mb"],
        "ratio_prepare_with_stack_to_gdal": round(prep_stack["seconds"] / gdal["seconds"], 3),
    }))


if __name__ == "__main__":
    main()
