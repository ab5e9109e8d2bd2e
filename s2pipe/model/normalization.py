"""The one input normalisation of the U-Net, used by training and prediction alike.

Inputs are DN = 10000 * reflectance (uint16, 0 = no data in every band). Each band is
standardised with the training split's mean and standard deviation, and no-data pixels
enter the model as 0, i.e. as the band means. The statistics travel in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

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
