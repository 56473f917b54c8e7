"""StyleGAN2 generator with the parameter names of stylegan2-ada-pytorch.

The module tree mirrors NVIDIA's ``Generator`` so that ``state_dict()`` keys
and shapes are identical to ``G_ema.state_dict()`` of an official network
pickle (``mapping.fc0.weight``, ``synthesis.b4.conv1.affine.weight``, ...).
Only the inference path is implemented: float32, constant noise, no training
bookkeeping. The synthesis pass accepts per-sample weight deltas for any
subset of layer weights (theta_hat = theta + delta_theta, added to the raw
weight before any gain), which is what HyperInverter predicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from hyperinverter_gui.networks import construction, ops

# Per-sample weight deltas keyed by synthesis-relative parameter name
# ("b4.conv1.weight", "b8.torgb.weight", "b16.conv0.affine.weight", ...).
# Each tensor is [batch, *parameter_shape].
DeltaDict = Mapping[str, torch.Tensor]


@dataclass
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator, as read from a model file."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_layer_features: int | None = None  # None = w_dim
    mapping_embed_features: int | None = None  # None = w_dim (only with c_dim > 0)
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> channels
    conv_clamp: float | None = None
    architecture: str = "skip"

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        # Every block has two convs (the first block one) and shares its last w
        # with its toRGB; the final toRGB needs one more w.
        return 2 * len(self.block_resolutions)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "GeneratorConfig":
        d = dict(d)
        d["channels"] = {int(k): int(v) for k, v in d.get("channels", {}).items()}
        return cls(**d)

    @classmethod
    def from_stylegan2_ada_kwargs(cls, kwargs: Mapping[str, Any]) -> "GeneratorConfig":
        """Build from the ``init_kwargs`` NVIDIA pickles store for ``Generator``."""
        mk = dict(kwargs.get("mapping_kwargs") or {})
        sk = dict(kwargs.get("synthesis_kwargs") or {})
        res = int(kwargs["img_resolution"])
        if res < 4 or res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
        channel_base = int(sk.get("channel_base", 32768))
        channel_max = int(sk.get("channel_max", 512))
        cfg = cls(
            z_dim=int(kwargs["z_dim"]),
            c_dim=int(kwargs.get("c_dim", 0)),
            w_dim=int(kwargs["w_dim"]),
            img_resolution=res,
            img_channels=int(kwargs.get("img_channels", 3)),
            mapping_layers=int(mk.get("num_layers", 8)),
            mapping_lr_multiplier=float(mk.get("lr_multiplier", 0.01)),
            mapping_layer_features=mk.get("layer_features"),
            mapping_embed_features=mk.get("embed_features"),
            conv_clamp=None if sk.get("conv_clamp") is None else float(sk["conv_clamp"]),
            architecture=str(sk.get("architecture", "skip")),
        )
        cfg.channels = {r: min(channel_base // r, channel_max) for r in cfg.block_resolutions}
        if mk.get("activation", "lrelu") != "lrelu":
            raise ValueError(f"unsupported mapping activation {mk.get('activation')!r}")
        return cfg

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], **overrides: Any) -> "GeneratorConfig":
        """Derive the architecture from parameter names and shapes alone."""
        blocks = sorted(
            {int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b") and k.split(".")[1][1:].isdigit()}
        )
        if not blocks or blocks[0] != 4:
            raise ValueError("no synthesis blocks (synthesis.b4.*) found")
        fcs = sorted(int(k.split(".")[1][2:]) for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
        if not fcs:
            raise ValueError("no mapping layers (mapping.fc0.*) found")
        channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in blocks}
        has_embed = "mapping.embed.weight" in sd
        w_dim = int(sd[f"mapping.fc{fcs[-1]}.weight"].shape[0])
        c_dim = int(sd["mapping.embed.weight"].shape[1]) if has_embed else 0
        embed = int(sd["mapping.embed.weight"].shape[0]) if has_embed else 0
        z_dim = int(sd["mapping.fc0.weight"].shape[1]) - embed
        kwargs: dict[str, Any] = dict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=blocks[-1],
            img_channels=int(sd[f"synthesis.b{blocks[-1]}.torgb.weight"].shape[0]),
            mapping_layers=len(fcs),
            mapping_layer_features=int(sd["mapping.fc0.weight"].shape[0]) if len(fcs) > 1 else None,
            mapping_embed_features=embed if has_embed else None,
            channels=channels,
            architecture="skip" if f"synthesis.b{blocks[0]}.torgb.weight" in sd or len(blocks) == 1 else "orig",
        )
        kwargs.update(overrides)
        return cls(**kwargs)


class FullyConnectedLayer(nn.Module):
    """Equalized-learning-rate linear layer (``weight``, ``bias``)."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        lrelu: bool = False,  # Leaky ReLU (with gain sqrt 2) after the bias?
        lr_multiplier: float = 1.0,  # Learning-rate multiplier used in training; scales weight and bias.
        bias_init: float = 0.0,  # Initial bias (only matters before weights are loaded).
    ):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(construction.randn((out_features, in_features), 1 / lr_multiplier))
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor, weight_delta: torch.Tensor | None = None) -> torch.Tensor:
        b = self.bias * self.bias_gain
        if weight_delta is None:
            w = self.weight * self.weight_gain
            if not self.lrelu:
                return torch.addmm(b.unsqueeze(0), x, w.t())
            return ops.bias_act(x.matmul(w.t()), b, lrelu=True, gain=ops.LRELU_GAIN)
        # Per-sample weights [N, out, in].
        w = (self.weight.unsqueeze(0) + weight_delta) * self.weight_gain
        y = torch.einsum("ni,noi->no", x, w)
        return ops.bias_act(y, b, lrelu=self.lrelu, gain=ops.LRELU_GAIN if self.lrelu else 1.0)


class MappingNetwork(nn.Module):
    """z (and optional label c) -> w, broadcast to ``num_ws`` copies."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.num_ws = cfg.num_ws
        self.num_layers = cfg.mapping_layers
        embed = 0
        if cfg.c_dim > 0:
            embed = cfg.mapping_embed_features or cfg.w_dim
            self.embed = FullyConnectedLayer(cfg.c_dim, embed)
        hidden = cfg.mapping_layer_features or cfg.w_dim
        features = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for idx in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], lrelu=True, lr_multiplier=cfg.mapping_lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0
    ) -> torch.Tensor:
        """Returns ws [N, num_ws, w_dim]."""
        parts = []
        if self.z_dim > 0:
            assert z.ndim == 2 and z.shape[1] == self.z_dim, z.shape
            parts.append(ops.normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            if c is None:
                raise ValueError("this generator is conditional: a class label c is required")
            parts.append(ops.normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + constant noise + bias + leaky ReLU."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Output resolution of this layer.
        up: bool = False,  # Upsample 2x (first conv of a block)?
        conv_clamp: float | None = None,  # Clamp outputs to +-X, None = no clamping.
        kernel_size: int = 3,  # Convolution kernel size.
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", torch.full((4, 4), 1 / 16))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(construction.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", construction.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, deltas: DeltaDict) -> torch.Tensor:
        styles = self.affine(w, deltas.get("affine.weight"))
        dw = deltas.get("weight")
        weight = self.weight if dw is None else self.weight.unsqueeze(0) + dw
        x = ops.modulated_conv2d(
            x,
            weight,
            styles,
            demodulate=True,
            up=self.up,
            resample_filter=self.resample_filter,
            noise=self.noise_const * self.noise_strength,
        )
        return ops.bias_act(x, self.bias, lrelu=True, gain=ops.LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, no demodulation."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of image channels.
        w_dim: int,  # Dimensionality of w.
        conv_clamp: float | None = None,  # Clamp outputs to +-X, None = no clamping.
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(construction.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        # The reference code folds this gain into the styles, not the weight,
        # so a predicted delta is added to the un-scaled weight.
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, deltas: DeltaDict) -> torch.Tensor:
        styles = self.affine(w, deltas.get("affine.weight")) * self.weight_gain
        dw = deltas.get("weight")
        weight = self.weight if dw is None else self.weight.unsqueeze(0) + dw
        x = ops.modulated_conv2d(x, weight, styles, demodulate=False)
        return ops.bias_act(x, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (up)] -> conv1 -> toRGB (skip architecture)."""

    def __init__(
        self,
        in_channels: int,  # Channels of the previous block, 0 = first block (learned constant).
        out_channels: int,  # Channels of this block.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Resolution of this block.
        img_channels: int,  # Number of image channels.
        is_last: bool,  # Last block (always has a toRGB)?
        architecture: str = "skip",  # 'skip' or 'orig'.
        conv_clamp: float | None = None,  # Clamp outputs to +-X, None = no clamping.
    ):
        super().__init__()
        if architecture not in ("skip", "orig"):
            raise ValueError(f"unsupported synthesis architecture {architecture!r} (supported: skip, orig)")
        self.in_channels = in_channels
        self.resolution = resolution
        self.architecture = architecture
        # A factory, not an op: models are built on the meta device, where an op would pull in torch._dynamo (3 s).
        self.register_buffer("resample_filter", torch.full((4, 4), 1 / 16))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(construction.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.has_torgb = is_last or architecture == "skip"
        if self.has_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        deltas: DeltaDict,
        stop_rgb: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        sub = _split_deltas(deltas)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            assert x is not None and x.shape[1:] == (self.in_channels, self.resolution // 2, self.resolution // 2)
            x = self.conv0(x, next(w_iter), sub.get("conv0", {}))
        x = self.conv1(x, next(w_iter), sub.get("conv1", {}))
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.has_torgb:
            y = self.torgb(x, next(w_iter), sub.get("torgb", {}))
            img = y if img is None else img + y
        return x, img


def _split_deltas(deltas: DeltaDict) -> dict[str, dict[str, torch.Tensor]]:
    """{"conv1.weight": t} -> {"conv1": {"weight": t}} (first path component)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in deltas.items():
        head, _, rest = key.partition(".")
        out.setdefault(head, {})[rest] = value
    return out


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                cfg.channels[res // 2] if res > 4 else 0,
                cfg.channels[res],
                cfg.w_dim,
                res,
                cfg.img_channels,
                is_last=res == cfg.img_resolution,
                architecture=cfg.architecture,
                conv_clamp=cfg.conv_clamp,
            )
            self.num_ws += block.num_conv
            if res == cfg.img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)
        assert self.num_ws == cfg.num_ws

    def weight_shapes(self) -> dict[str, torch.Size]:
        """Synthesis-relative names and shapes of every parameter a delta may target."""
        return {name: p.shape for name, p in self.named_parameters()}

    def forward(
        self,
        ws: torch.Tensor,
        deltas: DeltaDict | None = None,
        max_resolution: int | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, C, R, R] (roughly in [-1, 1]).

        ``deltas`` maps synthesis-relative parameter names to per-sample
        residuals [N, *shape]; ``max_resolution`` stops early and returns the
        skip-architecture image of that block (a cheap preview).
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.float()
        deltas = deltas or {}
        per_block: dict[str, dict[str, torch.Tensor]] = {}
        shapes = self.weight_shapes()
        for key, value in deltas.items():
            if key not in shapes:
                raise KeyError(f"weight delta for unknown synthesis parameter {key!r}")
            if value.shape != (ws.shape[0], *shapes[key]):
                raise ValueError(
                    f"delta {key!r} must be [{ws.shape[0]}, {', '.join(map(str, shapes[key]))}], got {list(value.shape)}"
                )
            head, _, rest = key.partition(".")
            per_block.setdefault(head, {})[rest] = value
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block: SynthesisBlock = getattr(self, f"b{res}")
            n = block.num_conv + block.num_torgb
            x, img = block(x, img, ws.narrow(1, w_idx, n), per_block.get(f"b{res}", {}))
            w_idx += block.num_conv
            if max_resolution is not None and res >= max_resolution and img is not None:
                break
        assert img is not None
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` (z -> w) and ``synthesis`` (w -> image)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        deltas: DeltaDict | None = None,
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, truncation_psi), deltas)
