"""Batches of normalised windows -> class probabilities, with optional test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def tta_ops(tta: str) -> list[tuple[int, bool]]:
    """(quarter turns, flip) pairs of the dihedral transforms to average over."""
    if tta == "none":
        return [(0, False)]
    if tta == "flips":
        return [(0, False), (0, True), (2, False), (2, True)]  # id, h-flip, rot180, v-flip
    return [(k, f) for k in range(4) for f in (False, True)]


class WindowModel:
    """The network on the chosen device: ``(N, bands, t, t)`` float32 -> probabilities."""

    def __init__(self, model: nn.Module, device: torch.device, tta: str = "none") -> None:
        self.device = device
        self.ops = tta_ops(tta)
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs lack it
        self.amp = device.type == "cuda"  # AMP only on CUDA: bf16 on plain CPUs is far slower
        self.amp_dtype = torch.float16 if self.amp and not torch.cuda.is_bf16_supported() \
            else torch.bfloat16

    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, bands, t, t) normalised float32 -> (N, classes, t, t) float32 probabilities."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype,
                                                    enabled=self.amp):
            x = torch.as_tensor(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            total: torch.Tensor | None = None
            for k, flip in self.ops:
                xi = torch.rot90(x, k, (2, 3)) if k else x
                xi = torch.flip(xi, (3,)) if flip else xi
                p = torch.softmax(self.model(xi).float(), dim=1)
                p = torch.flip(p, (3,)) if flip else p
                p = torch.rot90(p, -k, (2, 3)) if k else p
                total = p if total is None else total + p
            assert total is not None
            return (total / len(self.ops)).cpu().numpy()
