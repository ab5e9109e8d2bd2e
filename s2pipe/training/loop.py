"""One pass over a loader: forward, masked loss, optional optimizer step, confusion matrix.

Batches arrive as raw uint16 DN and uint8 labels; they are normalised on the device by
:class:`s2pipe.model.normalization.Normalizer`, the one ``predict`` uses.
Label 0 (no data) never contributes to the loss, its gradient or the metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s2pipe.evaluation.metrics import confusion_matrix_torch
from s2pipe.model.normalization import Normalizer


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled pixels and its (weighted) pixel count.

    ``labels`` hold class values 0..n (0 ignored); channel ``k`` of ``logits`` is class
    ``k + 1``. With no labelled pixel the loss is an exact zero with zero gradient.
    """
    target = labels.long() - 1  # 0 -> -1, ignored
    total = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=-1, reduction="sum")
    valid = target >= 0
    denom = weight[target[valid]].sum() if weight is not None else valid.sum().to(total.dtype)
    return total / denom.clamp_min(1e-12), denom.detach()


@dataclass
class Step:
    """How batches are moved and computed on the device."""

    device: torch.device
    normalize: Normalizer
    channels_last: bool = False
    amp_dtype: torch.dtype | None = None  # autocast dtype on CUDA, None = float32
    num_classes: int = 8
    frozen: tuple[nn.Module, ...] = ()  # kept in eval mode while training (a frozen encoder)

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype == torch.uint16 and self.device.type != "cpu":
            # uint16 kernels are sparse off the CPU: move the bits as int16, widen there
            x = images.view(torch.int16).to(self.device, non_blocking=True)
            x = x.to(torch.int32).bitwise_and_(0xFFFF).float()
        else:
            x = images.to(self.device, non_blocking=True).float()
        x = self.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


@dataclass
class EpochStats:
    loss_sum: torch.Tensor  # float64, sum of loss * pixel weight
    weight_sum: torch.Tensor  # float64
    cm: torch.Tensor  # int64 (n, n)

    @property
    def loss(self) -> float:
        w = float(self.weight_sum)
        return float(self.loss_sum) / w if w else float("nan")


def run_epoch(model: nn.Module, batches: Iterable, step: Step, *,
              optimizer: torch.optim.Optimizer | None = None,
              weight: torch.Tensor | None = None,
              scaler: torch.amp.GradScaler | None = None,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
              progress: Callable[[int], None] | None = None) -> EpochStats:
    """Train (when ``optimizer`` is given) or evaluate ``model`` over ``batches``.

    ``scheduler``, if given, is stepped after every optimizer step (a per-batch schedule).
    """
    training = optimizer is not None
    model.train(training)
    for module in step.frozen if training else ():
        module.eval()
    n = step.num_classes
    stats = EpochStats(torch.zeros((), dtype=torch.float64, device=step.device),
                       torch.zeros((), dtype=torch.float64, device=step.device),
                       torch.zeros((n, n), dtype=torch.int64, device=step.device))
    grad = contextlib.nullcontext() if training else torch.no_grad()
    with grad:
        for images, labels in batches:
            x, y = step.inputs(images, labels)
            with step.autocast():
                logits = model(x)
            loss, denom = masked_cross_entropy(logits, y, weight)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            stats.loss_sum += loss.detach().double() * denom.double()
            stats.weight_sum += denom.double()
            stats.cm += confusion_matrix_torch(y, logits.detach().argmax(1) + 1, n)
            if progress is not None:
                progress(1)
    return stats
