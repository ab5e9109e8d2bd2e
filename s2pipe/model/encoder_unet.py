"""U-Nets on a standard encoder (ResNet-18/34/50, EfficientNet-B0..B3) for s2pipe's bands.

The decoder is the usual one of segmentation U-Nets on pretrained backbones: from the
stride-32 features up, five blocks of [2x nearest upsampling, concatenation with the
encoder's features of that stride (none at stride 1), two Conv3x3-BN-ReLU] with 256,
128, 64, 32 and 16 channels, then a 3x3 convolution to one logit per class. Output channel
``k`` is class value ``k + 1``, as for the study's U-Net. ``encoder`` holds the backbone in
its torchvision/timm key layout, so pretrained weights load into it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from s2pipe.model.efficientnet import EFFICIENTNETS, EfficientNetEncoder
from s2pipe.model.resnet import RESNETS, ResNetEncoder

if TYPE_CHECKING:
    from s2pipe.model.unet import Arch

ARCH_NAME = "encoder-unet"
STRIDE = 32                    # five halvings: H and W must be multiples of this
DECODER_CHANNELS = (256, 128, 64, 32, 16)
#: the encoders ``train --encoder`` offers
ENCODERS: tuple[str, ...] = tuple(RESNETS) + tuple(EFFICIENTNETS)

Encoder = ResNetEncoder | EfficientNetEncoder


def build_encoder(name: str, in_channels: int) -> Encoder:
    if name in RESNETS:
        return ResNetEncoder(name, in_channels)
    if name in EFFICIENTNETS:
        return EfficientNetEncoder(name, in_channels)
    raise ValueError(f"unknown encoder {name!r}; use one of {', '.join(ENCODERS)}")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + skip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class EncoderUNet(nn.Module):
    """U-Net for (N, in_channels, H, W) inputs with H, W multiples of 32; (N, classes, H, W) logits."""

    def __init__(self, encoder: str, in_channels: int = 12, num_classes: int = 8) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError("in_channels and num_classes must be positive")
        self.encoder_name, self.in_channels, self.num_classes = encoder, in_channels, num_classes
        self.encoder = build_encoder(encoder, in_channels)
        skips = list(reversed(self.encoder.out_channels[:-1])) + [0]
        prev = self.encoder.out_channels[-1]
        blocks = []
        for skip, cout in zip(skips, DECODER_CHANNELS):
            blocks.append(DecoderBlock(prev, skip, cout))
            prev = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(prev, num_classes, 3, padding=1)
        for m in [*self.decoder.modules(), self.head]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def arch(self) -> Arch:
        from s2pipe.model.unet import Arch

        return Arch(ARCH_NAME, self.in_channels, self.num_classes, DECODER_CHANNELS[-1], self.encoder_name)

    def encoder_modules(self) -> list[nn.Module]:
        """The modules that ``--freeze-encoder`` freezes and ``--encoder-lr`` applies to."""
        return [self.encoder]

    def head_keys(self) -> tuple[str, ...]:
        """State-dict keys of the class-logit layer (re-initialised for another legend)."""
        return ("head.weight", "head.bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"the U-Net expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"the {self.encoder_name} U-Net needs height and width that are "
                             f"multiples of {STRIDE}, got {h} x {w}")
        features = self.encoder(x)
        skips: list[torch.Tensor | None] = list(reversed(features[:-1])) + [None]
        y = features[-1]
        for block, skip in zip(self.decoder, skips):
            y = block(y, skip)
        return self.head(y)
