"""``workflows/area.sh`` against the same steps run by hand, on 4 synthetic scenes (2 tiles x 2 dates).

Builds 4 STAC scenes of ``--size`` px (two neighbouring tiles, two dates) in a folder
catalogue, an area over both tiles (EPSG:2180) and an untrained U-Net, then runs once:
the workflow script, and in another folder the commands it runs (search, predict of each
scene, mosaic clipped to the area, quick-look; ``--stac`` on both), each as its own
``s2pipe`` process, timed one by one. Prints one JSON object.

    python bench/bench_area.py --size 512
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()

    import geopandas as gpd
    import stac_api
    from shapely.geometry import box

    from test_predict import make_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = args.size
        stac_api.SIZE = size
        y0 = stac_api.WEST_ORIGIN[1]  # the tiles 33UXS and 33UYS meet at x = 700 km
        stac_api.WEST_ORIGIN, stac_api.EAST_ORIGIN = (700000.0 - size * 10.0, y0), (700000.0, y0)
        stac_api.WORLD = (700000.0 - size * 10.0, y0 - size * 10.0, 700000.0 + size * 10.0, y0)
        synth = stac_api.synth_items(root / "scenes")
        archive = root / "archive"
        archive.mkdir()
        for key in ("w0607", "e0607", "w0617", "e0617"):
            (archive / f"{key}.json").write_text(json.dumps(synth["by_key"][key]))
        w, e = synth["by_key"]["w0607"]["bbox"], synth["by_key"]["e0607"]["bbox"]
        area = root / "area.gpkg"
        lonlat = box(w[0] + 0.003, max(w[1], e[1]) + 0.003, e[2] - 0.003, min(w[3], e[3]) - 0.003)
        gpd.GeoDataFrame(geometry=[lonlat], crs=4326).to_crs(2180).to_file(area)
        model = make_checkpoint(root / "m.pt")
        dates = "2018-06-01/2018-06-30"

        env = {**os.environ, "S2PIPE": str(BIN / "s2pipe"), "CATALOG": str(archive), "MAX_CLOUD": "",
               "OVERLAP": "16", "DEVICE": "cpu", "FEATHER": "20"}
        t_script = timed(["bash", str(ROOT / "workflows" / "area.sh"), str(area), dates, str(model),
                          str(root / "script")], env)

        s2 = str(BIN / "s2pipe")
        out = root / "hand"
        steps: dict[str, float] = {}
        steps["search"] = timed([s2, "search", "--aoi", str(area), "--dates", dates, "--catalog", str(archive),
                                 "--per-tile", "2", "-o", str(out / "items")])
        items = [out / "items" / ln for ln in (out / "items" / "products.txt").read_text().splitlines()
                 if ln and not ln.startswith("#")]
        (out / "maps").mkdir()
        (out / "probabilities").mkdir()
        for i, item in enumerate(items):
            steps[f"predict {i + 1}"] = timed([s2, "predict", str(item), "--model", str(model), "-o",
                                               str(out / "maps" / f"{item.stem}.tif"), "--probabilities",
                                               str(out / "probabilities" / f"{item.stem}.tif"),
                                               "--probabilities-all", "--overlap", "16", "--device", "cpu",
                                               "--mask-clouds", "--stac"])
        steps["mosaic"] = timed([s2, "mosaic", *map(str, sorted((out / "probabilities").glob("*.tif"))), "-o",
                                 str(out / "landcover.tif"), "--clip", str(area), "--sources",
                                 str(out / "sources.tif"), "--feather", "20", "--stac"])
        steps["quicklook"] = timed([s2, "quicklook", str(out / "landcover.tif"), "-o", str(out / "landcover.png")])
        by_hand = sum(steps.values())
        t_rerun = timed(["bash", str(ROOT / "workflows" / "area.sh"), str(area), dates, str(model),
                         str(root / "script")], env)
    print(json.dumps({"size": size, "scenes": len(items), "script_seconds": round(t_script, 2),
                      "steps_by_hand_seconds": round(by_hand, 2), "ratio": round(t_script / by_hand, 3),
                      "steps": {k: round(v, 2) for k, v in steps.items()},
                      "rerun_all_skipped_seconds": round(t_rerun, 2)}, indent=1))


if __name__ == "__main__":
    main()
