"""Fast synthesis for editing one inverted image (the GUI's slider hot path).

``generator.synthesis(w[None], deltas)`` rebuilds theta + delta_theta, the
modulated weights and all their bookkeeping on every frame, and runs a chain of
out-of-place element-wise passes over megapixel activations. For edits of one
image only w changes, so :class:`EditRenderer` prepares once per image:

* theta + delta_theta merged into per-image weights (``weight`` and
  ``affine.weight`` deltas, the ones the synthesis network applies);
* per-(out, in) squared weight norms, so demodulation is
  ``rsqrt(s^2 @ ||W||^2 + eps)``: a [1, I] x [I, O] product per layer;
* the noise maps (``noise_const * noise_strength``), the toRGB gain folded into
  the toRGB affine, the leaky-ReLU gain sqrt(2) folded into the next layer's
  modulation (when there is no ``conv_clamp``);
* channels_last tensors and, as a setting, bfloat16 weights and activations.

A frame is then plain convolutions (one image: styles and demodulation folded
into the [O, I, k, k] weight, a few million multiplies; several images at
once: modulated activations, ``x * s -> conv -> * d``), with bias, noise and
leaky ReLU applied in place. The up-sampling FIR after the stride-2 transposed
convolution uses its conv2d padding (no separate pad pass).

The activations entering every layer can be cached: when a new w equals the
previous one in its first rows (GANSpace edits move a slice of late layers),
the frame restarts from the deepest cached state whose inputs are unchanged.

Exactness: in float32 the image matches ``generator.synthesis(w[None], deltas)``
to float rounding (tests bound it at 1e-3 max abs on images in [-1, 1]);
bfloat16 is a setting, see ``benchmarks/bench_speed.py`` for its PSNR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hyperinverter_gui.networks import ops, winograd
from hyperinverter_gui.networks.stylegan2 import Generator, SynthesisLayer, SynthesisNetwork, ToRGBLayer

PRECISIONS = ("float32", "bfloat16")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
_DEMOD_EPS = 1e-8


def recommended_precision(device: torch.device | str = "cpu") -> str:
    """"bfloat16" where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else "float32".

    Without native support oneDNN emulates bfloat16, which is slower than float32. Use it for
    interactive frames only (PSNR >= 40 dB against float32 on random-weight FFHQ models, see
    benchmarks/bench_speed.py); exports and saved results should render in float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if device.type != "cpu":
        return "float32"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"
    except OSError:
        pass
    return "float32"


@dataclass(frozen=True)
class PrecisionPlan:
    """Which precision each kind of interactive work runs in (the editor's Precision setting)."""

    inversion: str  # E1, E2, hypernetwork, both syntheses
    frames: str  # the full-resolution frame after a slider is released (what the user judges)
    previews: str  # the lower-resolution frames while a slider is dragged


def precision_plan(setting: str, device: torch.device | str = "cpu") -> PrecisionPlan:
    """The editor's Precision setting ("auto", "float32" or "bfloat16") as a :class:`PrecisionPlan`.

    *auto* keeps everything a user keeps or judges exact (inversion, released frames; exports
    are always float32) and uses bfloat16 only for the transient previews while dragging, and
    only where the hardware runs it natively (see :func:`recommended_precision`). There its PSNR
    against float32 is well above the 40 dB floor (benchmarks/bench_speed.py), while full frames
    at 1024 px sit closer to it. "bfloat16" runs inversion and all frames in bf16 (for machines
    where float32 is too slow); "float32" runs everything exactly.
    """
    setting = str(setting).lower()
    if setting == "auto":
        return PrecisionPlan("float32", "float32", recommended_precision(device))
    p = "bfloat16" if resolve_precision(setting) == torch.bfloat16 else "float32"
    return PrecisionPlan(p, p, p)


def resolve_precision(precision: str | torch.dtype) -> torch.dtype:
    if isinstance(precision, torch.dtype):
        if precision not in (torch.float32, torch.bfloat16):
            raise ValueError(f"unsupported precision {precision}; use float32 or bfloat16")
        return precision
    try:
        return _DTYPES[str(precision).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; use 'float32' or 'bfloat16'") from None


def _unbatch(deltas: Mapping[str, torch.Tensor] | None, shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Accept ``WeightDeltas`` ({name: [*shape]}) or batched-by-one ({name: [1, *shape]})."""
    out: dict[str, torch.Tensor] = {}
    for key, value in (deltas or {}).items():
        if key not in shapes:
            raise KeyError(f"weight delta for unknown synthesis parameter {key!r}")
        shape = tuple(shapes[key])
        if tuple(value.shape) == shape:
            out[key] = value
        elif tuple(value.shape) == (1, *shape):
            out[key] = value[0]
        else:
            dims = ", ".join(map(str, shape))
            raise ValueError(f"delta {key!r} must be [{dims}] (one image), got {list(value.shape)}")
    return out


_BINOMIAL4 = torch.tensor([1.0, 3.0, 3.0, 1.0])


def _is_binomial4(f: torch.Tensor) -> bool:
    """The [1,3,3,1] x [1,3,3,1] / 64 resample filter of every official StyleGAN2 network?"""
    if tuple(f.shape) != (4, 4):
        return False
    ref = torch.outer(_BINOMIAL4, _BINOMIAL4)
    ref = ref / ref.sum()
    return bool(torch.allclose(f.detach().float().cpu(), ref, rtol=1e-6, atol=1e-7))


def upsample_img(img: torch.Tensor, f: torch.Tensor, binomial: bool | None = None) -> torch.Tensor:
    """``ops.upsample2d`` (zero insertion, [1,3,3,1] FIR, gain 4) as a bilinear resize.

    With the binomial filter, 2x up-sampling by zero insertion and filtering
    equals bilinear interpolation (align_corners=False) of the zero-padded
    image, cropped; this runs about 8x faster than the depthwise convolution.
    Other filters use the reference.
    """
    if binomial is None:
        binomial = _is_binomial4(f)
    if not binomial:
        return ops.upsample2d(img, f)
    y = F.interpolate(F.pad(img, [1, 1, 1, 1]), scale_factor=2, mode="bilinear", align_corners=False)
    return y[:, :, 2:-2, 2:-2]


# Output phase (row, column parity) of each polyphase kernel, in the order _up_phases returns them.
_PHASE_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _up_phases(weight: torch.Tensor, memory_format: torch.memory_format) -> tuple[torch.Tensor, ...] | None:
    """The stride-2 transposed 3x3 convolution with ``weight`` [O, I, 3, 3], as four plain convolutions.

    ``conv_transpose2d(x, weight.transpose(0, 1), stride=2)[..., 2m + ry, 2n + rx]`` only ever
    reads the taps of one parity: even outputs the taps 0 and 2 (of x[m-1] and x[m]), odd
    outputs tap 1. So output phase (ry, rx) is a correlation of x with the flipped kernel's taps
    of that parity: 2x2, 2x1, 1x2 and 1x1 kernels (padding 1 where two taps). The FIR's gain 4 is
    folded in. Returns None for other kernel sizes (they keep ``conv_transpose2d``).
    """
    if tuple(weight.shape[-2:]) != (3, 3):
        return None
    flipped = weight.flip([2, 3]) * 4.0
    taps = {0: slice(0, 3, 2), 1: slice(1, 2)}  # even phase: taps 0 and 2; odd phase: tap 1
    return tuple(flipped[:, :, taps[ry], taps[rx]].contiguous(memory_format=memory_format)
                 for ry, rx in _PHASE_OFFSETS)


@dataclass
class _Layer:
    """One modulated layer, prepared for one image."""

    name: str  # "b8.conv0", "b8.torgb", ...
    kind: str  # "conv" | "torgb"
    w_idx: int  # row of ws it reads
    resolution: int  # output resolution
    affine_w: torch.Tensor  # [I, w_dim] float32, gains folded in
    affine_b: torch.Tensor  # [I] float32
    wsq: torch.Tensor | None  # [O, I] float32 squared norms of theta + delta_theta (conv layers)
    in_gain: float  # gain the stored input still owes (sqrt 2 when folded forward)
    bias: torch.Tensor  # [O] float32
    bias_c: torch.Tensor  # [O] compute dtype
    noise: torch.Tensor | None  # [1, 1, R, R] compute dtype
    w_base: torch.Tensor | None  # float32 theta + delta_theta ([O, I, k, k]); None once a Winograd transform replaces it
    w_fixed: torch.Tensor | None  # compute-dtype copy of w_base (activation modulation), None if unused
    act_mod: bool  # one image: modulate activations (cheap at low resolution) instead of the weight
    up: bool = False
    fir: torch.Tensor | None = None  # [O, 1, kh, kw] depthwise FIR, compute dtype
    fir_pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    clamp: float | None = None
    out_gain_deferred: bool = False  # lrelu gain left to the next layers
    rows_before: int = 0  # ws rows read by the steps before this layer
    phases: tuple[torch.Tensor, ...] | None = None  # up layers, one image: the 4 polyphase kernels, see _up_phases
    winograd: torch.Tensor | None = None  # [36, I, O] F(4x4, 3x3) transform of the weight (models.winograd)
    winograd_per_call: bool = False  # transform w_base at each frame instead (renderers kept without transforms)


@dataclass
class _Step:
    kind: str  # "const" | "conv" | "torgb"
    block_res: int
    layer: _Layer | None = None
    end_of_block: bool = False
    rows_before: int = 0  # ws rows read by the steps before this one


class EditRenderer:
    """Renders G(w; theta + delta_theta) of ONE inverted image for many w.

    Args:
        generator: the loaded :class:`Generator` (its weights are read, never changed).
        deltas: delta_theta of the image (``WeightDeltas`` or ``{name: [1, *shape]}``); None = theta.
        precision: "float32" (exact path) or "bfloat16" (a setting; see the benchmark's PSNR).
        cache_resolution: keep the activations entering layers up to this resolution, so a new w
            that differs only in later rows restarts from there (0 disables; 1024 caches all,
            about 0.6 GB at 1024 px in float32; 256: about 0.12 GB, half in bfloat16).
        channels_last: NHWC activations (faster oneDNN convolutions on CPU).
        polyphase: run the up-sampling convolutions of one image as four plain convolutions
            (see :func:`_up_phases`; same result, faster on CPUs); False keeps ``conv_transpose2d``.
        winograd: run the 3x3 convolutions of many channels at 8-512 px by Winograd's F(4x4, 3x3)
            (``networks.winograd``: 4x fewer multiplies, 1.2-3x faster there, ~1e-5 relative difference);
            None = on the CPU in float32 (GPU libraries pick Winograd themselves).
        keep_transforms: keep each Winograd layer's transformed weight (4x the weight's size).
            False transforms the weight at every frame instead, only in the layers where that
            still pays (:func:`~hyperinverter_gui.networks.winograd.pays_per_call`): for a renderer
            that draws one frame per photo and is kept between photos (Phase I's theta).

    ``render(w [num_ws, w_dim], max_resolution=None) -> [3, R, R]`` float32 on the generator's device.
    """

    def __init__(
        self,
        generator: Generator | SynthesisNetwork,
        deltas: Mapping[str, torch.Tensor] | None = None,
        *,
        precision: str | torch.dtype = "float32",
        cache_resolution: int = 256,
        channels_last: bool = True,
        polyphase: bool = True,
        winograd: bool | None = None,
        keep_transforms: bool = True,
    ):
        synthesis = generator.synthesis if isinstance(generator, Generator) else generator
        self.synthesis = synthesis
        self.cfg = synthesis.cfg
        self.num_ws = synthesis.num_ws
        self.w_dim = synthesis.w_dim
        self.dtype = resolve_precision(precision)
        self.cache_resolution = int(cache_resolution)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device = next(synthesis.parameters()).device
        self.polyphase = polyphase
        self.winograd = (self.device.type == "cpu" and self.dtype == torch.float32) if winograd is None else winograd
        self.keep_transforms = keep_transforms
        self._scratch: dict[tuple[int, ...], torch.Tensor] = {}
        with torch.no_grad():
            self.steps = self._prepare(_unbatch(deltas, synthesis.weight_shapes()))
        self._states: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = {}
        self._last: tuple[torch.Tensor, int | None, torch.Tensor] | None = None
        self.last_run: tuple[int, int] = (0, 0)

    # --- preparation ---------------------------------------------------------------

    @property
    def precision(self) -> str:
        return "bfloat16" if self.dtype == torch.bfloat16 else "float32"

    def _cl(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=self.memory_format) if t.ndim == 4 else t

    def _prepare(self, deltas: dict[str, torch.Tensor]) -> list[_Step]:
        steps: list[_Step] = []
        w_idx = 0
        pending_gain = 1.0  # gain the activations flowing into the next layer still owe
        self.binomial = {}
        for res in self.synthesis.block_resolutions:
            block = getattr(self.synthesis, f"b{res}")
            prefix = f"b{res}"
            self.binomial[res] = _is_binomial4(block.resample_filter)
            if block.in_channels == 0:
                self.const = self._cl(block.const.detach().to(self.dtype).unsqueeze(0))
                steps.append(_Step("const", res))
                pending_gain = 1.0
            else:
                layer = self._conv_layer(f"{prefix}.conv0", block.conv0, deltas, w_idx, pending_gain)
                steps.append(_Step("conv", res, layer))
                pending_gain = ops.LRELU_GAIN if layer.out_gain_deferred else 1.0
                w_idx += 1
            layer = self._conv_layer(f"{prefix}.conv1", block.conv1, deltas, w_idx, pending_gain)
            steps.append(_Step("conv", res, layer))
            pending_gain = ops.LRELU_GAIN if layer.out_gain_deferred else 1.0
            w_idx += 1
            if block.has_torgb:
                layer = self._torgb_layer(f"{prefix}.torgb", block.torgb, deltas, w_idx, pending_gain, res)
                steps.append(_Step("torgb", res, layer))
            steps[-1].end_of_block = True
        assert w_idx + (1 if steps[-1].kind == "torgb" else 0) == self.num_ws
        rows = 0
        for step in steps:
            step.rows_before = rows
            if step.layer is not None:
                step.layer.rows_before = rows
                rows = max(rows, step.layer.w_idx + 1)
        return steps

    def _merged(self, name: str, param: torch.Tensor, deltas: dict[str, torch.Tensor]) -> torch.Tensor:
        """theta + delta_theta in float32; theta itself (the generator's tensor, no copy) without a delta."""
        p = param.detach().float()
        d = deltas.get(name)
        return p if d is None else p + d.to(p.device, torch.float32)

    def _affine(self, name: str, fc, deltas, extra_gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        a = self._merged(f"{name}.affine.weight", fc.weight, deltas) * (fc.weight_gain * extra_gain)
        b = fc.bias.detach().float() * (fc.bias_gain * extra_gain)
        return a.contiguous(), b.contiguous()

    def _weights(self, weight: torch.Tensor, up: bool, in_res: int, out_res: int, demod: bool):
        """(w_base float32, w_fixed compute dtype or None, act_mod, phases) for a merged [O, I, k, k] weight.

        ``w_base`` is the weight as merged (for theta: the generator's own tensor, not copied),
        read only by the per-frame modulation, which writes into a channels_last scratch buffer.
        """
        o, i, kh, kw = weight.shape
        # Per frame, one image: modulating the weight costs O*I*k*k multiplies, modulating the
        # activations I*H*W (+ O*H'*W' for demodulation). Pick the cheaper one.
        act_mod = i * in_res * in_res + (o * out_res * out_res if demod else 0) < o * i * kh * kw
        w_fixed = self._fixed_weight(weight, up) if act_mod else None
        phases = _up_phases(weight, self.memory_format) if up and not act_mod and self.polyphase else None
        return weight, w_fixed, act_mod, phases

    def _fixed_weight(self, weight: torch.Tensor, up: bool) -> torch.Tensor:
        """The weight for activation modulation, in the layout of its call (up: [I, O, k, k], FIR gain 4).

        Written in one pass into a channels_last tensor; a float32 weight of a plain convolution is
        used as it is (theta: the generator's own tensor), since oneDNN takes either layout.
        """
        if not up and weight.dtype == self.dtype:
            return weight
        src = weight.transpose(0, 1) if up else weight
        out = torch.empty(src.shape, dtype=self.dtype, device=src.device, memory_format=self.memory_format)
        return torch.mul(src, 4.0, out=out) if up else out.copy_(src)

    def _scratch_weight(self, shape: torch.Size) -> torch.Tensor:
        """A per-frame modulated-weight buffer, shared by the layers of one shape (they run one at a time)."""
        key = tuple(shape)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = torch.empty(key, dtype=self.dtype, device=self.device,
                                                   memory_format=self.memory_format if len(key) == 4 else
                                                   torch.contiguous_format)
        return buf

    def _conv_layer(self, name: str, mod: SynthesisLayer, deltas, w_idx: int, in_gain: float) -> _Layer:
        aw, ab = self._affine(name, mod.affine, deltas)
        weight = self._merged(f"{name}.weight", mod.weight, deltas)
        # ||W[o, i]||^2 without a weight-sized temporary (this runs once per image).
        wsq = torch.linalg.vector_norm(weight, dim=(2, 3)).square_()
        noise = (mod.noise_const.detach().float() * mod.noise_strength.detach().float()).reshape(
            1, 1, mod.resolution, mod.resolution
        )
        clamp = mod.conv_clamp if mod.conv_clamp is not None and mod.conv_clamp >= 0 else None
        in_res = mod.resolution // 2 if mod.up else mod.resolution
        bias = mod.bias.detach().float().contiguous()
        wino_shape = (self.winograd and self.dtype == torch.float32 and not mod.up
                      and tuple(weight.shape[-2:]) == (3, 3))
        per_call = False
        if wino_shape and self.keep_transforms and winograd.worthwhile(weight.shape[1], weight.shape[0],
                                                                       mod.resolution, mod.resolution):
            # The transform is all the frames read: no merged weight or modulation copies are kept.
            wino, w_base, w_fixed, act_mod, phases = winograd.transform_weight(weight), None, None, True, None
        elif wino_shape and not self.keep_transforms and winograd.pays_per_call(
                weight.shape[1], weight.shape[0], mod.resolution, mod.resolution):
            # The merged weight (theta itself: the generator's tensor) is transformed at each frame.
            wino, w_base, w_fixed, act_mod, phases, per_call = None, weight, None, True, None, True
        else:
            wino = None
            w_base, w_fixed, act_mod, phases = self._weights(weight, mod.up, in_res, mod.resolution, True)
        layer = _Layer(
            name=name, kind="conv", w_idx=w_idx, resolution=mod.resolution, affine_w=aw, affine_b=ab, wsq=wsq,
            in_gain=in_gain, bias=bias, bias_c=bias.to(self.dtype), noise=noise.to(self.dtype).contiguous(),
            w_base=w_base, w_fixed=w_fixed, act_mod=act_mod, up=mod.up, clamp=clamp,
            out_gain_deferred=clamp is None, phases=phases, winograd=wino, winograd_per_call=per_call,
        )
        if mod.up:
            f = mod.resample_filter.detach().float()
            fh, fw = f.shape
            kh, kw = weight.shape[-2:]
            px0 = kw // 2 + (fw + 1) // 2 - (kw - 1)
            px1 = kw // 2 + (fw - 2) // 2 - (kw - 2)
            py0 = kh // 2 + (fh + 1) // 2 - (kh - 1)
            py1 = kh // 2 + (fh - 2) // 2 - (kh - 2)
            o = weight.shape[0]
            k = f.flip([0, 1])[None, None].expand(o, 1, fh, fw)  # gain 4 is folded into the weights
            layer.fir = self._cl(k.to(self.dtype))
            layer.fir_pad = (px0, px1, py0, py1)
        return layer

    def _torgb_layer(self, name: str, mod: ToRGBLayer, deltas, w_idx: int, in_gain: float, res: int) -> _Layer:
        aw, ab = self._affine(name, mod.affine, deltas, extra_gain=mod.weight_gain)
        weight = self._merged(f"{name}.weight", mod.weight, deltas)
        clamp = mod.conv_clamp if mod.conv_clamp is not None and mod.conv_clamp >= 0 else None
        w_base, w_fixed, act_mod, _ = self._weights(weight, False, res, res, False)
        bias = mod.bias.detach().float().contiguous()
        return _Layer(
            name=name, kind="torgb", w_idx=w_idx, resolution=res, affine_w=aw, affine_b=ab, wsq=None,
            in_gain=in_gain, bias=bias, bias_c=bias.to(self.dtype), noise=None,
            w_base=w_base, w_fixed=w_fixed, act_mod=act_mod, clamp=clamp,
        )

    # --- per frame ---------------------------------------------------------------

    def _styles(self, layer: _Layer, ws: torch.Tensor) -> torch.Tensor:
        """[N, I] styles of one layer (float32)."""
        return torch.addmm(layer.affine_b.unsqueeze(0), ws[:, layer.w_idx], layer.affine_w.t())

    def _modconv(self, layer: _Layer, x: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Modulated (conv layers: demodulated) convolution. Returns (y, bias_added)."""
        n = styles.shape[0]
        s = styles if layer.in_gain == 1.0 else styles * layer.in_gain
        demod = layer.wsq is not None
        d = (styles.square() @ layer.wsq.t() + _DEMOD_EPS).rsqrt() if demod else None  # [N, O]
        bias = layer.bias_c if layer.kind == "conv" else None
        if layer.winograd is not None or layer.winograd_per_call:
            # Styles scale the input channels, demodulation the outputs; the transformed weight is fixed.
            u = layer.winograd if layer.winograd is not None else winograd.transform_weight(layer.w_base)
            return winograd.conv3x3(x, u, in_scale=s, out_scale=d, bias=bias), True
        if n == 1 and not layer.act_mod:
            # Fold styles and demodulation into the weight, written in one pass into a scratch buffer.
            scale = d.reshape(-1, 1) * s if demod else s  # [O, I] or [1, I]
            scale = scale.reshape(*scale.shape, 1, 1)
            if layer.up:
                return self._up_conv(layer, x, scale), True
            w = torch.mul(layer.w_base, scale, out=self._scratch_weight(layer.w_base.shape))
            return F.conv2d(x, w, bias, padding=w.shape[-1] // 2), bias is not None
        # Modulate the activations: one convolution with this image's fixed weights serves all w.
        w = layer.w_fixed
        if w is None:
            layer.w_fixed = w = self._fixed_weight(layer.w_base, layer.up)
        xm = x * s.to(self.dtype).reshape(n, -1, 1, 1)
        if layer.up:
            y = self._fir(layer, F.conv_transpose2d(xm, w, stride=2))
        else:
            y = F.conv2d(xm, w, padding=w.shape[-1] // 2)
        if demod:
            y.mul_(d.to(self.dtype).reshape(n, -1, 1, 1))
        return y, False

    def _up_conv(self, layer: _Layer, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """One image: the stride-2 transposed convolution with the modulated weight, then FIR and bias.

        With ``phases`` (see :func:`_up_phases`) the transposed convolution runs as four plain
        convolutions, one per output phase, interleaved into the (2H+1)^2 grid: the same
        products and sums, 1.5-1.7x faster on CPUs than ``conv_transpose2d`` at 256-1024 px.
        """
        if layer.phases is None:
            w = torch.mul(layer.w_base.transpose(0, 1), scale.transpose(0, 1) * 4.0,
                          out=self._scratch_weight(layer.w_base.transpose(0, 1).shape))
            return self._fir(layer, F.conv_transpose2d(x, w, stride=2), layer.bias_c)
        n, _, h, wd = x.shape
        o = layer.w_base.shape[0]
        y = torch.empty(n, o, 2 * h + 1, 2 * wd + 1, dtype=x.dtype, device=x.device, memory_format=self.memory_format)
        for (ry, rx), base in zip(_PHASE_OFFSETS, layer.phases):
            k = torch.mul(base, scale, out=self._scratch_weight(base.shape))
            pad = (1 - ry, 1 - rx)  # 2-tap phases read one row/column of zeros on either side
            y[:, :, ry::2, rx::2] = F.conv2d(x, k, padding=pad)
        return self._fir(layer, y, layer.bias_c)

    def _fir(self, layer: _Layer, y: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        px0, px1, py0, py1 = layer.fir_pad
        c = y.shape[1]
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return F.conv2d(y, layer.fir, bias, padding=(py0, px0), groups=c)
        return F.conv2d(F.pad(y, [px0, px1, py0, py1]), layer.fir, bias, groups=c)

    def _conv_step(self, layer: _Layer, x: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        y, bias_added = self._modconv(layer, x, self._styles(layer, ws))
        y.add_(layer.noise)
        if not bias_added:
            y.add_(layer.bias_c.reshape(1, -1, 1, 1))
        F.leaky_relu_(y, ops.LRELU_SLOPE)
        if not layer.out_gain_deferred:
            y.mul_(ops.LRELU_GAIN)
            if layer.clamp is not None:
                y.clamp_(-layer.clamp, layer.clamp)
        return y

    def _torgb_step(self, layer: _Layer, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor,
                    block_res: int) -> torch.Tensor:
        y, _ = self._modconv(layer, x, self._styles(layer, ws))
        y = y.float().add_(layer.bias.reshape(1, -1, 1, 1))
        if layer.clamp is not None:
            y = y.clamp_(-layer.clamp, layer.clamp)
        if img is not None:
            block = getattr(self.synthesis, f"b{block_res}")
            y = y.add_(upsample_img(img, block.resample_filter, self.binomial[block_res]))
        return y

    def _stop_index(self, max_resolution: int | None) -> int:
        """Index of the last step a frame runs (the reference's early exit for previews)."""
        has_img = False
        for k, step in enumerate(self.steps):
            has_img = has_img or step.kind == "torgb"
            if step.end_of_block and max_resolution is not None and step.block_res >= max_resolution and has_img:
                return k
        return len(self.steps) - 1

    def _run(self, ws: torch.Tensor, max_resolution: int | None, use_cache: bool) -> torch.Tensor:
        n = ws.shape[0]
        stop = self._stop_index(max_resolution)
        start, x, img = 0, None, None
        if use_cache:
            start, x, img = self._resume_point(ws[0], stop)
        self.last_run = (start, stop + 1)  # steps [start, stop] ran (for tests and diagnostics)
        for k in range(start, stop + 1):
            step = self.steps[k]
            if use_cache and k > 0 and step.block_res <= self.cache_resolution:
                self._states[k] = (x, img, ws[0].clone())
            if step.kind == "const":
                x = self.const.expand(n, -1, -1, -1)
            elif step.kind == "conv":
                x = self._conv_step(step.layer, x, ws)
            else:
                img = self._torgb_step(step.layer, x, img, ws, step.block_res)
        assert img is not None
        return img

    def _resume_point(self, w: torch.Tensor, stop: int):
        """Deepest cached state (before a step <= stop) whose inputs, the w rows read before it, equal ``w``'s."""
        for k in sorted(self._states, reverse=True):
            if k > stop:
                continue
            x, img, w_then = self._states[k]
            rows = self.steps[k].rows_before
            if rows == 0 or torch.equal(w_then[:rows], w[:rows]):
                return k, x, img
        return 0, None, None

    @torch.no_grad()
    def render(self, w: torch.Tensor, max_resolution: int | None = None) -> torch.Tensor:
        """One frame: w [num_ws, w_dim] (or [1, num_ws, w_dim]) -> image [3, R, R] float32."""
        if w.ndim == 3 and w.shape[0] == 1:
            w = w[0]
        if w.ndim != 2 or tuple(w.shape) != (self.num_ws, self.w_dim):
            raise ValueError(f"w must be [{self.num_ws}, {self.w_dim}], got {list(w.shape)}")
        w = w.to(self.device, torch.float32)
        last = self._last
        if last is not None and last[1] == max_resolution and torch.equal(last[0], w):
            self.last_run = (0, 0)
            return last[2].clone()
        img = self._run(w.unsqueeze(0), max_resolution, use_cache=self.cache_resolution > 0)[0]
        self._last = (w.clone(), max_resolution, img)
        return img.clone()

    @torch.no_grad()
    def render_batch(self, ws: torch.Tensor, max_resolution: int | None = None) -> torch.Tensor:
        """Several frames of this image: ws [N, num_ws, w_dim] -> [N, 3, R, R] (no cache)."""
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        return self._run(ws.to(self.device, torch.float32), max_resolution, use_cache=False)

    def clear_cache(self) -> None:
        self._states.clear()
        self._last = None

    def weight_bytes(self, include_shared: bool = False) -> int:
        """Memory this renderer holds for its weights (merged theta + delta_theta, polyphase kernels,
        activation-modulation copies, scratch buffers, noise maps). Tensors it shares with the
        generator (theta itself, when no delta is given) count only with ``include_shared``."""
        shared = set() if include_shared else {p.data_ptr() for p in self.synthesis.parameters()} | \
            {b.data_ptr() for b in self.synthesis.buffers()}
        total, seen = 0, set(shared)
        tensors = list(self._scratch.values())
        for step in self.steps:
            lay = step.layer
            if lay is not None:
                tensors += [lay.affine_w, lay.affine_b, lay.wsq, lay.bias, lay.bias_c, lay.noise, lay.w_base,
                            lay.w_fixed, lay.fir, lay.winograd, *(lay.phases or ())]
        for t in tensors:
            if t is not None and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    def cache_bytes(self) -> int:
        seen, total = set(), 0
        for x, img, _ in self._states.values():
            for t in (x, img):
                if t is not None and t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
        return total
