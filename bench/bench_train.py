"""Benchmark ``s2pipe train``: input pipeline overhead, throughput, and (optionally) accuracy.

Prints one JSON object:

* ``pipeline``: seconds of one training epoch through the real input pipeline (in-memory
  uint16 tiles -> sampler with flips/rotations -> DataLoader -> device normalisation),
  seconds of the same number of optimizer steps on batches already collated in memory,
  and their ratio (target <= 1.10);
* ``loader_only_s``: the input pipeline alone for one epoch (no model), a figure that
  stays meaningful on a busy machine where the two timings above are noisy;
* ``tiles_per_s``: training throughput of that epoch;
* with ``--tiles DIR`` (a ``prepare`` output, e.g. of the default synthetic scene): a full
  ``train_model`` run under ``--max-minutes``: minutes, best epoch, test OA / mIoU and
  per-class IoU.

    python bench/bench_train.py --tile-size 128 --n-tiles 32 --filters 16 --batch-size 8
    python bench/bench_train.py --tiles demo-out/tiles --max-minutes 6 --filters 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 9, (n, size // 16, size // 16)).repeat(16, 1).repeat(16, 2).astype(np.uint8)
    images = (rng.integers(200, 4000, (12, 9))[:, labels] + rng.normal(0, 80, (12, n, size, size)))
    return np.clip(images, 1, 65535).astype(np.uint16).transpose(1, 0, 2, 3).copy(), labels


def bench_pipeline(images: np.ndarray, labels: np.ndarray, *, filters: int, batch_size: int,
                   device: str, workers: int | None, repeats: int) -> dict:
    from s2pipe.model.device import resolve_device
    from s2pipe.model.unet import UNet
    from s2pipe.training.dataset import band_statistics
    from s2pipe.training.distributed import DistInfo
    from s2pipe.training.loop import Step, run_epoch
    from s2pipe.training.train import TrainOptions, _loader

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    opts = TrainOptions(batch_size=batch_size, filters=filters, device=device, workers=workers)
    info = DistInfo(0, 1, dev)
    n_workers = (4 if cuda else 0) if workers is None else workers
    loader, sampler = _loader(images, labels, opts, info, train=True, workers=n_workers)
    step = Step(dev, band_statistics(images).normalizer(dev), channels_last=cuda,
                amp_dtype=(torch.bfloat16 if cuda else None))
    torch.manual_seed(0)
    model = UNet(images.shape[1], 8, filters).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # the same batches, collated once and already on the device
    sampler.set_epoch(1)
    in_memory = [(x.to(dev), y.to(dev)) for x, y in loader]
    run_epoch(model, in_memory[:2], step, optimizer=optimizer)  # warm-up
    t_pipe, t_mem = [], []
    for r in range(repeats):  # interleaved, so load changes hit both alike
        sampler.set_epoch(r + 2)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        t0 = time.perf_counter()
        run_epoch(model, loader, step, optimizer=optimizer)
        sync()
        t_pipe.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_epoch(model, in_memory, step, optimizer=optimizer)
        sync()
        t_mem.append(time.perf_counter() - t0)
    t0 = time.perf_counter()  # the input pipeline alone: batches produced and moved, no model
    for x, y in loader:
        step.inputs(x, y)
    loader_only = time.perf_counter() - t0
    pipe, mem = float(np.median(t_pipe)), float(np.median(t_mem))
    return {"device": str(dev), "tiles": len(images), "tile_size": int(images.shape[-1]),
            "filters": filters, "batch_size": batch_size, "workers": n_workers,
            "threads": torch.get_num_threads(), "steps": len(in_memory),
            "epoch_s": round(pipe, 3), "in_memory_s": round(mem, 3), "ratio": round(pipe / mem, 3),
            "loader_only_s": round(loader_only, 4),
            "tiles_per_s": round(len(images) / pipe, 2)}


def bench_accuracy(tiles: Path, *, filters: int, batch_size: int, epochs: int, max_minutes: float,
                   device: str, seed: int) -> dict:
    from s2pipe.training.train import TrainOptions, train_model

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        r = train_model(out, tiles_dir=tiles, options=TrainOptions(
            epochs=epochs, batch_size=batch_size, filters=filters, max_minutes=max_minutes, device=device,
            seed=seed, save_samples=False))
        metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"] or {}
    return {"minutes": round(r.minutes, 2), "epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
            "stop_reason": r.stop_reason, "tiles": r.tiles, "test_oa": test.get("overall_accuracy"),
            "test_miou": test.get("miou"), "val_miou": (metrics["val"] or {}).get("miou"),
            "test_iou": {c["name"]: c["iou"] for c in test.get("per_class", [])}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiles", type=Path, help="A prepare output: pipeline bench on its training tiles, "
                                               "then a timed training run")
    p.add_argument("--n-tiles", type=int, default=32)
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--max-minutes", type=float, default=6.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pipeline-only", action="store_true", help="With --tiles: skip the timed training run")
    args = p.parse_args()

    if args.tiles is not None:
        from s2pipe.training.dataset import find_tiles, load_tiles

        images, labels = load_tiles(find_tiles(args.tiles).split("train"))
        images, labels = images[: args.n_tiles], labels[: args.n_tiles]
    else:
        images, labels = _synthetic(args.n_tiles, args.tile_size, args.seed)
    result = {"pipeline": bench_pipeline(images, labels, filters=args.filters, batch_size=args.batch_size,
                                         device=args.device, workers=args.workers, repeats=args.repeats)}
    if args.tiles is not None and not args.pipeline_only:
        result["accuracy"] = bench_accuracy(args.tiles, filters=args.filters, batch_size=args.batch_size,
                                            epochs=args.epochs, max_minutes=args.max_minutes,
                                            device=args.device, seed=args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
