"""Image encoders of HyperInverter: E1 (photo -> w) and E2 (photo -> per-layer features).

Parameter names match the official checkpoints (pSp-style IR-SE-50 backbone
for faces, a ResNet-34 backbone for other domains), so a ``state_dict``
slice of an official ``.pt`` loads with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hyperinverter_gui.networks import construction

# Units per stage of the IR-SE-50 backbone (InsightFace / pSp "get_blocks(50)").
IRSE50_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))
# Units per stage of ResNet-34 (BasicBlock).
RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


class EqualLinear(nn.Module):
    """Linear layer with the weight scaled by 1/sqrt(in) at run time (pSp/rosinality)."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(construction.randn((out_dim, in_dim), 1 / lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (``fc1``, ``fc2`` 1x1 convs without bias)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """IR(-SE) residual unit: BN-conv-PReLU-conv-BN(-SE) plus a (strided) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool):
        super().__init__()
        self.stride = stride
        if in_channels != depth:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        else:
            # Official code: MaxPool2d(kernel 1, stride) == plain subsampling; no parameters.
            self.shortcut_layer = None
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_layer is None:
            shortcut = x[:, :, :: self.stride, :: self.stride]
        else:
            shortcut = self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


class BasicBlock(nn.Module):
    """ResNet-34 basic block with torchvision's parameter names."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, depth, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(depth)
        self.conv2 = nn.Conv2d(depth, depth, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(depth)
        self.downsample = None
        if stride != 1 or in_channels != depth:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Backbone(nn.Module):
    """Stem + residual body; returns the final map and the three FPN taps.

    ``kind`` is "ir_se" / "ir" (IR-50 family, 256 -> 16 px) or "resnet34".
    Taps (after body units 6, 20, 23 for IR-50; 6, 12, 15 for ResNet-34) are
    [N,128,64,64], [N,256,32,32], [N,512,16,16] for a 256 px input.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        units: list[nn.Module] = []
        if kind in ("ir_se", "ir"):
            self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
            in_ch = 64
            for depth, n in IRSE50_STAGES:
                for i in range(n):
                    units.append(BottleneckIR(in_ch, depth, 2 if i == 0 else 1, se=kind == "ir_se"))
                    in_ch = depth
        elif kind == "resnet34":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.PReLU(64)
            in_ch = 64
            for s, (depth, n) in enumerate(RESNET34_STAGES):
                for i in range(n):
                    units.append(BasicBlock(in_ch, depth, 2 if (i == 0 and s > 0) else 1))
                    in_ch = depth
        else:
            raise ValueError(f"unknown backbone {kind!r}")
        self.body = nn.Sequential(*units)
        self.taps = (6, 20, 23) if kind != "resnet34" else (6, 12, 15)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "resnet34":
            return self.relu(self.bn1(self.conv1(x)))
        return self.input_layer(x)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        return taps[0], taps[1], taps[2]


def detect_backbone(sd: Mapping[str, torch.Tensor]) -> str:
    """Which backbone a (prefix-stripped) encoder state_dict was trained with."""
    if "input_layer.0.weight" in sd:
        n_units = len({k.split(".")[1] for k in sd if k.startswith("body.")})
        if n_units != sum(n for _, n in IRSE50_STAGES):
            raise ValueError(f"IR backbone with {n_units} units; only the 50-layer variant is supported")
        return "ir_se" if any(".res_layer.5.fc1." in k for k in sd) else "ir"
    if "conv1.weight" in sd and "bn1.running_mean" in sd:
        return "resnet34"
    raise ValueError("not an IR-SE-50 or ResNet-34 encoder (no input_layer.* or conv1.* weights)")


class WEncoder(Backbone):
    """E1: image [N,3,256,256] in [-1,1] -> w offset [N,512] (before adding w_avg)."""

    def __init__(self, kind: str = "ir_se"):
        super().__init__(kind)
        self.linear = EqualLinear(512, 512, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        x = x.mean(dim=(2, 3))
        return self.linear(x)


class StyleBlock(nn.Module):
    """Strided 3x3 convs + leaky ReLU down to 8x8 (``convs.0``, ``convs.2``, ...)."""

    def __init__(self, in_c: int, out_c: int, num_pools: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class LayerWiseEncoder(Backbone):
    """E2: image -> per-style feature maps [N, n_styles, 512, 8, 8] via an FPN.

    Styles 0-2 read the 16 px map, 3-6 the 32 px FPN level, the rest the 64 px level.
    """

    coarse_ind = 3
    middle_ind = 7

    def __init__(self, n_styles: int, kind: str = "ir_se"):
        super().__init__(kind)
        self.n_styles = n_styles
        pools = [1 if i < self.coarse_ind else 2 if i < self.middle_ind else 3 for i in range(n_styles)]
        self.styles = nn.ModuleList(StyleBlock(512, 512, p) for p in pools)
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.features(x)
        p2 = self._upsample_add(c3, self.latlayer1(c2))
        p1 = self._upsample_add(p2, self.latlayer2(c1))
        out = []
        for j, style in enumerate(self.styles):
            src = c3 if j < self.coarse_ind else p2 if j < self.middle_ind else p1
            out.append(style(src))
        return torch.stack(out, dim=1)
