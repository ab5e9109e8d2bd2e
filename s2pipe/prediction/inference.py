"""Batches of normalised windows -> class probabilities, with optional test-time augmentation:
:class:`WindowModel` runs a torch module, :class:`OnnxWindowModel` an ONNX Runtime session."""

from __future__ import annotations

from typing import Any

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


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax of float32 ``logits`` along ``axis`` (numerically stable)."""
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


class OnnxWindowModel:
    """An ONNX Runtime session with :class:`WindowModel`'s interface (CPU, TTA alike)."""

    def __init__(self, session: Any, tta: str = "none", *, input_name: str = "input",
                 output_name: str = "logits") -> None:
        self.session = session
        self.ops = tta_ops(tta)
        self.input_name, self.output_name = input_name, output_name

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, bands, t, t) normalised float32 -> (N, classes, t, t) logits, no TTA."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run([self.output_name], feed)[0]

    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, bands, t, t) normalised float32 -> (N, classes, t, t) float32 probabilities."""
        x = np.asarray(batch, dtype=np.float32)
        total: np.ndarray | None = None
        for k, flip in self.ops:
            xi = np.rot90(x, k, (2, 3)) if k else x
            xi = xi[..., ::-1] if flip else xi
            p = softmax(self.logits(xi))
            p = p[..., ::-1] if flip else p
            p = np.rot90(p, -k, (2, 3)) if k else p
            total = p if total is None else total + p
        assert total is not None
        return np.ascontiguousarray(total / len(self.ops), dtype=np.float32)
