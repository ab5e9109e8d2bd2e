"""The one input normalisation of the U-Net, used by training and prediction alike.

Inputs are DN = 10000 * reflectance (uint16, 0 = no data in every band). Each band is
standardised with the training split's mean and standard deviation, and no-data pixels
enter the model as 0, i.e. as the band means. The statistics travel in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and standard deviation of DN over valid training pixels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def normalizer(self, device: torch.device | str = "cpu") -> Normalizer:
        return Normalizer(self, torch.device(device))

    def normalize_array(self, x: np.ndarray) -> np.ndarray:
        """:class:`Normalizer`'s rule on a NumPy ``(bands, H, W)`` or ``(N, bands, H, W)``
        array of DN, bit for bit (the same float32 operations in the same order): a new
        float32 array. Prediction's reading thread uses it, so that no torch thread pool
        competes with the model's threads."""
        axis = x.ndim - 3
        shape = (-1, 1, 1)
        valid = np.any(x != 0, axis=axis, keepdims=True)
        out = np.subtract(x, np.asarray(self.mean, np.float32).reshape(shape), dtype=np.float32)
        out /= np.asarray(self.std, np.float32).reshape(shape)
        out *= valid
        return out


class Normalizer:
    """``(DN - mean) / std`` of a float32 ``(N, bands, H, W)`` batch on ``device``;
    pixels that are 0 in every band (no data) become 0."""

    def __init__(self, norm: Normalization, device: torch.device) -> None:
        self.mean = torch.tensor(norm.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(norm.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` in place (callers pass a fresh float32 copy) and return it: no
        temporaries of the batch's size, which predict's prefetch thread would hold."""
        valid = (x != 0).any(dim=1, keepdim=True)
        return x.sub_(self.mean).div_(self.std).mul_(valid)
