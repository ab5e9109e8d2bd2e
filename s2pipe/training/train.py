"""``s2pipe train``: tiles -> U-Net -> checkpoints, history and honest metrics.

Metrics are computed on labelled pixels only; the train/val/test figures of
``metrics.json`` are evaluated with the best weights, each under its own name. Outputs
(``MODEL_DIR``): ``best.pt``, ``last.pt``, ``history.csv``, ``metrics.json``,
``curves.png``, ``samples.png``, if asked ``training_summary.txt``, and last ``run.json``,
which marks the run finished (see :mod:`s2pipe.training.outputs`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from s2pipe import __version__
from s2pipe.evaluation.metrics import Scores, scores
from s2pipe.model.checkpoint import ModelMeta, read_checkpoint
from s2pipe.resources import apply_threads
from s2pipe.training.dataset import (
    EpochSampler,
    TileDataset,
    TileSet,
    band_statistics,
    class_counts,
    find_tiles,
    load_tiles,
)
from s2pipe.training.distributed import DistInfo, all_sum, barrier, setup, teardown, wrap
from s2pipe.training.loop import EpochStats, Step, run_epoch
from s2pipe.training.options import TrainOptions, check_options
from s2pipe.training.outputs import SplitScore, TrainOutputs, TrainResult
from s2pipe.training.resume import check_resume
from s2pipe.training.warmstart import Start, build_start, is_frozen, parameter_groups, set_frozen

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    """One pass over one split: mean loss, scores and confusion matrix (all ranks summed)."""

    loss: float
    scores: Scores
    cm: np.ndarray


@dataclass
class RunState:
    """Early-stopping state, saved in ``last.pt`` so that a resumed run continues it."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Data:
    """The tiles of each split in memory, and what was known about them."""

    tileset: TileSet
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images uint16, labels uint8)
    tile_size: int
    num_classes: int

    @property
    def counts(self) -> dict[str, int]:
        return {s: len(self.tileset.split(s)) for s in ("train", "val", "test")}


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


def _summarise(stats: EpochStats, info: DistInfo, meta: ModelMeta) -> EpochResult:
    all_sum(stats.loss_sum, info)
    all_sum(stats.weight_sum, info)
    all_sum(stats.cm, info)
    cm = stats.cm.cpu().numpy()
    return EpochResult(stats.loss, scores(cm, meta.legend), cm)


def train_model(out_dir: str | os.PathLike, *,
                tiles_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                images_dir: str | os.PathLike | None = None, labels_dir: str | os.PathLike | None = None,
                options: TrainOptions | None = None, resume: str | os.PathLike | None = None,
                overwrite: bool = False, progress: Callable[[int], None] | None = None) -> TrainResult:
    """Train a U-Net on ``prepare`` outputs (one folder or several, trained as one set) or
    the study's images/labels folders.

    Started by ``torchrun`` it runs data-parallel (DDP); rank 0 alone writes. Raises
    :class:`TileError` for bad tiles, :class:`OutputExistsError` for an existing
    ``out_dir`` and :class:`CheckpointError` for a ``resume`` checkpoint that does not
    fit, all before anything is written.
    """
    options = options or TrainOptions()
    check_options(options)
    apply_threads()
    t0 = time.monotonic()
    info = setup(options.device)
    try:
        return _Trainer(Path(out_dir), options, info, t0, progress).run(
            tiles_dir, images_dir, labels_dir, resume, overwrite)
    finally:
        teardown(info)


def _load_data(tiles_dir: Any, images_dir: Any, labels_dir: Any, o: TrainOptions) -> Data:
    tileset = find_tiles(tiles_dir, images_dir=images_dir, labels_dir=labels_dir,
                         train_size=o.train_size, seed=o.seed, num_samples=o.num_samples)
    for note in tileset.notes:
        log.warning(note)
    num_classes = max(c.value for c in tileset.legend)
    splits = {s: load_tiles(tileset.split(s), num_bands=len(tileset.bands), num_classes=num_classes)
              for s in ("train", "val", "test") if tileset.split(s)}
    data = Data(tileset, splits, int(splits["train"][0].shape[-1]), num_classes)
    counts = data.counts
    log.info("tiles: %d train, %d val, %d test (%s px, %s)", counts["train"], counts["val"],
             counts["test"], data.tile_size, tileset.source)
    return data


class _Trainer:
    """One training run: model, optimiser and loaders built from the data, then epochs."""

    def __init__(self, out_dir: Path, o: TrainOptions, info: DistInfo, t0: float,
                 progress: Callable[[int], None] | None) -> None:
        self.o, self.info, self.t0, self.progress = o, info, t0, progress
        self.outputs = TrainOutputs(out_dir, save_model=o.save_model, save_samples=o.save_samples,
                                    sample_tiles=o.sample_tiles, save_summary=o.save_summary,
                                    main=info.is_main)
        self.say = log.info if info.is_main else log.debug  # rank 0 alone reports progress

    def run(self, tiles_dir: Any, images_dir: Any, labels_dir: Any, resume: Any,
            overwrite: bool) -> TrainResult:
        o, info = self.o, self.info
        self.outputs.check(overwrite=overwrite, resume=resume)
        ckpt = read_checkpoint(resume) if resume is not None else None
        data = _load_data(tiles_dir, images_dir, labels_dir, o)
        if ckpt is not None:
            check_resume(ckpt, resume, o, data.tileset, data.tile_size, data.counts, info.world_size)
        torch.manual_seed(o.seed)
        start = build_start(o, bands=data.tileset.bands, legend=data.tileset.legend,
                            num_classes=data.num_classes, tile_size=data.tile_size,
                            resume_arch=ckpt.meta.arch if ckpt is not None else None)
        norm = ckpt.meta.normalization if ckpt is not None else \
            start.normalization or band_statistics(data.splits["train"][0])
        weights = _inverse_frequency(class_counts(data.splits["train"][1], data.num_classes)) \
            if o.class_weights == "inverse-frequency" else None
        self._build(data, norm, weights, start)
        self.meta = ModelMeta(
            bands=tuple(data.tileset.bands), legend=data.tileset.legend, normalization=norm,
            tile_size=data.tile_size, arch=start.arch, radiometry=data.tileset.radiometry,
            train_options={**asdict(o), "tiles_source": data.tileset.source, "tiles": data.counts,
                           "class_weight_values": weights, "world_size": info.world_size},
            s2pipe_version=__version__, origin=ckpt.meta.origin if ckpt is not None else start.origin)
        state = RunState()
        self.best_state = copy.deepcopy(self.model.state_dict())
        if ckpt is not None and ckpt.resumable:
            self.model.load_state_dict(ckpt.weights)
            self.optimizer.load_state_dict(ckpt.optimizer or {})
            self.scheduler.load_state_dict(ckpt.scheduler or {})
            state = RunState(**(ckpt.extra_state or {}))
            self.best_state = self.outputs.best_weights(resume, info.device)
            log.info("resuming %s after epoch %d (best epoch %d)", resume, state.epoch, state.best_epoch)
        self.outputs.create(overwrite=overwrite, resume=resume)
        barrier(info)
        try:
            stop_reason = self._epochs(data, state)
            self.model.load_state_dict(self.best_state)  # evaluate with the best weights
            return self._finish(data, state, stop_reason)
        except Exception:
            self.outputs.discard_if_empty()
            raise

    def _build(self, data: Data, norm: Any, weights: list[float] | None, start: Start) -> None:
        o, device = self.o, self.info.device
        cuda = device.type == "cuda"
        channels_last = cuda if o.channels_last is None else o.channels_last
        amp_dtype = None
        if cuda and o.amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        workers = (4 if cuda else 0) if o.workers is None else o.workers
        model = start.model.to(device)
        if cuda and self.info.active:  # batch statistics over every rank's batch, not one GPU's
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs lack it
        self.model = model
        self.net = wrap(self.model, self.info)
        self.optimizer = torch.optim.Adam(parameter_groups(model, o), lr=o.lr)
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.step = Step(device, norm.normalizer(device), channels_last, amp_dtype, data.num_classes)
        self.weight = torch.tensor(weights, dtype=torch.float32, device=device) if weights else None
        self.train_loader, self.train_sampler = _loader(*data.splits["train"], o, self.info,
                                                        train=True, workers=workers)
        self.eval_loaders = {s: _loader(*data.splits[s], o, self.info, train=False, workers=0)[0]
                             for s in data.splits}
        self.scheduler: Any
        self.batch_scheduler: Any = None  # stepped after every optimizer step
        if o.schedule == "onecycle":  # each group's lr is its peak
            self.scheduler = self.batch_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=[g["lr"] for g in self.optimizer.param_groups],
                total_steps=o.epochs * len(self.train_loader))
        else:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=o.lr_factor, patience=o.lr_patience, min_lr=o.min_lr)

    def _freeze(self, epoch: int) -> None:
        frozen = is_frozen(self.o, epoch)
        if frozen != bool(self.step.frozen):
            self.step.frozen = set_frozen(self.model, frozen)
            self.net = wrap(self.model, self.info)  # DDP syncs what needs gradients when built
            self.say("epoch %d: encoder %s", epoch, "frozen (decoder alone)" if frozen else "released")

    def _evaluate(self, split: str) -> EpochResult:
        return _summarise(run_epoch(self.model, self.eval_loaders[split], self.step, weight=self.weight),
                          self.info, self.meta)

    def _out_of_time(self, epoch_times: list[float]) -> bool:
        if self.o.max_minutes is None or not epoch_times:
            return False
        late = float(time.monotonic() + float(np.mean(epoch_times)) > self.t0 + 60 * self.o.max_minutes)
        return bool(all_sum(torch.tensor([late], device=self.info.device), self.info).item() > 0)

    def _epochs(self, data: Data, state: RunState) -> str:
        """Train until the epochs, the patience or the time budget run out; the reason."""
        o = self.o
        monitor = "val" if "val" in data.splits else "train"
        if monitor == "train":
            log.warning("no validation tiles: learning-rate schedule and early stopping follow train mIoU")
        patience = f"early stopping: no {monitor} mIoU gain in {o.patience} epochs"
        epoch_times: list[float] = []
        while state.epoch < o.epochs:
            if state.bad_epochs >= o.patience:  # a resumed run that had already stopped
                return patience
            if self._out_of_time(epoch_times):
                return f"time budget of {o.max_minutes:g} min"
            epoch = state.epoch + 1
            te = time.monotonic()
            self.train_sampler.set_epoch(epoch)
            self._freeze(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            tr = _summarise(run_epoch(self.net, self.train_loader, self.step, optimizer=self.optimizer,
                                      weight=self.weight, scaler=self.scaler, scheduler=self.batch_scheduler,
                                      progress=self.progress),
                            self.info, self.meta)
            va = self._evaluate("val") if "val" in data.splits else None
            seconds = time.monotonic() - te
            epoch_times.append(seconds)
            self._after_epoch(state, epoch, lr, seconds, tr, va, monitor)
            if state.bad_epochs >= o.patience:
                return patience
        return "epochs done"

    def _after_epoch(self, state: RunState, epoch: int, lr: float, seconds: float, tr: EpochResult,
                     va: EpochResult | None, monitor: str) -> None:
        score = (va or tr).scores.miou
        score = -1.0 if math.isnan(score) else score
        if self.batch_scheduler is None:
            self.scheduler.step(score)
        if score > state.best_score:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.outputs.save_best(self.model, self.meta.with_metrics(
                {"epoch": epoch, f"{monitor}_miou": score}))
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        state.history.append(self.outputs.history_row(epoch, lr, seconds, tr, va))
        # last.pt before history.csv: a run that stops from here on can be resumed
        self.outputs.save_last(self.model, self.meta, self.optimizer, self.scheduler, asdict(state))
        self.outputs.write_history(state.history)
        self.say("epoch %d/%d  loss %.4f/%s  OA %.3f/%s  mIoU %.3f/%s  lr %.1e  %.1f s%s", epoch,
                 self.o.epochs, tr.loss, _fmt(va.loss if va else None, 4), tr.scores.overall_accuracy,
                 _fmt(va.scores.overall_accuracy if va else None), tr.scores.miou,
                 _fmt(va.scores.miou if va else None),
                 lr, seconds, "  *" if state.best_epoch == epoch else "")

    def _finish(self, data: Data, state: RunState, stop_reason: str) -> TrainResult:
        final: dict[str, dict[str, Any] | None] = {}
        for split in ("train", "val", "test"):
            if split in data.splits:
                r = self._evaluate(split)
                final[split] = {"loss": r.loss, **r.scores.to_dict(), "confusion_matrix": r.cm.tolist()}
            else:
                final[split] = None
        minutes = (time.monotonic() - self.t0) / 60
        monitor = "val" if "val" in data.splits else "train"
        metrics = {"best_epoch": state.best_epoch, "epochs_run": state.epoch, "stop_reason": stop_reason,
                   "monitor": f"{monitor}_miou", "minutes": minutes, "device": str(self.info.device),
                   "world_size": self.info.world_size, "tiles": data.counts, **final,
                   "history": state.history}
        summary = {k: metrics[k] for k in ("best_epoch", "epochs_run", "stop_reason", "monitor")}
        summary.update({s: (None if v is None else {k: v[k] for k in
                                                    ("overall_accuracy", "kappa", "miou", "per_class")})
                        for s, v in final.items()})
        self.meta = self.meta.with_metrics(summary)
        if self.info.is_main:
            self.outputs.finish(self.model, self.meta, metrics, data.splits, self.step)
        barrier(self.info)
        test = final["test"]
        self.say("done: best epoch %d of %d (%s), test mIoU %s", state.best_epoch, state.epoch,
                 stop_reason, "n/a" if test is None else f"{test['miou']:.3f}")
        files = self.outputs.written()
        out = self.outputs
        return TrainResult(
            out.dir, files["best.pt"], files["last.pt"], out.metrics, out.history, out.curves,
            files["samples.png"], files["training_summary.txt"], state.best_epoch, state.epoch,
            stop_reason, minutes, str(self.info.device), data.counts,
            {s: None if v is None else SplitScore(v["overall_accuracy"], v["kappa"], v["miou"])
             for s, v in final.items()}, files["run.json"], rank=self.info.rank)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
