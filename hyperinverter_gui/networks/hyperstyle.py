"""HyperStyle (Alaluf et al., CVPR 2022): a hypernetwork that refines StyleGAN2 weights.

Inference, as in the paper and the authors' released checkpoints:

1. A W encoder (pSp-style IR-SE-50, ``encoder.*`` in ``faces_w_encoder.pt``)
   maps the 256 px photo ``x`` to one 512-vector; adding ``latent_avg`` (per
   w row) gives the code ``w`` used by every w slot. It is computed once.
2. ``y_0 = G(w; theta)``.
3. Step ``t = 1..T``: the hypernetwork reads ``[x, pool256(y_{t-1})]`` (6
   channels, the previous reconstruction average-pooled to 256 px and not
   clamped) and predicts multiplicative offsets ``Delta_t`` for the tuned
   layers; they accumulate, ``D_t = Delta_1 + ... + Delta_t``, and
   ``y_t = G(w; theta * (1 + D_t))``.

The hypernetwork is a ResNet-34 body (torchvision block names, 6-channel
7x7 stem with PReLU, no max-pool; 256 px -> 512 x 16 x 16) followed by one
refinement block per tuned layer:

* the 3x3 convolutions whose upstream index is in ``SHARED_LAYER_INDICES``
  (the 512 -> 512 layers of a config-f generator) use a *shared* block: a
  conv stack to a 512-vector, an equalised linear layer, then one weight
  generator shared by all of them that emits a full ``[out, in, 3, 3]``
  kernel of offsets;
* other convolutions get one offset per (out, in) channel pair (conv stack,
  global average pool, 1x1 conv), repeated over the kernel taps; the
  "separable" variant emits full kernels from two low-rank factors instead;
* toRGB layers get ``[3, in, 1, 1]`` offsets.

Upstream numbers the generator layers in rosinality's order: 0 = the 4x4
conv, 1 = the 4x4 toRGB, then for each later block (8 px, 16 px, ...) its
up-sampling conv, its second conv and its toRGB. ``synthesis_name`` maps
that index to our parameter names (``b8.conv0.weight``, ...).

Since ``theta * (1 + D) == theta + theta * D``, the accumulated offsets are
handed to our generator as additive residuals ``theta * D``; everything
that works on HyperInverter's residuals (edits, interpolation, export)
works unchanged on HyperStyle results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyperinverter_gui.networks import construction
from hyperinverter_gui.networks.encoders import RESNET34_STAGES, BasicBlock, EqualLinear, WEncoder
from hyperinverter_gui.networks.stylegan2 import Generator

# Upstream indices of the 3x3 convolutions that use the shared weight generator.
SHARED_LAYER_INDICES = frozenset({0, 2, 3, 5, 6, 8, 9, 11, 12})
# Default of the official training options (all convolutions, no toRGB).
DEFAULT_LAYERS_TO_TUNE = (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
HYPERNET_TYPES = ("SharedWeightsHyperNetResNet", "SharedWeightsHyperNetResNetSeparable")
INPUT_RESOLUTION = 256  # photo and reconstruction size the networks read
FEATURE_RESOLUTION = 16  # spatial size of the ResNet-34 features for a 256 px input
MAX_ITERATIONS = 5

BLOCK_KINDS = ("shared", "per_channel", "torgb", "separable")


# --------------------------------------------------------------------------
# Layer numbering


def num_hypernet_outputs(img_resolution: int) -> int:
    """Number of generator layers upstream numbers (26 for 1024 px, 23 for 512, 20 for 256)."""
    return 3 * int(math.log2(img_resolution)) - 4


def is_torgb_index(index: int) -> bool:
    return index == 1 or (index >= 2 and (index - 2) % 3 == 2)


def synthesis_name(index: int) -> str:
    """Upstream layer index -> our synthesis parameter name."""
    if index < 0:
        raise ValueError(f"negative layer index {index}")
    if index == 0:
        return "b4.conv1.weight"
    if index == 1:
        return "b4.torgb.weight"
    block, slot = divmod(index - 2, 3)
    return f"b{8 * 2 ** block}.{('conv0', 'conv1', 'torgb')[slot]}.weight"


def layer_index(name: str) -> int:
    """Inverse of :func:`synthesis_name`."""
    head, _, rest = name.partition(".")
    res = int(head[1:]) if head.startswith("b") and head[1:].isdigit() else 0
    if res == 4 and rest in ("conv1.weight", "torgb.weight"):
        return 0 if rest == "conv1.weight" else 1
    slots = {"conv0.weight": 0, "conv1.weight": 1, "torgb.weight": 2}
    if res >= 8 and res & (res - 1) == 0 and rest in slots:
        return 2 + 3 * (int(math.log2(res)) - 3) + slots[rest]
    raise ValueError(f"{name!r} is not a layer HyperStyle can tune")


# --------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TunedLayer:
    """One refinement block: which generator weight it refines and how it is built."""

    index: int  # upstream layer index
    name: str  # our synthesis parameter name
    shape: tuple[int, int, int, int]  # (out, in, k, k) of the generator weight
    kind: str  # one of BLOCK_KINDS
    conv_channels: tuple[int, ...]  # widths through the conv stack: input, then each conv's output


@dataclass
class HyperStyleConfig:
    img_resolution: int  # generator output size
    layers: list[TunedLayer]  # in upstream index order
    shared_z_dim: int = 512  # shared weight generator: code size
    shared_in: int = 512  # ... input channels of the kernels it makes
    shared_out: int = 512  # ... output channels
    shared_kernel: int = 3  # ... kernel size
    input_nc: int = 6  # photo + reconstruction
    w_backbone: str = "ir_se"  # W encoder backbone ("ir_se" or "ir")
    hypernet_type: str = HYPERNET_TYPES[0]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def layers_to_tune(self) -> list[int]:
        return [t.index for t in self.layers]


# --------------------------------------------------------------------------
# Hypernetwork pieces


def _conv_stack(channels: tuple[int, ...], first_stride: int) -> nn.Sequential:
    """3x3 convs (padding 1) each followed by LeakyReLU(0.01): keys ``0, 2, 4, ...``."""
    layers: list[nn.Module] = []
    for j in range(len(channels) - 1):
        layers += [nn.Conv2d(channels[j], channels[j + 1], 3, first_stride if j == 0 else 2, 1), nn.LeakyReLU()]
    return nn.Sequential(*layers)


def stack_output_size(n_convs: int, first_stride: int, size: int = FEATURE_RESOLUTION) -> int:
    for j in range(n_convs):
        stride = first_stride if j == 0 else 2
        size = (size - 1) // stride + 1
    return size


class SharedWeightGenerator(nn.Module):
    """Code [N, z] -> kernel offsets [N, out, in, k, k] through a per-input-channel embedding.

    ``h = (code @ w2 + b2)`` viewed as ``[N, in, z]``, then ``h @ w1 + b1``
    ``[N, in, out*k*k]``; the result's memory is read as ``[N, out, in, k, k]``
    (a reinterpretation, not a transpose, as upstream does).
    """

    def __init__(self, z_dim: int, in_size: int, out_size: int, kernel: int = 3):
        super().__init__()
        self.z_dim, self.in_size, self.out_size, self.kernel = z_dim, in_size, out_size, kernel
        self.w1 = nn.Parameter(construction.zeros((z_dim, out_size * kernel * kernel)))
        self.b1 = nn.Parameter(construction.zeros((out_size * kernel * kernel,)))
        self.w2 = nn.Parameter(construction.zeros((z_dim, in_size * z_dim)))
        self.b2 = nn.Parameter(construction.zeros((in_size * z_dim,)))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        n = code.shape[0]
        h = (torch.matmul(code, self.w2) + self.b2).reshape(n, self.in_size, self.z_dim)
        k = torch.matmul(h, self.w1) + self.b1
        return k.reshape(n, self.out_size, self.in_size, self.kernel, self.kernel)


class SharedRefinementBlock(nn.Module):
    """Features -> 512-code (stride-1 conv, then stride-2 convs down to 1x1, equalised linear)."""

    def __init__(self, layer: TunedLayer):
        super().__init__()
        self.layer = layer
        self.convs = _conv_stack(layer.conv_channels, first_stride=1)
        c = layer.conv_channels[-1]
        self.linear = EqualLinear(c, c, lr_mul=1)

    def forward(self, features: torch.Tensor, shared: SharedWeightGenerator) -> torch.Tensor:
        code = self.convs(features)
        code = self.linear(code.reshape(code.shape[0], -1))
        return shared(code)


class ChannelRefinementBlock(nn.Module):
    """One offset per (out, in) pair: conv stack, [global average pool], 1x1 conv.

    Returns ``[N, out, in, 1, 1]``, which broadcasts over a kxk kernel exactly
    like upstream's repeat. toRGB blocks (k = 1) have no pool: their conv stack
    already ends at 1x1.
    """

    def __init__(self, layer: TunedLayer):
        super().__init__()
        self.layer = layer
        o, i = layer.shape[0], layer.shape[1]
        self.convs = _conv_stack(layer.conv_channels, first_stride=2)
        head = nn.Conv2d(layer.conv_channels[-1], o * i, 1)
        self.output = nn.Sequential(head) if layer.kind == "torgb" else nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), head)

    def forward(self, features: torch.Tensor, shared: SharedWeightGenerator | None = None) -> torch.Tensor:
        y = self.output(self.convs(features))
        o, i = self.layer.shape[0], self.layer.shape[1]
        return y.reshape(-1, o, i, 1, 1)


class SeparableKernel(nn.Module):
    """Full kxk kernel offsets from a rank-1 product per tap, mixed along in and out channels."""

    def __init__(self, features: int, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.features, self.c_in, self.c_out, self.kernel = features, c_in, c_out, kernel
        self.make_kernel_in = nn.Linear(features, kernel * kernel * c_in)
        self.make_kernel_out = nn.Linear(features, kernel * kernel * c_out)
        self.kernel_linear_in = nn.Linear(c_in, c_in)
        self.kernel_linear_out = nn.Linear(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.reshape(-1, self.features)
        k = self.kernel
        k_in = self.make_kernel_in(f).reshape(-1, k, k, 1, self.c_in)
        k_out = self.make_kernel_out(f).reshape(-1, k, k, self.c_out, 1)
        kern = torch.matmul(k_out, k_in)  # [N, k, k, out, in]
        kern = self.kernel_linear_in(kern).transpose(3, 4)  # mix "in", then [N, k, k, in, out]
        kern = self.kernel_linear_out(kern)  # mix "out"
        return kern.permute(0, 4, 3, 1, 2)  # [N, out, in, k, k]


class SeparableRefinementBlock(nn.Module):
    def __init__(self, layer: TunedLayer):
        super().__init__()
        self.layer = layer
        o, i, k, _ = layer.shape
        self.convs = _conv_stack(layer.conv_channels, first_stride=2)
        self.output = nn.Sequential(SeparableKernel(layer.conv_channels[-1], i, o, k))

    def forward(self, features: torch.Tensor, shared: SharedWeightGenerator | None = None) -> torch.Tensor:
        return self.output(self.convs(features))


_BLOCKS: dict[str, Callable[[TunedLayer], nn.Module]] = {
    "shared": SharedRefinementBlock,
    "per_channel": ChannelRefinementBlock,
    "torgb": ChannelRefinementBlock,
    "separable": SeparableRefinementBlock,
}


class HyperStyleHypernet(nn.Module):
    """[x, y] (6 x 256 x 256) -> {layer index: offsets broadcastable to [N, out, in, k, k]}.

    State-dict keys match upstream's ``hypernet.*`` minus the per-block copies
    of the shared generator (``refinement_blocks.<i>.hypernet.*``), which
    upstream stores once per shared block; it is kept once here.
    """

    def __init__(self, cfg: HyperStyleConfig):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv2d(cfg.input_nc, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.PReLU(64)
        units: list[nn.Module] = []
        in_ch = 64
        for s, (depth, n) in enumerate(RESNET34_STAGES):
            for u in range(n):
                units.append(BasicBlock(in_ch, depth, 2 if (u == 0 and s > 0) else 1))
                in_ch = depth
        self.body = nn.Sequential(*units)
        self.shared_weight_hypernet = SharedWeightGenerator(
            cfg.shared_z_dim, cfg.shared_in, cfg.shared_out, cfg.shared_kernel
        )
        self.refinement_blocks = nn.ModuleDict({str(t.index): _BLOCKS[t.kind](t) for t in cfg.layers})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats = self.features(x)
        return {
            int(i): block(feats, self.shared_weight_hypernet) for i, block in self.refinement_blocks.items()
        }


# --------------------------------------------------------------------------
# The whole model


def pool_to_input(y: torch.Tensor) -> torch.Tensor:
    """Average-pool (or, below 256 px, replicate) an image to 256 x 256, like upstream's face_pool."""
    return F.adaptive_avg_pool2d(y, (INPUT_RESOLUTION, INPUT_RESOLUTION))


@dataclass
class HyperStyleOutput:
    ws: torch.Tensor  # [N, num_ws, w_dim]
    initial: torch.Tensor  # [N, 3, R, R] G(w; theta)
    images: list[torch.Tensor]  # [N, 3, R, R] after each refinement step
    offsets: dict[str, torch.Tensor]  # accumulated D per parameter name, broadcastable to [N, *shape]
    deltas: dict[str, torch.Tensor]  # theta * D, [N, *shape]


class HyperStyle(nn.Module):
    """W encoder + hypernetwork + StyleGAN2 generator (our parameter names)."""

    def __init__(self, generator: Generator, cfg: HyperStyleConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = generator
        self.w_encoder = WEncoder(cfg.w_backbone)
        self.hypernet = HyperStyleHypernet(cfg)
        self.register_buffer("latent_avg", torch.zeros(generator.num_ws, generator.w_dim))

    @property
    def img_resolution(self) -> int:
        return self.generator.img_resolution

    def encode_w(self, x256: torch.Tensor) -> torch.Tensor:
        """Initial code: W encoder output plus latent_avg, [N, num_ws, w_dim]."""
        w = self.w_encoder(x256)
        return w.unsqueeze(1) + self.latent_avg.unsqueeze(0)

    def additive_deltas(self, offsets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """theta * D for each tuned weight, [N, *shape]."""
        params = dict(self.generator.synthesis.named_parameters())
        return {name: params[name].unsqueeze(0) * d for name, d in offsets.items()}

    def forward(
        self,
        x256: torch.Tensor,
        iterations: int = MAX_ITERATIONS,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> HyperStyleOutput:
        """Invert photos already at 256 px ([N, 3, 256, 256] in [-1, 1])."""
        synthesis = self.generator.synthesis
        ws = self.encode_w(x256)
        initial = synthesis(ws)
        y = initial
        offsets: dict[str, torch.Tensor] = {}
        deltas: dict[str, torch.Tensor] = {}
        images = []
        names = {t.index: t.name for t in self.cfg.layers}
        for step in range(1, iterations + 1):
            step_offsets = self.hypernet(torch.cat([x256, pool_to_input(y)], dim=1))
            for i, d in step_offsets.items():
                name = names[i]
                offsets[name] = d if name not in offsets else offsets[name] + d
            deltas = self.additive_deltas(offsets)
            y = synthesis(ws, deltas)
            images.append(y)
            if on_step is not None:
                on_step(step, y)
        return HyperStyleOutput(ws, initial, images, offsets, deltas)
