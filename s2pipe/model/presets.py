"""The encoders ``train --encoder`` offers and the weight files it knows, as plain data.

No torch import: the CLI builds its choices from here. A preset says which bands a
weights file's first convolution takes, in which order, and which normalisation the
weights were trained with (``scale``: DN / scale; ``None``: s2pipe standardises each band
with the training split's statistics, as for the study's U-Net).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from s2pipe.sentinel2.facts import BAND_IDS, BANDS

#: "unet" is the study's U-Net (the default); the others are U-Nets on that backbone.
STUDY_UNET = "unet"
ENCODER_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "efficientnet_b0",
                                  "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")
ARCHITECTURES: tuple[str, ...] = (STUDY_UNET,) + ENCODER_NAMES


@dataclass(frozen=True)
class WeightsPreset:
    """How to read one kind of weights file."""

    name: str
    bands: tuple[str, ...]      # the first convolution's input channels, in order
    scale: float | None         # inputs = DN / scale; None: per-band training statistics
    about: str

    def describe_normalization(self) -> str:
        if self.scale is None:
            return "per-band mean/std of the training split"
        return f"DN / {self.scale:g}, as the weights were trained ({self.name})"


PRESETS: dict[str, WeightsPreset] = {p.name: p for p in (
    WeightsPreset("ssl4eo-s12", BAND_IDS, 10000.0,
                  "SSL4EO-S12 Sentinel-2 weights (TorchGeo ResNet18_Weights / ResNet50_Weights "
                  ".SENTINEL2_ALL_MOCO, _DINO ...): 13 L1C bands B01..B12 with B10, DN / 10000"),
    WeightsPreset("imagenet", ("B04", "B03", "B02"), None,
                  "ImageNet RGB weights (torchvision, timm): red, green, blue"),
    WeightsPreset("s2pipe", BANDS, None,
                  "s2pipe's 12 L2A bands in s2pipe's order, e.g. the encoder of an s2pipe model"),
)}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)

_BAND = re.compile(r"^B?0?(\d{1,2}|8A)$", re.IGNORECASE)


def band_name(text: str) -> str:
    """``b2``, ``B2``, ``02`` -> ``B02``; ``b8a`` -> ``B8A``; ValueError for anything else."""
    m = _BAND.match(text.strip())
    if not m or (m.group(1).isdigit() and not 1 <= int(m.group(1)) <= 12):
        raise ValueError(f"{text!r} is not a Sentinel-2 band (B01..B12, B8A)")
    g = m.group(1).upper()
    return "B8A" if g == "8A" else f"B{int(g):02d}"


def parse_bands(text: str) -> tuple[str, ...]:
    """A comma-separated band list, e.g. ``B04,B03,B02``; ValueError names a bad one."""
    bands = tuple(band_name(t) for t in text.split(",") if t.strip())
    if not bands or len(set(bands)) != len(bands):
        raise ValueError(f"{text!r}: give each band once, comma-separated (e.g. B04,B03,B02)")
    return bands
