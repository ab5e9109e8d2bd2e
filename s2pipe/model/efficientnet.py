"""EfficientNet-B0..B3 encoders whose state-dict keys are those of timm's ``efficientnet_b*``.

``conv_stem``/``bn1``, then ``blocks.S.B`` in seven stages: a depthwise-separable block
(``conv_dw``, ``bn1``, ``se``, ``conv_pw``, ``bn2``) and inverted residuals (``conv_pw``,
``bn1``, ``conv_dw``, ``bn2``, ``se.conv_reduce``/``se.conv_expand``, ``conv_pwl``,
``bn3``), SiLU activations, widths and depths scaled as timm scales them. The classifier
(``conv_head``, ``bn2``, ``classifier``) is not part of an encoder. Features for the U-Net
come from stages 0, 1, 2, 4 and 6 (strides 2, 4, 8, 16, 32), as timm's ``features_only``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: name -> (width multiplier, depth multiplier)
EFFICIENTNETS: dict[str, tuple[float, float]] = {
    "efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1),
    "efficientnet_b2": (1.1, 1.2), "efficientnet_b3": (1.2, 1.4),
}
# stage: (kind, repeats, kernel, stride, expansion, channels); squeeze-excite ratio 0.25
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
          ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
          ("ir", 1, 3, 1, 6, 320))
FEATURE_STAGES = (0, 1, 2, 4, 6)
SE_RATIO = 0.25


def round_channels(channels: float, multiplier: float) -> int:
    """Width scaling to a multiple of 8, never below 90% of the scaled width."""
    v = channels * multiplier
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def _bn_act(channels: int, act: bool = True) -> tuple[nn.BatchNorm2d, nn.Module]:
    return nn.BatchNorm2d(channels), (nn.SiLU(inplace=True) if act else nn.Identity())


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False)
        self.bn1, self.act1 = _bn_act(cin)
        self.se = SqueezeExcite(cin, round(cin * SE_RATIO))
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(self.act1(self.bn1(self.conv_dw(x))))))
        return y + x if self.skip else y


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = round_channels(cin * expansion, 1.0)
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1, self.act1 = _bn_act(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2, self.act2 = _bn_act(mid)
        self.se = SqueezeExcite(mid, round(mid * SE_RATIO / expansion))
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.se(self.act2(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.skip else y


class EfficientNetEncoder(nn.Module):
    """An EfficientNet without its classifier head, for ``in_channels`` bands."""

    first_conv = "conv_stem"

    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        width, depth = EFFICIENTNETS[name]
        stem = round_channels(32, width)
        self.conv_stem = nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False)
        self.bn1, self.act1 = _bn_act(stem)
        prev, stages, out = stem, [], []
        for i, (kind, repeats, k, s, e, c) in enumerate(STAGES):
            cout = round_channels(c, width)
            blocks: list[nn.Module] = []
            for j in range(math.ceil(repeats * depth)):
                stride = s if j == 0 else 1
                blocks.append(DepthwiseSeparable(prev, cout, k, stride) if kind == "ds"
                              else InvertedResidual(prev, cout, k, stride, e))
                prev = cout
            stages.append(nn.Sequential(*blocks))
            if i in FEATURE_STAGES:
                out.append(cout)
        self.blocks = nn.Sequential(*stages)
        self.out_channels = tuple(out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        features = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in FEATURE_STAGES:
                features.append(x)
        return features
