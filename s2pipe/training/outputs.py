"""What ``s2pipe train`` writes into MODEL_DIR, and the refusal to clobber an old run.

Every file is written atomically; only rank 0 writes. A run folder holds ``best.pt``,
``last.pt`` (weights + optimizer/scheduler/early-stopping state for ``--resume``),
``history.csv``, ``metrics.json``, ``curves.png``, ``samples.png``, optionally
``training_summary.txt``, and ``run.json``: the run's record, written last. A folder
without ``run.json`` holds an unfinished run (killed, or failed): ``last.pt`` is saved
after every epoch so that ``--resume`` continues it, and nothing takes it for a model.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from s2pipe.errors import CheckpointError, OutputExistsError
from s2pipe.evaluation.metrics import nan_none
from s2pipe.model.checkpoint import ModelMeta, read_checkpoint, save_checkpoint
from s2pipe.outputs import atomic_output

if TYPE_CHECKING:  # pragma: no cover
    from s2pipe.training.train import EpochResult

log = logging.getLogger(__name__)

RECORD_NAME = "run.json"  # written last: the folder holds a finished run when it exists
OUTPUT_NAMES = (RECORD_NAME, "best.pt", "last.pt", "history.csv", "metrics.json", "curves.png",
                "samples.png", "training_summary.txt")


@dataclass(frozen=True)
class SplitScore:
    """The best model's accuracy on one split (None where undefined)."""

    overall_accuracy: float | None
    kappa: float | None
    miou: float | None


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
    scores: dict[str, SplitScore | None] = field(default_factory=dict)  # None: no tile of that split
    record: Path | None = None  # run.json, written last: the run finished
    rank: int = 0               # under torchrun: this process's; rank 0 reports

    def headline(self) -> tuple[str, SplitScore]:
        """The split a summary reports (test, else val, else train) and its scores."""
        split = next(s for s in ("test", "val", "train") if self.scores.get(s) is not None)
        score = self.scores[split]
        assert score is not None
        return split, score


class TrainOutputs:
    """Paths and writers of one training run folder."""

    def __init__(self, out_dir: Path, *, save_model: bool = True, save_samples: bool = True,
                 sample_tiles: int = 4, save_summary: bool = False, main: bool = True) -> None:
        self.dir = Path(out_dir)
        self.save_model, self.save_samples, self.sample_tiles = save_model, save_samples, sample_tiles
        self.save_summary, self.main = save_summary, main
        self.best, self.last = self.dir / "best.pt", self.dir / "last.pt"
        self.history, self.metrics = self.dir / "history.csv", self.dir / "metrics.json"
        self.curves, self.samples = self.dir / "curves.png", self.dir / "samples.png"
        self.training_summary = self.dir / "training_summary.txt"
        self.record = self.dir / RECORD_NAME
        self.created = False  # whether this run made the folder

    def _resuming_here(self, resume: Any) -> bool:
        return resume is not None and Path(resume).resolve().parent == self.dir.resolve()

    def check(self, *, overwrite: bool, resume: Any) -> None:
        """Refuse an existing, non-empty run folder unless overwriting or resuming into it."""
        if self.dir.exists() and not self.dir.is_dir():
            raise OutputExistsError(f"{self.dir} exists and is not a folder; choose another -o")
        if not self.dir.is_dir() or not any(self.dir.iterdir()) or overwrite or self._resuming_here(resume):
            return
        if not self.record.exists() and self.last.is_file():
            raise OutputExistsError(f"{self.dir} holds an unfinished run (no {RECORD_NAME}); continue "
                                    f"it with --resume {self.last}, or pass --overwrite to start again")
        if not self.record.exists() and any((self.dir / n).exists() for n in OUTPUT_NAMES):
            raise OutputExistsError(f"{self.dir} holds a run that stopped before its first epoch was "
                                    "saved (no last.pt to resume from); pass --overwrite to start again")
        raise OutputExistsError(f"{self.dir} already exists; pass --overwrite to replace it "
                                "or --resume DIR/last.pt to continue it")

    def create(self, *, overwrite: bool, resume: Any) -> None:
        if not self.main:
            return
        self.record.unlink(missing_ok=True)  # first: from here on the folder is being changed
        if overwrite and not self._resuming_here(resume):
            for name in OUTPUT_NAMES:
                (self.dir / name).unlink(missing_ok=True)
        self.created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)

    def discard_if_empty(self) -> None:
        """After a failure: remove the run folder if this run made it and wrote nothing."""
        if self.main and self.created and self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()

    def best_weights(self, resume: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """The best weights of the interrupted run (``best.pt`` next to ``last.pt``)."""
        best = Path(resume).parent / "best.pt"
        if not best.is_file():
            raise CheckpointError(f"{best} not found; --resume needs the best.pt written next to {resume}")
        return read_checkpoint(best, device=device).weights

    @staticmethod
    def history_row(epoch: int, lr: float, seconds: float, tr: EpochResult,
                    va: EpochResult | None) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "seconds": round(seconds, 3)}
        for split, res in (("train", tr), ("val", va)):
            if res is None:
                continue
            loss, sc, cm = res.loss, res.scores, res.cm
            row.update({f"{split}_loss": nan_none(loss), f"{split}_oa": nan_none(sc.overall_accuracy),
                        f"{split}_kappa": nan_none(sc.kappa), f"{split}_miou": nan_none(sc.miou)})
            for c in sc.per_class:
                row[f"{split}_iou_{c['value']}"] = nan_none(c["iou"])
                row[f"{split}_f1_{c['value']}"] = nan_none(c["f1"])
            row[f"{split}_cm"] = cm.tolist()
        return row

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        if not self.main:
            return
        fields = [k for k in rows[0] if not k.endswith("_cm")]
        with atomic_output(self.history, overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def save_best(self, model: nn.Module, meta: ModelMeta) -> None:
        if self.main and self.save_model:
            save_checkpoint(self.best, model=model, meta=meta)

    def save_last(self, model: nn.Module, meta: ModelMeta, optimizer: Any, scheduler: Any,
                  run: dict[str, Any]) -> None:
        if self.main and self.save_model:
            save_checkpoint(self.last, model=model, meta=meta, optimizer=optimizer, scheduler=scheduler,
                            extra_state=run)

    def finish(self, model: nn.Module, meta: ModelMeta, metrics: dict[str, Any],
               data: dict[str, tuple[np.ndarray, np.ndarray]], step: Any) -> None:
        """Final files: best.pt with its metrics, metrics.json, curves, samples, summary."""
        from s2pipe.training.plots import plot_curves, plot_samples

        if self.save_model:
            save_checkpoint(self.best, model=model, meta=meta)
        with atomic_output(self.metrics, overwrite=True) as tmp:
            tmp.write_text(json.dumps(metrics, indent=1))
        plot_curves(metrics["history"], self.curves)
        if self.save_samples:
            split = next(s for s in ("val", "test", "train") if s in data)
            images, labels = data[split]
            pick = np.argsort(-(labels > 0).reshape(len(labels), -1).sum(1), kind="stable")[: self.sample_tiles]
            pick = np.sort(pick)
            model.eval()
            with torch.no_grad():
                x, _ = step.inputs(torch.from_numpy(images[pick]), torch.from_numpy(labels[pick]))
                with step.autocast():
                    pred = (model(x).argmax(1) + 1).to(torch.uint8).cpu().numpy()
            pred[~images[pick].any(axis=1)] = 0  # no data stays black
            plot_samples(images[pick], labels[pick], pred, list(meta.bands), meta.legend,
                         self.samples, title=f"{split} tiles, best weights")
        if self.save_summary:
            n_params = sum(p.numel() for p in model.parameters())
            lines = [f"s2pipe {meta.s2pipe_version} training summary", "",
                     f"architecture: {meta.arch}  ({n_params:,} parameters)",
                     f"tiles: {metrics['tiles']}  tile size {meta.tile_size}",
                     f"stopped: {metrics['stop_reason']} after {metrics['epochs_run']} epochs, "
                     f"best epoch {metrics['best_epoch']}, {metrics['minutes']:.2f} min on {metrics['device']}",
                     "", "split   OA      kappa   mIoU"]
            for s in ("train", "val", "test"):
                m = metrics[s]
                if m is not None:
                    lines.append(f"{s:<7} {m['overall_accuracy'] or 0:.4f}  {m['kappa'] or 0:.4f}  "
                                 f"{m['miou'] or 0:.4f}")
            lines += ["", "options: " + json.dumps(meta.train_options), "", str(model)]
            with atomic_output(self.training_summary, overwrite=True) as tmp:
                tmp.write_text("\n".join(lines) + "\n")
        record = {"complete": True, "s2pipe_version": meta.s2pipe_version,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **{k: metrics[k] for k in ("stop_reason", "best_epoch", "epochs_run", "monitor")},
                  "files": sorted(n for n, p in self.written().items() if p is not None)}
        with atomic_output(self.record, overwrite=True) as tmp:  # last: the run is finished
            tmp.write_text(json.dumps(record, indent=1) + "\n")

    def written(self) -> dict[str, Path | None]:
        return {name: (self.dir / name if (self.dir / name).exists() else None) for name in OUTPUT_NAMES}
