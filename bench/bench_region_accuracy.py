"""Accuracy of a two-date mosaic against each single-date map, on synthetic products.

Two products of the same ground (one ``--world``) on two dates with clouds in different
places: a model is trained on tiles of both dates, each date is predicted (its map as a
user without a mosaic would make it, clouds mapped as whatever they look like; and its
class probabilities with clouds masked), the probabilities are mosaicked, and each map is
evaluated against the whole-scene truth. Prints one JSON object with OA, mIoU and the
mapped fraction of each.

    python bench/bench_region_accuracy.py --size 1024 --minutes 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "cli"]


def s2pipe(*args: object) -> dict:
    out = subprocess.run([*CLI, *map(str, args), "--json"], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def scores(report: dict) -> dict:
    return {"overall_accuracy": report["overall_accuracy"], "miou": report["miou"], "pixels": report["pixels"]}


def under_clouds(root: Path, safes: list[str], truth: str) -> dict:
    """Overall accuracy of each map on the pixels a date's SCL flags as cloud or shadow."""
    import numpy as np
    import rasterio

    from s2pipe.sentinel2 import open_scene
    from s2pipe.sentinel2.facts import CLOUD_SCL
    from s2pipe.sentinel2.reader import ReadOptions

    with rasterio.open(truth) as src:
        ref = src.read(1)
    cloudy = np.zeros(ref.shape, bool)
    for safe in safes:
        with open_scene(safe, ReadOptions(mask_scl=())) as scene:
            scl = scene.read_scl()
        assert scl is not None
        cloudy |= np.isin(scl, CLOUD_SCL)
    where = cloudy & (ref > 0)
    out: dict = {"pixels": int(where.sum())}
    for name in ("d1", "d2", "d1_masked", "d2_masked", "mosaic"):
        with rasterio.open(root / f"{name}.tif") as src:
            m = src.read(1)
        mapped = where & (m > 0)
        out[name] = {"mapped_fraction": float(mapped.sum() / max(1, where.sum())),
                     "overall_accuracy_of_all": float((m[where] == ref[where]).mean()) if where.any() else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--minutes", type=float, default=4.0, help="Training time budget.")
    ap.add_argument("--filters", type=int, default=16)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_region_") as tmp:
        root = Path(tmp)
        x0, y0 = 699960, 5700000
        world = ["--world", x0, y0 - 10 * args.size, x0 + 10 * args.size, y0, "--world-epsg", 32633]
        dates = {"d1": "2018-06-07", "d2": "2018-07-12"}
        synths = {k: s2pipe("synth", root / k, "--size", args.size, "--date", d, *world) for k, d in dates.items()}
        safes = [synths[k]["safe_path"] for k in dates]
        labels, truth = synths["d1"]["labels_path"], synths["d1"]["truth_path"]
        s2pipe("prepare", *safes, "--labels", labels, "-o", root / "tiles")
        s2pipe("train", root / "tiles", "-o", root / "model", "--epochs", 60, "--max-minutes", args.minutes,
               "--filters", args.filters, "--batch-size", 8, "--class-weights", "inverse-frequency",
               "--no-save-samples")
        model = root / "model" / "best.pt"
        out: dict = {"benchmark": "region_accuracy", "size": args.size, "dates": dates,
                     "cloud_percent": {k: s["cloud_percent"] for k, s in synths.items()}}
        for k, safe in zip(dates, safes):
            s2pipe("predict", safe, "--model", model, "-o", root / f"{k}.tif")
            s2pipe("predict", safe, "--model", model, "-o", root / f"{k}_masked.tif", "--mask-clouds",
                   "--probabilities", root / f"p_{k}.tif", "--probabilities-all")
            out[f"{k}_map"] = scores(s2pipe("evaluate", root / f"{k}.tif", "--labels", truth, "-o", root / f"r_{k}"))
            out[f"{k}_masked_map"] = scores(s2pipe("evaluate", root / f"{k}_masked.tif", "--labels", truth,
                                                   "-o", root / f"rm_{k}"))
        mosaic = s2pipe("mosaic", root / "p_d1.tif", root / "p_d2.tif", "-o", root / "mosaic.tif")
        out["mosaic"] = scores(s2pipe("evaluate", root / "mosaic.tif", "--labels", truth, "-o", root / "r_m"))
        out["mosaic_nodata_pixels"] = mosaic["nodata_pixels"]
        out["under_clouds"] = under_clouds(root, safes, truth)
        out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
