"""Reading a scene as a STAC Item of COGs vs the same scene as a SAFE, and from a local S3 server.

Builds a synthetic N0509 scene (``--size`` px) as a SAFE and as an Earth Search item of
COGs, reads the whole scene in 256-row strips through ``open_scene`` from each (checking
the arrays are identical), then uploads the item's folder to a moto S3 server started on
127.0.0.1 and runs ``predict`` (untrained ``--filters`` U-Net) on the scene from local
disk and from the server. Prints one JSON object (figures go into bench/RESULTS.md).

    python bench/bench_stac.py --size 2560 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.windows import Window


def read_all(path: str) -> tuple[float, np.ndarray]:
    from s2pipe.raster.profiles import gdal_env
    from s2pipe.sentinel2.reader import open_scene

    t = time.perf_counter()
    with gdal_env(), open_scene(path) as scene:
        g = scene.grid
        out = np.empty((12, g.height, g.width), np.uint16)
        for r0 in range(0, g.height, 256):
            w = Window(0, r0, g.width, min(256, g.height - r0))
            out[:, r0:r0 + int(w.height)] = scene.read(w)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2560)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--filters", type=int, default=8)
    args = ap.parse_args()
    from s2pipe.synth.product import synth_product
    from s2pipe.synth.stac import write_stac_item

    tmp = Path(tempfile.mkdtemp(prefix="bench-stac-"))
    safe = synth_product(tmp / "safe", size=args.size, baseline="05.09").safe_path
    item = write_stac_item(safe, tmp / "item", naming="earth-search")
    safe_s, cog_s = [], []
    for _ in range(args.repeat):
        s, a = read_all(str(safe))
        c, b = read_all(str(item))
        assert np.array_equal(a, b), "SAFE and STAC differ"
        safe_s.append(s)
        cog_s.append(c)
    result = {"size_px": args.size, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
              "safe_read_s": round(min(safe_s), 2), "cog_read_s": round(min(cog_s), 2),
              "ratio_cog_over_safe": round(min(cog_s) / min(safe_s), 3), "identical": True}

    # predict from local disk vs from a local S3 server
    import boto3
    import torch

    from s2pipe.legend import DEFAULT_LEGEND
    from s2pipe.model.checkpoint import ModelMeta, save_checkpoint
    from s2pipe.model.normalization import Normalization
    from s2pipe.model.unet import UNet
    from s2pipe.prediction.options import PredictOptions
    from s2pipe.prediction.predict import predict_scenes
    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    torch.manual_seed(0)
    model = UNet(12, 8, args.filters)
    ckpt = tmp / "m.pt"
    norm = Normalization(mean=(1000.0,) * 12, std=(1000.0,) * 12)
    save_checkpoint(ckpt, model=model, meta=ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, normalization=norm,
                                                     tile_size=256, arch=model.arch,
                                                     radiometry={"convention": RADIOMETRY_CONVENTION}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1",
                          AWS_S3_ENDPOINT=f"127.0.0.1:{port}", AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        for f in item.parent.iterdir():
            client.upload_file(str(f), "bench", f"item/{f.name}")
        local_s, s3_s = [], []
        for i in range(args.repeat):
            t = time.perf_counter()
            predict_scenes([item], ckpt, tmp / f"local{i}.tif", PredictOptions(device="cpu"))
            local_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            predict_scenes([f"s3://bench/item/{item.name}"], ckpt, f"s3://bench/maps/map{i}.tif",
                    PredictOptions(device="cpu"))
            s3_s.append(time.perf_counter() - t)
        result.update(predict_local_s=round(min(local_s), 2), predict_s3_s=round(min(s3_s), 2),
                      ratio_s3_over_local=round(min(s3_s) / min(local_s), 3), filters=args.filters,
                      load_after=os.getloadavg()[0])
    finally:
        server.terminate()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
