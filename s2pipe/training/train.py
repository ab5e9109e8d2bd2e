"""``s2pipe train``: tiles -> U-Net -> checkpoints, history and honest metrics.

Metrics are computed on labelled pixels only; the train/val/test figures of
``metrics.json`` are evaluated with the best weights, each under its own name. Outputs
(``MODEL_DIR``): ``best.pt``, ``last.pt``, ``history.csv``, ``metrics.json``,
``curves.png``, ``samples.png`` and, if asked, ``training_summary.txt``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from s2pipe import __version__
from s2pipe.model.checkpoint import read_checkpoint
from s2pipe.training.dataset import EpochSampler, TileDataset, band_statistics, class_counts, find_tiles, load_tiles
from s2pipe.training.distributed import DistInfo, all_sum, barrier, setup, teardown
from s2pipe.errors import CheckpointError
from s2pipe.legend import legend_from_list
from s2pipe.training.loop import EpochStats, Step, run_epoch
from s2pipe.evaluation.metrics import scores
from s2pipe.model.unet import UNet
from s2pipe.training.outputs import TrainOutputs
from s2pipe.training.options import CLASS_WEIGHTS, ClassWeights, TrainOptions, check_options  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

@dataclass
class TrainResult:
    model_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    metrics: Path
    history: Path
    curves: Path
    samples: Path | None
    summary: Path | None
    best_epoch: int
    epochs_run: int
    stop_reason: str
    minutes: float
    device: str
    tiles: dict[str, int]
    scores: dict[str, dict | None] = field(default_factory=dict)  # split -> OA, kappa, mIoU


def _inverse_frequency(counts: np.ndarray) -> list[float]:
    present = counts > 0
    w = np.zeros(len(counts))
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w.tolist()


def _loader(images: np.ndarray, labels: np.ndarray, o: TrainOptions, info: DistInfo, *,
            train: bool, workers: int) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(images), seed=o.seed, shuffle=train, augment=train and o.augment,
                           rank=info.rank, world_size=info.world_size)
    loader = DataLoader(TileDataset(images, labels), batch_size=o.batch_size if train else 2 * o.batch_size,
                        sampler=sampler, num_workers=workers, pin_memory=info.device.type == "cuda",
                        persistent_workers=workers > 0)
    return loader, sampler


def _summarise(stats: EpochStats, info: DistInfo, legend: list) -> tuple[float, Any, np.ndarray]:
    all_sum(stats.loss_sum, info)
    all_sum(stats.weight_sum, info)
    all_sum(stats.cm, info)
    cm = stats.cm.cpu().numpy()
    return stats.loss, scores(cm, legend_from_list(legend)), cm


def train_model(out_dir: str | os.PathLike, *, tiles_dir: str | os.PathLike | None = None,
                images_dir: str | os.PathLike | None = None, labels_dir: str | os.PathLike | None = None,
                options: TrainOptions = TrainOptions(), resume: str | os.PathLike | None = None,
                overwrite: bool = False, progress: Callable[[int], None] | None = None) -> TrainResult:
    """Train a U-Net on a ``prepare`` output (or the study's images/labels folders).

    Started by ``torchrun`` it runs data-parallel (DDP); rank 0 alone writes. Raises
    :class:`TileError` for bad tiles and :class:`OutputExistsError` for an existing
    ``out_dir``, both before anything is written.
    """
    o = options
    check_options(o)
    t0 = time.monotonic()
    info = setup(o.device)
    try:
        return _train(Path(out_dir), tiles_dir, images_dir, labels_dir, o, resume, overwrite, progress, info, t0)
    finally:
        teardown(info)


def _train(out_dir: Path, tiles_dir, images_dir, labels_dir, o: TrainOptions, resume, overwrite: bool,
           progress, info: DistInfo, t0: float) -> TrainResult:
    outputs = TrainOutputs(out_dir, save_model=o.save_model, save_samples=o.save_samples,
                           sample_tiles=o.sample_tiles, save_summary=o.save_summary, main=info.is_main)
    outputs.check(overwrite=overwrite, resume=resume)
    state = read_checkpoint(resume) if resume is not None else None
    if state is not None and not {"optimizer", "scheduler", "extra_state"} <= state.keys():
        raise CheckpointError(f"{resume} holds no training state; resume from MODEL_DIR/last.pt")
    tileset = find_tiles(tiles_dir, images_dir=images_dir, labels_dir=labels_dir,
                         train_size=o.train_size, seed=o.seed, num_samples=o.num_samples)
    for note in tileset.notes:
        log.warning(note)
    num_classes = max(int(c["value"]) for c in tileset.legend)
    num_bands = len(tileset.bands)
    data = {s: load_tiles(tileset.split(s), num_bands=num_bands, num_classes=num_classes)
            for s in ("train", "val", "test") if tileset.split(s)}
    tile_size = int(data["train"][0].shape[-1])
    counts = {s: len(tileset.split(s)) for s in ("train", "val", "test")}
    log.info("tiles: %d train, %d val, %d test (%s px, %s)", counts["train"], counts["val"],
             counts["test"], tile_size, tileset.source)
    if state is not None:
        norm = state["meta"]["normalization"]
        if int(state["meta"]["arch"]["filters"]) != o.filters:
            raise CheckpointError(f"{resume} was trained with --filters {state['meta']['arch']['filters']}, "
                                  f"not {o.filters}; resume with the same options")
    else:
        mean, std = band_statistics(data["train"][0])
        norm = {"mean": mean, "std": std}
    train_counts = class_counts(data["train"][1], num_classes)
    weight_list = _inverse_frequency(train_counts) if o.class_weights == "inverse-frequency" else None

    device = info.device
    cuda = device.type == "cuda"
    channels_last = cuda if o.channels_last is None else o.channels_last
    amp_dtype = None
    if cuda and o.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    workers = (4 if cuda else 0) if o.workers is None else o.workers

    torch.manual_seed(o.seed)
    model = UNet(num_bands, num_classes, o.filters).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) \
        if info.active else model
    optimizer = torch.optim.Adam(model.parameters(), lr=o.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=o.lr_factor,
                                                           patience=o.lr_patience, min_lr=o.min_lr)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    step = Step(device, torch.tensor(norm["mean"], device=device).view(1, -1, 1, 1),
                torch.tensor(norm["std"], device=device).view(1, -1, 1, 1),
                channels_last, amp_dtype, num_classes)
    weight = torch.tensor(weight_list, dtype=torch.float32, device=device) if weight_list else None

    run = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    best_state = copy.deepcopy(model.state_dict())
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.update(state["extra_state"])
        best_state = outputs.best_weights(resume, device)
        log.info("resuming %s after epoch %d (best epoch %d)", resume, run["epoch"], run["best_epoch"])

    monitor = "val" if "val" in data else "train"
    if monitor == "train":
        log.warning("no validation tiles: learning-rate schedule and early stopping follow train mIoU")
    meta = {"bands": tileset.bands, "legend": tileset.legend, "normalization": norm,
            "tile_size": tile_size, "arch": model.arch, "radiometry": tileset.radiometry,
            "train_options": {**asdict(o), "tiles_source": tileset.source, "tiles": counts,
                              "class_weight_values": weight_list},
            "metrics": {}, "s2pipe_version": __version__}

    outputs.create(overwrite=overwrite, resume=resume)
    barrier(info)
    train_loader, train_sampler = _loader(*data["train"], o, info, train=True, workers=workers)
    eval_loaders = {s: _loader(*data[s], o, info, train=False, workers=0)[0] for s in data}
    say = log.info if info.is_main else log.debug  # rank 0 alone reports progress
    deadline = None if o.max_minutes is None else t0 + 60 * o.max_minutes
    stop_reason = "epochs done"
    epoch_times: list[float] = []
    while run["epoch"] < o.epochs:
        epoch = run["epoch"] + 1
        if run["bad_epochs"] >= o.patience:  # a resumed run that had already stopped
            stop_reason = f"early stopping: no {monitor} mIoU gain in {o.patience} epochs"
            break
        if deadline is not None and epoch_times:
            late = float(time.monotonic() + float(np.mean(epoch_times)) > deadline)
            if all_sum(torch.tensor([late], device=device), info).item() > 0:
                stop_reason = f"time budget of {o.max_minutes:g} min"
                break
        te = time.monotonic()
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = _summarise(run_epoch(net, train_loader, step, optimizer=optimizer, weight=weight,
                                  scaler=scaler, progress=progress), info, tileset.legend)
        va = _summarise(run_epoch(model, eval_loaders["val"], step, weight=weight), info, tileset.legend) \
            if "val" in data else None
        seconds = time.monotonic() - te
        epoch_times.append(seconds)
        row = outputs.history_row(epoch, lr, seconds, tr, va)
        score = (va or tr)[1].miou
        score = -1.0 if math.isnan(score) else score
        scheduler.step(score)
        if score > run["best_score"]:
            run.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            best_state = copy.deepcopy(model.state_dict())
            outputs.save_best(model, {**meta, "metrics": {"epoch": epoch, f"{monitor}_miou": score}})
        else:
            run["bad_epochs"] += 1
        run["epoch"] = epoch
        run["history"].append(row)
        outputs.write_history(run["history"])
        outputs.save_last(model, meta, optimizer, scheduler, run)
        say("epoch %d/%d  loss %.4f/%s  OA %.3f/%s  mIoU %.3f/%s  lr %.1e  %.1f s%s", epoch, o.epochs,
                 tr[0], _fmt(va, 0), tr[1].overall_accuracy, _fmt(va, 1, "overall_accuracy"),
                 tr[1].miou, _fmt(va, 1, "miou"), lr, seconds, "  *" if run["best_epoch"] == epoch else "")
        if run["bad_epochs"] >= o.patience:
            stop_reason = f"early stopping: no {monitor} mIoU gain in {o.patience} epochs"
            break

    model.load_state_dict(best_state)  # evaluate with the best weights
    final = {}
    for split in ("train", "val", "test"):
        if split in data:
            loss, sc, cm = _summarise(run_epoch(model, eval_loaders[split], step, weight=weight), info,
                                      tileset.legend)
            final[split] = {"loss": loss, **sc.to_dict(), "confusion_matrix": cm.tolist()}
        else:
            final[split] = None
    minutes = (time.monotonic() - t0) / 60
    metrics = {"best_epoch": run["best_epoch"], "epochs_run": run["epoch"], "stop_reason": stop_reason,
               "monitor": f"{monitor}_miou", "minutes": minutes, "device": str(device),
               "world_size": info.world_size, "tiles": counts, **final,
               "history": run["history"]}
    meta["metrics"] = {k: metrics[k] for k in ("best_epoch", "epochs_run", "stop_reason", "monitor")}
    meta["metrics"].update({s: (None if final[s] is None else
                                {k: final[s][k] for k in ("overall_accuracy", "kappa", "miou", "per_class")})
                            for s in final})
    if info.is_main:
        outputs.finish(model, meta, metrics, data, step)
    barrier(info)
    say("done: best epoch %d of %d (%s), test mIoU %s", run["best_epoch"], run["epoch"], stop_reason,
             "n/a" if final["test"] is None else f"{final['test']['miou']:.3f}")
    files = outputs.written()
    return TrainResult(out_dir, files["best.pt"], files["last.pt"], outputs.metrics, outputs.history,
                       outputs.curves, files["samples.png"], files["training_summary.txt"], run["best_epoch"],
                       run["epoch"], stop_reason, minutes, str(device), counts,
                       {s: None if v is None else {k: v[k] for k in ("overall_accuracy", "kappa", "miou")}
                        for s, v in final.items()})


def _fmt(va, i: int, attr: str | None = None) -> str:
    if va is None:
        return "-"
    v = getattr(va[i], attr) if attr else va[i]
    return f"{v:.4f}" if attr is None else f"{v:.3f}"
