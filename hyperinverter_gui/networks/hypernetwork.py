"""HyperInverter's hypernetwork: E2 features -> residual weights for generator layers."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from hyperinverter_gui.networks import construction


def feature_index(layer: str) -> int:
    """Which E2 feature map the official hypernetwork feeds to a layer's regressor.

    This is *not* the index of the w the synthesis layer consumes: the official
    table gives b4.conv1 -> 0, b4.torgb -> 1 and, for a block of resolution
    2**k >= 8, conv0 -> 2k-4, conv1 -> 2k-3, torgb -> 2k-3 (affine weights
    share their layer's index).
    """
    block, conv = layer.split(".")[:2]
    k = int(math.log2(int(block[1:])))
    if k == 2:
        return {"conv1": 0, "torgb": 1}[conv]
    return {"conv0": 2 * k - 4, "conv1": 2 * k - 3, "torgb": 2 * k - 3}[conv]


@dataclass(frozen=True)
class TargetLayer:
    """A generator weight the hypernetwork predicts a residual for."""

    name: str  # Synthesis-relative parameter name, e.g. "b8.conv0.weight".
    shape: tuple[int, ...]  # Parameter shape: [O, I, k, k] or [O, I] (affine).
    feature_index: int  # E2 feature map it reads.

    @property
    def out_in_kernel(self) -> tuple[int, int, int]:
        if len(self.shape) == 4:
            return self.shape[0], self.shape[1], self.shape[2]
        return self.shape[0], self.shape[1], 1


class WeightRegressor(nn.Module):
    """Fuses two 512x8x8 feature maps and regresses one layer's weight residual.

    fusion (1x1 conv + instance norm + ReLU) -> 4 convs to a D-vector ->
    two learned matrices: [D] -> [I, D] -> [I, O*k*k].
    """

    def __init__(
        self,
        hidden_dim: int,  # D: width of the bottleneck vector.
        out_channels: int,  # O of the predicted weight.
        in_channels: int,  # I of the predicted weight.
        kernel_size: int,  # k of the predicted weight (1 for toRGB / affine).
        input_dim: int = 512,  # Channels of each E2 feature map.
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.out_channels, self.in_channels, self.kernel_size = out_channels, in_channels, kernel_size
        self.fusion = nn.Sequential(
            nn.Conv2d(2 * input_dim, input_dim, 1),
            nn.InstanceNorm2d(input_dim),
            nn.ReLU(),
        )
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(input_dim, 64, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, hidden_dim, 4, 2, 1),
            nn.ReLU(),
        )
        self.w1 = nn.Parameter(construction.zeros((hidden_dim, in_channels * hidden_dim)))
        self.b1 = nn.Parameter(construction.zeros((in_channels * hidden_dim,)))
        self.w2 = nn.Parameter(construction.zeros((hidden_dim, out_channels * kernel_size * kernel_size)))
        self.b2 = nn.Parameter(construction.zeros((out_channels * kernel_size * kernel_size,)))

    def forward(self, image_features: torch.Tensor, photo_features: torch.Tensor) -> torch.Tensor:
        """[N,512,8,8] x2 -> residual [N, O, I, k, k]."""
        n = image_features.shape[0]
        h = self.fusion(torch.cat([image_features, photo_features], dim=1))
        h = self.feature_extractor(h).reshape(n, -1)
        assert h.shape[1] == self.hidden_dim, "feature extractor must reduce 8x8 maps to 1x1"
        h = (h @ self.w1 + self.b1).reshape(n, self.in_channels, self.hidden_dim)
        h = h @ self.w2 + self.b2  # [N, I, O*k*k]
        # The official code ends with .view(N, O, I, k, k) on this contiguous
        # [N, I, O*k*k] tensor: a reinterpretation of memory, not a transpose.
        # Trained checkpoints depend on this layout, so keep it.
        k = self.kernel_size
        return h.reshape(n, self.out_channels, self.in_channels, k, k)


class Hypernetwork(nn.Module):
    """One ``WeightRegressor`` per target layer, in ``weight_regressors.<b8_conv0_weight>``."""

    def __init__(self, targets: list[TargetLayer], hidden_dim: int):
        super().__init__()
        self.targets = list(targets)
        self.hidden_dim = hidden_dim
        regressors = OrderedDict()
        for t in self.targets:
            o, i, k = t.out_in_kernel
            regressors[t.name.replace(".", "_")] = WeightRegressor(hidden_dim, o, i, k)
        self.weight_regressors = nn.ModuleDict(regressors)

    def forward(self, image_features: torch.Tensor, photo_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """E2 features of the Phase-I image and of the photo [N, S, 512, 8, 8] -> {name: [N, *shape]}."""
        n = image_features.shape[0]
        out: dict[str, torch.Tensor] = {}
        for t in self.targets:
            reg = self.weight_regressors[t.name.replace(".", "_")]
            kernel = reg(image_features[:, t.feature_index], photo_features[:, t.feature_index])
            out[t.name] = kernel.reshape(n, *t.shape)
        return out

