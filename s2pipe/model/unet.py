"""The U-Net of the study, in PyTorch.

Encoder: five blocks of two [Conv3x3 -> BatchNorm -> ReLU] with filters f, 2f, 4f, 8f,
16f (f = 32 by default), separated by 2x2 max-pooling. Decoder: 3x3 stride-2 transposed
convolutions, concatenation with the encoder skip, two Conv-BN-ReLU. Head: Conv3x3 +
ReLU, then a 1x1 convolution to one logit per class. Output channel ``k`` is class
value ``k + 1`` (label 0, no data, has no channel). He-normal initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

DEPTH = 4                 # number of poolings
STRIDE = 2 ** DEPTH       # H and W must be multiples of this


@dataclass(frozen=True)
class Arch:
    """The network's architecture parameters, as stored in checkpoints."""

    name: str
    in_channels: int
    num_classes: int
    filters: int
    encoder: str = ""  # "": the study's U-Net; else the backbone of an encoder U-Net

    @property
    def stride(self) -> int:
        """Tile and window sizes must be multiples of this."""
        from s2pipe.model import encoder_unet

        return encoder_unet.STRIDE if self.encoder else STRIDE

    def build(self) -> nn.Module:
        """A freshly initialised network of this architecture."""
        if self.encoder:
            from s2pipe.model.encoder_unet import EncoderUNet

            return EncoderUNet(self.encoder, in_channels=self.in_channels, num_classes=self.num_classes)
        return UNet(in_channels=self.in_channels, num_classes=self.num_classes, filters=self.filters)


class ConvBlock(nn.Sequential):
    """Two [Conv3x3 -> BatchNorm -> ReLU]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """3x3 stride-2 transposed conv, concatenation with the skip, ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                     output_padding=1)
        self.conv = ConvBlock(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net for (N, in_channels, H, W) inputs with H, W multiples of 16.

    Returns (N, num_classes, H, W) logits; channel ``k`` is class value ``k + 1``.
    """

    def __init__(self, in_channels: int = 12, num_classes: int = 8, filters: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or filters < 1:
            raise ValueError("in_channels, num_classes and filters must be positive")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.filters = filters
        widths = [filters * 2 ** i for i in range(DEPTH + 1)]
        self.down = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.down.append(ConvBlock(prev, w))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i]) for i in reversed(range(DEPTH)))
        self.head = nn.Sequential(nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(filters, num_classes, 1))
        self.reset_parameters()

    @property
    def arch(self) -> Arch:
        """Architecture parameters, as stored in checkpoints."""
        return Arch("unet", self.in_channels, self.num_classes, self.filters)

    def encoder_modules(self) -> list[nn.Module]:
        """The contracting path: what ``--freeze-encoder`` freezes, ``--encoder-lr`` applies to."""
        return [self.down]

    def head_keys(self) -> tuple[str, ...]:
        """State-dict keys of the class-logit layer (re-initialised for another legend)."""
        return ("head.2.weight", "head.2.bias")

    def reset_parameters(self) -> None:
        """He-normal (fan-in, ReLU gain) weights, zero biases, unit BatchNorm."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"UNet input height and width must be multiples of {STRIDE}, "
                             f"got {h} x {w}; pad or crop the input (e.g. to "
                             f"{-(-h // STRIDE) * STRIDE} x {-(-w // STRIDE) * STRIDE})")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < DEPTH:
                skips.append(x)
                x = self.pool(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.head(x)
