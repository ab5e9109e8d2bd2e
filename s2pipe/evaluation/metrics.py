"""Confusion-matrix metrics over labelled pixels only.

Label/map value 0 is "no data": a pixel where the reference *or* the prediction is 0
never enters a confusion matrix. Rows are reference classes 1..n, columns predicted
classes 1..n (row/column ``k`` is class value ``k + 1``). Class values above ``n`` are
refused, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass

if TYPE_CHECKING:  # torch is only needed by the training path
    import torch


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, num_classes: int = 8) -> np.ndarray:
    """The int64 (n, n) confusion matrix of two label arrays of equal shape.

    Rows are reference class values 1..n, columns predicted values 1..n; pixels where
    either array is 0 are ignored. Values outside 0..n raise ``ValueError``.
    """
    reference = np.asarray(reference)
    predicted = np.asarray(predicted)
    if reference.shape != predicted.shape:
        raise ValueError(f"reference shape {reference.shape} != predicted shape {predicted.shape}")
    ref = reference.ravel().astype(np.int64, copy=False)
    pred = predicted.ravel().astype(np.int64, copy=False)
    for name, arr in (("reference", ref), ("predicted", pred)):
        if arr.size and (arr.min() < 0 or arr.max() > num_classes):
            raise ValueError(f"{name} holds values outside 0..{num_classes} "
                             f"(min {arr.min()}, max {arr.max()})")
    keep = (ref > 0) & (pred > 0)
    idx = (ref[keep] - 1) * num_classes + (pred[keep] - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrix_torch(reference: torch.Tensor, predicted: torch.Tensor,
                           num_classes: int = 8) -> torch.Tensor:
    """Fast on-device confusion matrix for training (int64, same layout as above).

    ``reference`` holds class values 0..n (0 ignored); ``predicted`` holds class values
    1..n (e.g. ``logits.argmax(1) + 1``). No range check: the caller owns the inputs.
    """
    import torch

    ref = reference.reshape(-1).long()
    pred = predicted.reshape(-1).long()
    keep = (ref > 0) & (pred > 0)
    idx = (ref[keep] - 1) * num_classes + (pred[keep] - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Scores:
    """Accuracy figures of one confusion matrix (NaN where a figure is undefined)."""

    overall_accuracy: float
    kappa: float
    miou: float
    per_class: list[dict[str, Any]] = field(default_factory=list)
    pixels: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; NaN becomes None."""
        return {"overall_accuracy": nan_none(self.overall_accuracy), "kappa": nan_none(self.kappa),
                "miou": nan_none(self.miou), "pixels": int(self.pixels),
                "per_class": [{k: nan_none(v) for k, v in c.items()} for c in self.per_class]}


def nan_none(v: Any) -> Any:
    """NaN as None (JSON has no NaN); anything else as it is."""
    return None if isinstance(v, float) and math.isnan(v) else v


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else math.nan


def scores(cm: np.ndarray, legend: Sequence[LandCoverClass] = DEFAULT_LEGEND) -> Scores:
    """Overall accuracy, Cohen's kappa, mIoU and per-class precision/recall/F1/IoU.

    A class absent from both reference and prediction gets NaN metrics and is left out
    of the mIoU; a class predicted but never in the reference has IoU 0 and counts.
    ``legend`` names the classes; row ``k`` is class value ``k + 1``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    names = {c.value: c.name for c in legend}
    total = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    ref_tot = cm.sum(axis=1).astype(np.float64)   # support
    pred_tot = cm.sum(axis=0).astype(np.float64)
    oa = _div(tp.sum(), total)
    pe = _div(float((ref_tot * pred_tot).sum()), float(total) ** 2) if total else math.nan
    kappa = math.nan if not total else (_div(oa - pe, 1.0 - pe) if pe != 1.0 else
                                        (1.0 if oa == 1.0 else 0.0))
    per_class: list[dict[str, Any]] = []
    ious: list[float] = []
    for k in range(n):
        present = ref_tot[k] + pred_tot[k] > 0
        precision = _div(tp[k], pred_tot[k])
        recall = _div(tp[k], ref_tot[k])
        union = ref_tot[k] + pred_tot[k] - tp[k]
        iou = _div(tp[k], union) if present else math.nan
        f1 = _div(2 * tp[k], ref_tot[k] + pred_tot[k]) if present else math.nan
        if present:
            ious.append(iou)
        per_class.append({"value": k + 1, "name": names.get(k + 1, f"class {k + 1}"),
                          "precision": precision, "recall": recall, "f1": f1, "iou": iou,
                          "support": int(ref_tot[k])})
    miou = float(np.mean(ious)) if ious else math.nan
    return Scores(overall_accuracy=oa, kappa=kappa, miou=miou, per_class=per_class, pixels=total)
