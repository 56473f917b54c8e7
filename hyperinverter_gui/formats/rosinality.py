"""Convert rosinality ``stylegan2-pytorch`` generators to the NVIDIA parameter layout.

rosinality's ``.pt`` files (``convert_weight.py`` output, training
checkpoints, and the copies HyperStyle / e4e / pSp ship) hold the generator
as ``g_ema``: a state dict with keys such as ``style.1.weight``,
``input.input``, ``conv1.conv.weight`` ``[1, out, in, 3, 3]``,
``conv1.conv.modulation.{weight,bias}``, ``conv1.noise.weight``,
``conv1.activate.bias``, ``to_rgb1.*``, ``convs.<i>.*``, ``to_rgbs.<j>.*`` and
``noises.noise_<k>``; ``latent_avg`` (the mean w) sits next to it when the
file came from ``convert_weight.py``.

The two implementations compute the same function, so the conversion is a
renaming plus reshapes, with no rescaling:

* equalised-lr scales: rosinality multiplies a conv weight by
  ``1/sqrt(in*k*k)`` before modulating; NVIDIA does not (demodulation makes the
  factor cancel, up to the 1e-8 epsilon), and for the 1x1 toRGB NVIDIA applies
  the same ``1/sqrt(in)`` to the styles instead. Mapping layers use
  ``lr_mul/sqrt(in)`` and ``lr_mul`` (0.01) for weight and bias in both;
* modulation biases are stored with their initial ``+1`` in both;
* ``StyledConv``: conv, ``+ noise.weight * noise``, then ``activate`` (bias +
  leaky ReLU * sqrt 2) = NVIDIA's conv, ``+ noise_const * noise_strength``,
  ``bias_act``; ``noise.weight`` ``[1]`` is NVIDIA's scalar ``noise_strength``;
* up-sampling convs are ``conv_transpose2d`` (stride 2, correlation kernel,
  no flip) then a ``[1,3,3,1]`` blur with padding (1, 1) and gain 4 in both;
  the stored ``blur.kernel`` already includes the gain 4, NVIDIA's
  ``resample_filter`` does not (divide by 4). The skip image is up-sampled with
  ``to_rgbs.<j>.upsample.kernel`` (gain 4 too) -> the block's ``resample_filter``;
* noise buffer ``k``: 0 for the 4x4 conv, then ``2j+1`` / ``2j+2`` for block
  ``j``'s first / second conv; ``[1, 1, R, R]`` -> ``noise_const`` ``[R, R]``.
  These reproduce rosinality's ``randomize_noise=False``;
* w indices: rosinality's ``n_latent = 2*log2(R) - 2`` equals NVIDIA's
  ``num_ws`` and both use them in the same order (conv, toRGB share one);
* ``latent_avg`` -> ``mapping.w_avg``; if the file has none, it is estimated
  as the mean w of 4096 seeded z (rosinality's ``mean_latent(4096)``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from hyperinverter_gui.errors import ModelFileError
from hyperinverter_gui.formats import checkpoints
from hyperinverter_gui.networks import ops
from hyperinverter_gui.networks.stylegan2 import GeneratorConfig, MappingNetwork

DEFAULT_LR_MLP = 0.01  # rosinality Generator(lr_mlp=0.01); not stored in the files
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0


def _default_filter() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum()


def _load(path: Path) -> Any:
    # Training checkpoints also carry their argparse options (a plain attribute bag).
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext():
        return checkpoints.load_torch_file(path)


def _find_generator(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], Any]:
    """``(g_ema state dict, latent_avg or None)`` from a loaded ``.pt`` object."""
    if isinstance(obj, Mapping):
        g = obj.get("g_ema")
        if g is not None:
            if not isinstance(g, Mapping):
                raise ModelFileError(f"{source}: 'g_ema' is a {type(g).__name__}, not a state dict")
            return {str(k): v for k, v in g.items()}, obj.get("latent_avg")
        if "style.1.weight" in obj:  # a bare g_ema state dict
            return {str(k): v for k, v in obj.items()}, obj.get("latent_avg")
        inner = obj.get("state_dict")
        if isinstance(inner, Mapping) and "decoder.style.1.weight" in inner:  # pSp / e4e / HyperStyle
            return checkpoints.subdict(inner, "decoder"), obj.get("latent_avg")
        if "g" in obj and isinstance(obj["g"], Mapping):
            raise ModelFileError(
                f"{source} has no averaged generator 'g_ema' (only the training generator 'g'); "
                "it is not a usable rosinality generator"
            )
    kind = checkpoints.describe_checkpoint(obj)
    what = checkpoints.KIND_NAMES[kind] if kind != "rosinality_generator" else "something else"
    raise ModelFileError(f"{source} has no rosinality generator 'g_ema': it is {what}")


def _tensor(sd: Mapping[str, Any], key: str, source: str, ndim: int | None = None) -> torch.Tensor:
    v = sd.get(key)
    if v is None:
        raise ModelFileError(f"{source}: the generator lacks '{key}'")
    if not isinstance(v, torch.Tensor) or not v.is_floating_point():
        raise ModelFileError(f"{source}: '{key}' is not a floating-point tensor")
    if ndim is not None and v.ndim != ndim:
        raise ModelFileError(f"{source}: '{key}' has shape {list(v.shape)}, expected {ndim} dimensions")
    return v.detach().to(torch.float32)


def _mean_w(cfg: GeneratorConfig, sd: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the mapping network's output over seeded z (deterministic)."""
    mapping = MappingNetwork(cfg)
    own = {k[len("mapping."):]: v for k, v in sd.items() if k.startswith("mapping.")}
    own["w_avg"] = torch.zeros(cfg.w_dim)
    mapping.load_state_dict(own)
    z = torch.randn(MEAN_LATENT_SAMPLES, cfg.z_dim, generator=torch.Generator().manual_seed(MEAN_LATENT_SEED))
    with torch.no_grad():
        x = ops.normalize_2nd_moment(z)
        for i in range(cfg.mapping_layers):
            x = getattr(mapping, f"fc{i}")(x)
    return x.mean(0)


def convert_rosinality_state_dict(
    g: Mapping[str, Any],
    latent_avg: Any = None,
    source: str = "generator",
    mapping_lr_multiplier: float = DEFAULT_LR_MLP,
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """``(config, NVIDIA-named state dict)`` of a rosinality ``g_ema`` state dict."""
    mlp = sorted(int(m.group(1)) for k in g if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise ModelFileError(f"{source}: no rosinality mapping layers (style.1.weight, ...) found")
    n_rgbs = len({m.group(1) for k in g if (m := re.fullmatch(r"to_rgbs\.(\d+)\..*", k))})
    n_convs = len({m.group(1) for k in g if (m := re.fullmatch(r"convs\.(\d+)\..*", k))})
    if n_convs != 2 * n_rgbs:
        raise ModelFileError(f"{source}: {n_convs} convs for {n_rgbs} toRGB layers; expected two convs each")
    res = 4 * 2**n_rgbs
    log2 = int(math.log2(res))

    sd: dict[str, torch.Tensor] = {}
    for i in mlp:
        sd[f"mapping.fc{i - 1}.weight"] = _tensor(g, f"style.{i}.weight", source, 2)
        sd[f"mapping.fc{i - 1}.bias"] = _tensor(g, f"style.{i}.bias", source, 1)
    w_dim = int(sd[f"mapping.fc{mlp[-1] - 1}.weight"].shape[0])
    z_dim = int(sd["mapping.fc0.weight"].shape[1])
    hidden = int(sd["mapping.fc0.weight"].shape[0])

    num_noises = 2 * n_rgbs + 1
    noise_keys = [f"noises.noise_{k}" for k in range(num_noises)]
    have_noise = [k in g for k in noise_keys]
    if any(have_noise) and not all(have_noise):
        missing = [k for k, h in zip(noise_keys, have_noise) if not h]
        raise ModelFileError(f"{source}: the generator lacks noise buffer(s) {', '.join(missing[:3])}")

    def conv_weight(key: str) -> torch.Tensor:
        w = _tensor(g, key, source, 5)  # [1, out, in, k, k]
        if w.shape[0] != 1:
            raise ModelFileError(f"{source}: '{key}' has shape {list(w.shape)}, expected [1, out, in, k, k]")
        return w[0].contiguous()

    def kernel(key: str) -> torch.Tensor:
        if key not in g:
            return _default_filter()
        k = _tensor(g, key, source, 2)
        return k / 4  # rosinality stores the up-sampling filter times factor**2

    def styled_conv(dst: str, src: str, noise_idx: int, r: int, filt: torch.Tensor) -> None:
        sd[f"{dst}.weight"] = conv_weight(f"{src}.conv.weight")
        sd[f"{dst}.affine.weight"] = _tensor(g, f"{src}.conv.modulation.weight", source, 2)
        sd[f"{dst}.affine.bias"] = _tensor(g, f"{src}.conv.modulation.bias", source, 1)
        sd[f"{dst}.bias"] = _tensor(g, f"{src}.activate.bias", source, 1)
        sd[f"{dst}.noise_strength"] = _tensor(g, f"{src}.noise.weight", source).reshape([])
        if all(have_noise):
            sd[f"{dst}.noise_const"] = _tensor(g, f"noises.noise_{noise_idx}", source, 4).reshape(r, r)
        else:  # no stored noise: constant zero noise
            sd[f"{dst}.noise_const"] = torch.zeros(r, r)
        sd[f"{dst}.resample_filter"] = filt

    def to_rgb(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = conv_weight(f"{src}.conv.weight")
        sd[f"{dst}.affine.weight"] = _tensor(g, f"{src}.conv.modulation.weight", source, 2)
        sd[f"{dst}.affine.bias"] = _tensor(g, f"{src}.conv.modulation.bias", source, 1)
        sd[f"{dst}.bias"] = _tensor(g, f"{src}.bias", source).reshape(-1)

    const = _tensor(g, "input.input", source, 4)
    sd["synthesis.b4.const"] = const[0]
    sd["synthesis.b4.resample_filter"] = _default_filter()
    styled_conv("synthesis.b4.conv1", "conv1", 0, 4, _default_filter())
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    channels = {4: int(sd["synthesis.b4.conv1.weight"].shape[0])}
    for j in range(n_rgbs):
        r = 8 * 2**j
        blk = f"synthesis.b{r}"
        up_filter = kernel(f"convs.{2 * j}.conv.blur.kernel")
        skip_filter = kernel(f"to_rgbs.{j}.upsample.kernel")
        sd[f"{blk}.resample_filter"] = skip_filter
        styled_conv(f"{blk}.conv0", f"convs.{2 * j}", 2 * j + 1, r, up_filter)
        styled_conv(f"{blk}.conv1", f"convs.{2 * j + 1}", 2 * j + 2, r, skip_filter.clone())
        to_rgb(f"{blk}.torgb", f"to_rgbs.{j}")
        channels[r] = int(sd[f"{blk}.conv1.weight"].shape[0])

    cfg = GeneratorConfig(
        z_dim=z_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=res,
        img_channels=int(sd["synthesis.b4.torgb.weight"].shape[0]),
        mapping_layers=len(mlp),
        mapping_lr_multiplier=float(mapping_lr_multiplier),
        mapping_layer_features=None if hidden == w_dim or len(mlp) == 1 else hidden,
        channels=channels,
        architecture="skip",
    )
    assert cfg.num_ws == 2 * log2 - 2  # rosinality's n_latent

    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.shape[-1] != w_dim:
            raise ModelFileError(f"{source}: 'latent_avg' is not a {w_dim}-vector")
        # Some encoders store it repeated per style ([n_latent, w] or [1, w]).
        sd["mapping.w_avg"] = latent_avg.detach().float().reshape(-1, w_dim).mean(0)
    else:
        sd["mapping.w_avg"] = _mean_w(cfg, sd)
    return cfg, sd


def load_rosinality_generator(
    path_or_obj: str | Path | Mapping[str, Any],
    mapping_lr_multiplier: float = DEFAULT_LR_MLP,
    source: str = "generator",
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """``(config, NVIDIA-named state dict)`` of the ``g_ema`` in a rosinality ``.pt`` file.

    Also accepts the already loaded object (a dict with ``g_ema``, a bare
    ``g_ema`` state dict, or a pSp/e4e/HyperStyle checkpoint's ``decoder.*``).
    Feed the result to ``loading.generator_from_state_dict(cfg, sd, source)``.
    """
    if isinstance(path_or_obj, (str, Path)):
        path = Path(path_or_obj)
        source = path.name
        obj = _load(path)
    else:
        obj = path_or_obj  # ``source`` names it in messages
    g, latent_avg = _find_generator(obj, source)
    return convert_rosinality_state_dict(g, latent_avg, source, mapping_lr_multiplier)
