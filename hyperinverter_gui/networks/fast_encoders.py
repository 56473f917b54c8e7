"""Inference-only forward passes of the IR-SE-50 encoders (E1, E2) with BatchNorm folded away.

The modules in :mod:`~hyperinverter_gui.networks.encoders` run the official computation layer by
layer: every residual unit reads its input through a BatchNorm pass, then conv, PReLU, conv, a
second BatchNorm pass, the SE gate and the shortcut add, each a separate sweep over the
activations. :class:`FastIRBackbone` computes the same function with fewer sweeps and, where it
pays on the CPU at hand, fewer multiplies:

* **BatchNorm folded at load.** The BN after a convolution becomes a per-output-channel scale
  and bias of that convolution. The BN *before* ``conv1`` (``BN(x) = a*x + b``, then zero padding)
  becomes a per-input-channel scale of the weight plus a bias that is constant inside the image
  and differs on the one-pixel border (the padded zeros are not shifted by ``b``); the border
  values are exact, computed once per layer from a 3x3 probe (:func:`_shift_pattern`).
* **Winograd F(4x4, 3x3)** (:mod:`~hyperinverter_gui.networks.winograd`) for the stride-1 3x3
  convolutions where :func:`~hyperinverter_gui.networks.winograd.pays_per_call` says so. The
  transformed weight is computed at each call and dropped (no kept copies, 4x the weight's size),
  and the BN scales ride on the transform's input and output scaling for free.
* **Fused epilogues**: the SE gate and the shortcut in one ``addcmul`` pass, activations in place,
  channels_last throughout (no layout round trips).

Folded copies are kept only of the small weights (64/128-channel layers, the 1x1 shortcuts):
about 2 MB per encoder. The large ones are read in place from the (memory-mapped) modules, so
``memory.release_pages`` keeps working on them. ResNet-34 backbones (other domains) keep the
modules' own forward.

Exactness: float32 rounding only (folding) plus Winograd's ~1e-5 relative per layer;
``tests/test_encoders_fast.py`` bounds both against the modules' forward.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hyperinverter_gui.networks import winograd
from hyperinverter_gui.networks.encoders import (
    Backbone,
    BottleneckIR,
    LayerWiseEncoder,
    WEncoder,
)

# Folded copies are kept of weights up to this many elements (128->256 3x3 = 294,912); larger
# ones are read in place and their BN applied as scales (Winograd) or one small pass.
_KEEP_FOLDED_MAX = 300_000

AfterPart = Callable[[nn.Module], None]


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` (float32, computed in float64)."""
    var = bn.running_var.detach().double()
    scale = bn.weight.detach().double() / torch.sqrt(var + bn.eps)
    shift = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    return scale.float().contiguous(), shift.float().contiguous()


def _shift_pattern(weight: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """[O, 3, 3]: what ``conv3x3(pad0(shift))`` adds at the top-left corner, top edge, ... interior.

    A 3x3 image of the constant ``shift`` with zero padding has exactly the nine position types
    of any larger image: corners, edges and (at [1, 1]) the interior.
    """
    probe = shift.double().reshape(1, -1, 1, 1).expand(1, shift.numel(), 3, 3)
    return F.conv2d(probe, weight.detach().double(), padding=1)[0].float()


@dataclass
class _PreBNConv:
    """``conv3x3(BN(x))``, stride 1, padding 1, no bias: the first convolution of an IR unit."""

    module: nn.Conv2d  # the raw weight, read in place (Winograd, or the BN-pass fallback)
    scale: torch.Tensor  # [I] BN scale
    shift: torch.Tensor  # [I] BN shift
    folded: torch.Tensor | None  # [O, I, 3, 3] weight * scale, channels_last (small layers)
    center: torch.Tensor  # [O] bias inside the image
    edges: torch.Tensor  # [O, 3, 3] pattern - center: the border corrections

    def __call__(self, x: torch.Tensor, use_winograd: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 2 or w < 2:
            return F.conv2d(x * self.scale.reshape(1, -1, 1, 1) + self.shift.reshape(1, -1, 1, 1),
                            self.module.weight, padding=1)
        if use_winograd:
            u = winograd.transform_weight(self.module.weight)
            y = winograd.conv3x3(x, u, in_scale=self.scale, bias=self.center)
        elif self.folded is not None:
            y = F.conv2d(x, self.folded, self.center, padding=1)
        else:
            return F.conv2d(x * self.scale.reshape(1, -1, 1, 1) + self.shift.reshape(1, -1, 1, 1),
                            self.module.weight, padding=1)
        e = self.edges
        # Border rows (corners included), then the border columns between them.
        y[:, :, 0, :] += _edge_row(e[:, 0], w)
        y[:, :, -1, :] += _edge_row(e[:, 2], w)
        y[:, :, 1:-1, 0] += e[:, 1, 0].reshape(1, -1, 1)
        y[:, :, 1:-1, -1] += e[:, 1, 2].reshape(1, -1, 1)
        return y


def _edge_row(row: torch.Tensor, width: int) -> torch.Tensor:
    """[O, 3] (left corner, edge, right corner) -> [O, width]."""
    out = row[:, 1:2].expand(-1, width).clone()
    out[:, 0] = row[:, 0]
    out[:, -1] = row[:, 2]
    return out


@dataclass
class _PostBNConv:
    """``BN(conv(x))``: a convolution followed by BatchNorm (no bias of its own)."""

    module: nn.Conv2d
    scale: torch.Tensor  # [O]
    shift: torch.Tensor  # [O]
    folded: torch.Tensor | None  # weight * scale[:, None, None, None] (small layers)

    def __call__(self, x: torch.Tensor, use_winograd: bool) -> torch.Tensor:
        m = self.module
        if use_winograd:
            u = winograd.transform_weight(m.weight)
            return winograd.conv3x3(x, u, out_scale=self.scale, bias=self.shift)
        if self.folded is not None:
            return F.conv2d(x, self.folded, self.shift, m.stride, m.padding)
        y = F.conv2d(x, m.weight, None, m.stride, m.padding)
        return torch.addcmul(self.shift.reshape(1, -1, 1, 1), y, self.scale.reshape(1, -1, 1, 1), out=y)


def _keep(weight: torch.Tensor) -> bool:
    return weight.numel() <= _KEEP_FOLDED_MAX


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _pre_bn_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> _PreBNConv:
    assert conv.stride == (1, 1) and conv.padding == (1, 1) and conv.bias is None and conv.kernel_size == (3, 3)
    scale, shift = _bn_affine(bn)
    pattern = _shift_pattern(conv.weight, shift)
    center = pattern[:, 1, 1].contiguous()
    w = conv.weight.detach().float()
    folded = _cl(w * scale.reshape(1, -1, 1, 1)) if _keep(w) else None
    return _PreBNConv(conv, scale, shift, folded, center, (pattern - center.reshape(-1, 1, 1)).contiguous())


def _post_bn_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> _PostBNConv:
    assert conv.bias is None
    scale, shift = _bn_affine(bn)
    w = conv.weight.detach().float()
    folded = _cl(w * scale.reshape(-1, 1, 1, 1)) if _keep(w) else None
    return _PostBNConv(conv, scale, shift, folded)


@dataclass
class _Unit:
    module: BottleneckIR
    conv1: _PreBNConv
    prelu: torch.Tensor  # [C]
    conv2: _PostBNConv
    stride: int
    se: tuple[torch.Tensor, torch.Tensor] | None  # fc1 [C/16, C], fc2 [C, C/16]
    shortcut: _PostBNConv | None


class FastIRBackbone:
    """The folded forward of one IR / IR-SE-50 :class:`Backbone` (weights read from it, never changed).

    ``wide_vectors`` (AVX-512) picks the Winograd rule; None reads PyTorch's CPU capability.
    """

    def __init__(self, backbone: Backbone, wide_vectors: bool | None = None):
        if backbone.kind not in ("ir", "ir_se"):
            raise ValueError(f"no folded forward for the {backbone.kind!r} backbone")
        self.backbone = backbone
        self.wide_vectors = wide_vectors
        self.winograd_enabled = True
        self.winograd_layers = 0  # convolutions the last run computed by Winograd (diagnostics, tests)
        seq = backbone.input_layer
        self.device, self.dtype = seq[0].weight.device, seq[0].weight.dtype
        with torch.no_grad():
            self.stem = _post_bn_conv(seq[0], seq[1])
            self.stem_prelu = seq[2].weight.detach().float().contiguous()
            self.units = [self._unit(u) for u in backbone.body]

    @staticmethod
    def _unit(u: BottleneckIR) -> _Unit:
        r = u.res_layer
        se = None
        if len(r) > 5:
            se = (r[5].fc1.weight.detach().flatten(1), r[5].fc2.weight.detach().flatten(1))
        shortcut = None if u.shortcut_layer is None else _post_bn_conv(u.shortcut_layer[0], u.shortcut_layer[1])
        return _Unit(u, _pre_bn_conv(r[0], r[1]), r[2].weight.detach().float().contiguous(),
                     _post_bn_conv(r[3], r[4]), u.stride, se, shortcut)

    def _wino(self, conv: nn.Conv2d, x: torch.Tensor) -> bool:
        if not self.winograd_enabled or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1):
            return False
        h, w = x.shape[-2:]
        use = winograd.pays_per_call(conv.in_channels, conv.out_channels, h, w, self.wide_vectors)
        self.winograd_layers += use
        return use

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(self.stem(x, False), self.stem_prelu)

    def unit_forward(self, u: _Unit, x: torch.Tensor) -> torch.Tensor:
        res = F.prelu(u.conv1(x, self._wino(u.conv1.module, x)), u.prelu)
        res = u.conv2(res, u.stride == 1 and self._wino(u.conv2.module, res))
        if u.shortcut is None:
            shortcut = x if u.stride == 1 else x[:, :, :: u.stride, :: u.stride]
        else:
            shortcut = u.shortcut(x, False)
        if u.se is None:
            return res.add_(shortcut)
        fc1, fc2 = u.se
        gate = torch.sigmoid(F.linear(F.relu(F.linear(res.mean(dim=(2, 3)), fc1)), fc2))
        return torch.addcmul(shortcut, res, gate.reshape(*gate.shape, 1, 1))

    def run(self, x: torch.Tensor, taps: tuple[int, ...] = (), after_part: AfterPart | None = None):
        """Stem and body; returns (final map, [maps after the units in ``taps``])."""
        self.winograd_layers = 0
        x = self.stem_forward(x)
        out = []
        for i, u in enumerate(self.units):
            x = self.unit_forward(u, x)
            if after_part is not None:
                after_part(u.module)
            if i in taps:
                out.append(x)
        return x, out


class FastWEncoder:
    """E1 (:class:`WEncoder`) with the folded backbone."""

    def __init__(self, encoder: WEncoder, wide_vectors: bool | None = None):
        self.encoder = encoder
        self.backbone = FastIRBackbone(encoder, wide_vectors)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, after_part: AfterPart | None = None) -> torch.Tensor:
        y, _ = self.backbone.run(x, after_part=after_part)
        return self.encoder.linear(y.mean(dim=(2, 3)))


class FastLayerWiseEncoder:
    """E2 (:class:`LayerWiseEncoder`) with the folded backbone and in-place style activations."""

    def __init__(self, encoder: LayerWiseEncoder, wide_vectors: bool | None = None):
        self.encoder = encoder
        self.backbone = FastIRBackbone(encoder, wide_vectors)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, after_part: AfterPart | None = None) -> torch.Tensor:
        e = self.encoder
        _, (c1, c2, c3) = self.backbone.run(x, taps=e.taps, after_part=after_part)
        p2 = e._upsample_add(c3, e.latlayer1(c2))
        p1 = e._upsample_add(p2, e.latlayer2(c1))
        out = []
        for j, style in enumerate(e.styles):
            y = c3 if j < e.coarse_ind else p2 if j < e.middle_ind else p1
            convs = style.convs
            for k in range(0, len(convs), 2):
                conv, act = convs[k], convs[k + 1]
                y = F.leaky_relu_(conv(y), act.negative_slope)
            out.append(y)
            if after_part is not None:
                after_part(style)
        return torch.stack(out, dim=1)


_CACHE: weakref.WeakKeyDictionary[nn.Module, object] = weakref.WeakKeyDictionary()


def fast_encoder(encoder: nn.Module) -> Callable[..., torch.Tensor] | None:
    """The folded forward of E1 or E2 (built once per module, then reused), or None if there is none.

    Call it as ``f(x, after_part=None)``; ``after_part(module)`` runs after each residual unit and
    each style block (``memory.release_pages`` hooks).
    """
    if not isinstance(encoder, (WEncoder, LayerWiseEncoder)) or encoder.kind not in ("ir", "ir_se"):
        return None
    fast = _CACHE.get(encoder)
    weight = encoder.input_layer[0].weight
    if fast is None or fast.backbone.device != weight.device or fast.backbone.dtype != weight.dtype:
        # First use, or the model moved (CPU <-> GPU) since the folded copies were made.
        cls = FastWEncoder if isinstance(encoder, WEncoder) else FastLayerWiseEncoder
        fast = _CACHE[encoder] = cls(encoder)
    return fast


__all__ = ["FastIRBackbone", "FastLayerWiseEncoder", "FastWEncoder", "fast_encoder"]
