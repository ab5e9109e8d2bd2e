"""How often a run parses a product, and what ``--help`` costs: the figures of issue 18.

Prints one JSON object:

* ``help_s``: wall time of ``s2pipe --help`` and ``s2pipe predict --help`` (best of
  ``--repeat`` runs, each a fresh interpreter) and whether the heavy libraries (rasterio,
  torch, matplotlib) were imported by it;
* ``counts``: metadata XML parses, STAC Item fetches and dark-pixel offset checks per
  ``predict`` of 2 scenes and per ``prepare`` of 3 products, each product a STAC Item of
  COGs on a local S3 server (moto, 127.0.0.1), run in this process through ``cli.main``
  with the library's functions counted;
* ``seconds``: ``predict`` and ``prepare`` wall time on a ``--size`` px synthetic SAFE
  (fresh interpreters, best of ``--repeat``), and ``sha256`` of everything they wrote, so
  two checkouts can be compared bit for bit (``--workdir`` fixed: the outputs carry paths).

    python bench/bench_open_once.py --workdir /tmp/open-once --size 2560
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEAVY = ("rasterio", "torch", "matplotlib")


def _help_times(repeat: int) -> dict[str, Any]:
    code = ("import sys; from cli import cli\n"
            "try:\n    cli(sys.argv[1:], prog_name='s2pipe')\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    out: dict[str, Any] = {}
    for args in (["--help"], ["predict", "--help"]):
        best, heavy = float("inf"), None
        for _ in range(repeat):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
            best = min(best, time.perf_counter() - t)
            heavy = p.stderr.strip().splitlines()[-1].split(" ", 1)[1]
        out[" ".join(args)] = {"seconds": round(best, 3), "heavy_imported": heavy}
    return out


def _counting(counts: Counter[str]) -> Callable[[], None]:
    """Wrap the functions that parse metadata, fetch Items and check offsets; returns an undo."""
    import s2pipe.remote as remote
    import s2pipe.sentinel2.metadata as metadata
    import s2pipe.sentinel2.radiometry as radiometry
    import s2pipe.sentinel2.stac as stac

    undo = []

    def wrap(module: Any, name: str, key: str, when: Callable[..., bool] = lambda *a: True) -> None:
        original = getattr(module, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if when(*args):
                counts[key] += 1
            return original(*args, **kwargs)

        setattr(module, name, counted)
        undo.append(lambda: setattr(module, name, original))

    wrap(metadata, "_parse", "metadata_xml_parses")
    wrap(radiometry, "_dark", "offset_checks")
    for module in (stac, remote):
        if hasattr(module, "read_bytes"):
            wrap(module, "read_bytes", "item_fetches", lambda href, *a: str(href).endswith(".json"))
    return lambda: [u() for u in undo]


def _server() -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, port
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("moto server did not start")


def _checkpoint(path: Path, filters: int) -> Path:
    import torch

    from s2pipe.legend import DEFAULT_LEGEND
    from s2pipe.model.checkpoint import ModelMeta, save_checkpoint
    from s2pipe.model.normalization import Normalization
    from s2pipe.model.unet import UNet
    from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

    if not path.exists():
        torch.manual_seed(0)
        model = UNet(12, 8, filters)
        norm = Normalization(mean=(1000.0,) * 12, std=(1000.0,) * 12)
        meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, normalization=norm, tile_size=256,
                         arch=model.arch, radiometry={"convention": RADIOMETRY_CONVENTION})
        save_checkpoint(path, model=model, meta=meta)
    return path


def _cli(args: list[str]) -> None:
    from cli import cli

    cli.main(["-q", *args], prog_name="s2pipe", standalone_mode=False)


def _counts(work: Path, model: Path) -> dict[str, Any]:
    import boto3

    from s2pipe.synth.product import synth_product
    from s2pipe.synth.stac import write_stac_item

    items = []
    for i, date in enumerate(("2018-06-07", "2018-07-02", "2018-08-11")):
        d = work / "stac" / f"p{i}"
        if not (d / "item").exists():
            r = synth_product(d, size=512, baseline="05.09", date=date, overwrite=True)
            write_stac_item(r.safe_path, d / "item", naming="earth-search")
        items.append(next((d / "item").glob("*.json")))
    labels = work / "stac" / "p0" / "landcover.gpkg"
    server, port = _server()
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1",
                          AWS_S3_ENDPOINT=f"127.0.0.1:{port}", AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        urls = []
        for i, item in enumerate(items):
            for f in item.parent.iterdir():
                client.upload_file(str(f), "bench", f"p{i}/{f.name}")
            urls.append(f"s3://bench/p{i}/{item.name}")
        out: dict[str, Any] = {}
        for name, args in (
                ("predict_2_scenes", ["predict", *urls[:2], "--model", str(model), "-o",
                                      str(work / "count-maps"), "--overwrite", "--device", "cpu"]),
                ("prepare_3_products", ["prepare", *urls, "--labels", str(labels), "-o",
                                        str(work / "count-tiles"), "--overwrite"])):
            counts: Counter[str] = Counter()
            undo = _counting(counts)
            try:
                _cli(args)
            finally:
                undo()
            out[name] = dict(sorted(counts.items()))
        return out
    finally:
        server.terminate()


def _sha256_tree(root: Path) -> dict[str, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}


def _timed(args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; from cli import cli; cli(sys.argv[1:], prog_name='s2pipe')",
                        "-q", *args], check=True)
        best = min(best, time.perf_counter() - t)
    return round(best, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-open-once"))
    ap.add_argument("--size", type=int, default=2560)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"help_s": _help_times(max(args.repeat, 5))}
    model = _checkpoint(work / "model.pt", args.filters)
    result["counts"] = _counts(work, model)

    from s2pipe.synth.product import synth_product

    synth = work / f"synth{args.size}"
    if not (synth / "landcover.gpkg").exists():
        synth_product(synth, size=args.size, baseline="05.09", overwrite=True)
    safe = str(next(synth.glob("*.SAFE")))
    maps, tiles = work / "map.tif", work / "tiles"
    result["seconds"] = {
        "predict": _timed(["predict", safe, "--model", str(model), "-o", str(maps), "--device", "cpu",
                           "--probabilities", str(work / "probs.tif"), "--overwrite"], args.repeat),
        "prepare": _timed(["prepare", safe, "--labels", str(synth / "landcover.gpkg"), "-o", str(tiles),
                           "--overwrite"], args.repeat)}
    sums = {**_sha256_tree(maps), **_sha256_tree(work / "probs.tif"), **_sha256_tree(tiles)}
    result["sha256"] = sums
    result["sha256_all"] = hashlib.sha256(json.dumps(
        {k: v for k, v in sums.items() if not k.endswith("prepare.json")}, sort_keys=True).encode()).hexdigest()[:16]
    result.update(size_px=args.size, filters=args.filters, cpus=os.cpu_count(), load_before=load_before,
                  load_after=os.getloadavg()[0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
