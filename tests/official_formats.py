"""Writers for the authors' file formats, used by the tests to make tiny seeded models.

These spell out the official layouts independently of the package under test:
NVIDIA stylegan2-ada-pytorch network pickles (persistent objects carrying
module source + ``__dict__`` state) and HyperInverter ``.pt`` checkpoints
(``{"state_dict": ..., "opts": ...}`` with pSp-style encoder key names).
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

# Source the official pickles carry for each persistent class. Ours would
# create a marker file if anybody exec()'d it; loaders must never do that.
EVIL_SOURCE = "import pathlib\npathlib.Path({marker!r}).write_text('executed')\n"


# --------------------------------------------------------------------------
# NVIDIA persistence pickles


class _EasyDict(dict):
    pass


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
    raise AssertionError("never called when writing")


@contextlib.contextmanager
def _fake_nvidia_modules():
    """Register ``torch_utils.persistence`` / ``dnnlib.util`` names just long enough to pickle."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in names}
    tu, tp = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, du = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    tp._reconstruct_persistent_obj = _reconstruct_persistent_obj
    du.EasyDict = _EasyDict
    tu.persistence, dn.util = tp, du
    old_fn = (_reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__)
    old_cls = (_EasyDict.__module__, _EasyDict.__qualname__)
    _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__ = (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
    )
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    sys.modules.update({"torch_utils": tu, "torch_utils.persistence": tp, "dnnlib": dn, "dnnlib.util": du})
    try:
        yield
    finally:
        _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__ = old_fn
        _EasyDict.__module__, _EasyDict.__qualname__ = old_cls
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class PersistentNode:
    """A network object as NVIDIA's persistence decorator pickles it."""

    def __init__(self, class_name, params=None, buffers=None, modules=None, init_kwargs=None, extra=None,
                 source="# network source\n"):
        self.class_name = class_name
        self.params = OrderedDict(params or {})
        self.buffers = OrderedDict(buffers or {})
        self.modules = OrderedDict(modules or {})
        self.init_kwargs = init_kwargs or {}
        self.extra = extra or {}
        self.source = source

    def __reduce__(self):
        state = {
            "training": False,
            "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in self.params.items()),
            "_buffers": OrderedDict(self.buffers),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": OrderedDict(),
            "_forward_hooks": OrderedDict(),
            "_forward_pre_hooks": OrderedDict(),
            "_state_dict_hooks": OrderedDict(),
            "_load_state_dict_pre_hooks": OrderedDict(),
            "_modules": OrderedDict(self.modules),
            "_init_args": (),
            "_init_kwargs": _EasyDict(self.init_kwargs),
            **self.extra,
        }
        meta = dict(type="class", version=6, module_src=self.source, class_name=self.class_name, state=state)
        return (_reconstruct_persistent_obj, (meta,))

    def flat(self, prefix=""):
        out = {prefix + k: v for k, v in self.params.items()}
        out.update({prefix + k: v for k, v in self.buffers.items()})
        for k, m in self.modules.items():
            out.update(m.flat(prefix + k + "."))
        return out


def _filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def stylegan2_generator_tree(
    seed=0,
    z_dim=64,
    w_dim=512,
    img_resolution=32,
    channel_base=512,
    channel_max=32,
    mapping_layers=2,
    conv_clamp=None,
    source="# network source\n",
):
    """The G_ema tree of stylegan2-ada-pytorch's ``training/networks.py`` with seeded random tensors."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0, shift=0.0):
        return torch.randn(shape, generator=g) * scale + shift

    def fc(i, o, lr=1.0, bias_init=0.0, activation="linear"):
        return PersistentNode(
            "FullyConnectedLayer",
            params={"weight": rn(o, i) / lr, "bias": rn(o, scale=0.1, shift=bias_init) / lr},
            init_kwargs=dict(in_features=i, out_features=o, activation=activation, lr_multiplier=lr, bias_init=bias_init),
            extra={"activation": activation, "weight_gain": np.float64(lr / np.sqrt(i)), "bias_gain": lr},
            source=source,
        )

    log2 = int(math.log2(img_resolution))
    resolutions = [2**i for i in range(2, log2 + 1)]
    ch = {r: min(channel_base // r, channel_max) for r in resolutions}

    def layer(i, o, res, up):
        return PersistentNode(
            "SynthesisLayer",
            params={"weight": rn(o, i, 3, 3), "noise_strength": rn(scale=0.2), "bias": rn(o, scale=0.2)},
            buffers={"resample_filter": _filter(), "noise_const": rn(res, res)},
            modules={"affine": fc(w_dim, i, bias_init=1.0)},
            init_kwargs=dict(in_channels=i, out_channels=o, w_dim=w_dim, resolution=res, up=up),
            extra={"resolution": res, "up": up, "use_noise": True, "activation": "lrelu", "conv_clamp": conv_clamp,
                   "padding": 1, "act_gain": np.float64(np.sqrt(2))},
            source=source,
        )

    blocks = OrderedDict()
    for r in resolutions:
        mods = OrderedDict()
        params = {}
        if r == 4:
            params["const"] = rn(ch[r], 4, 4)
        else:
            mods["conv0"] = layer(ch[r // 2], ch[r], r, 2)
        mods["conv1"] = layer(ch[r], ch[r], r, 1)
        mods["torgb"] = PersistentNode(
            "ToRGBLayer",
            params={"weight": rn(3, ch[r], 1, 1), "bias": rn(3, scale=0.1)},
            modules={"affine": fc(w_dim, ch[r], bias_init=1.0)},
            extra={"conv_clamp": conv_clamp, "weight_gain": np.float64(1 / np.sqrt(ch[r]))},
            source=source,
        )
        blocks[f"b{r}"] = PersistentNode(
            "SynthesisBlock", params=params, buffers={"resample_filter": _filter()}, modules=mods,
            extra={"in_channels": 0 if r == 4 else ch[r // 2], "resolution": r, "architecture": "skip"},
            source=source,
        )
    synthesis = PersistentNode("SynthesisNetwork", modules=blocks, source=source)
    mapping_mods = OrderedDict()
    feats = [z_dim] + [w_dim] * mapping_layers
    for i in range(mapping_layers):
        mapping_mods[f"fc{i}"] = fc(feats[i], feats[i + 1], lr=0.01, activation="lrelu")
    mapping = PersistentNode(
        "MappingNetwork", buffers={"w_avg": rn(w_dim, scale=0.5)}, modules=mapping_mods, source=source
    )
    init_kwargs = dict(
        z_dim=z_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=3,
        mapping_kwargs=_EasyDict(num_layers=mapping_layers),
        synthesis_kwargs=_EasyDict(
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=conv_clamp
        ),
    )
    return PersistentNode(
        "Generator", modules=OrderedDict(synthesis=synthesis, mapping=mapping), init_kwargs=init_kwargs, source=source
    )


def write_nvidia_pickle(path, generator_tree, protocol=4):
    """Write ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}`` like the training loop does."""
    disc = PersistentNode("Discriminator", params={"b4.out.weight": torch.zeros(1, 8)}, source=generator_tree.source)
    data = dict(
        G=generator_tree, D=disc, G_ema=generator_tree, augment_pipe=None,
        training_set_kwargs=_EasyDict(path="ffhq.zip", resolution=generator_tree.init_kwargs["img_resolution"]),
    )
    with _fake_nvidia_modules():
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    return Path(path)


# --------------------------------------------------------------------------
# HyperInverter checkpoints (pSp-style encoder names)

IRSE50 = [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]


def _bn(sd, p, c, rn):
    sd[p + ".weight"] = 1 + rn(c, scale=0.1)
    sd[p + ".bias"] = rn(c, scale=0.1)
    sd[p + ".running_mean"] = rn(c, scale=0.1)
    sd[p + ".running_var"] = 1 + rn(c, scale=0.1).abs()
    sd[p + ".num_batches_tracked"] = torch.tensor(1000)


def _conv_scale(fan_in):
    return 1.0 / math.sqrt(fan_in)


def irse50_state_dict(rn):
    """Keys of pSp's IR-SE-50 backbone: input_layer.*, body.<unit>.{shortcut_layer,res_layer}.*"""
    sd = {}
    sd["input_layer.0.weight"] = rn(64, 3, 3, 3, scale=_conv_scale(27))
    _bn(sd, "input_layer.1", 64, rn)
    sd["input_layer.2.weight"] = 0.25 + rn(64, scale=0.05)
    u = 0
    for in_c, depth, n in IRSE50:
        for i in range(n):
            ic = in_c if i == 0 else depth
            p = f"body.{u}"
            if ic != depth:
                sd[p + ".shortcut_layer.0.weight"] = rn(depth, ic, 1, 1, scale=_conv_scale(ic))
                _bn(sd, p + ".shortcut_layer.1", depth, rn)
            _bn(sd, p + ".res_layer.0", ic, rn)
            sd[p + ".res_layer.1.weight"] = rn(depth, ic, 3, 3, scale=_conv_scale(9 * ic))
            sd[p + ".res_layer.2.weight"] = 0.25 + rn(depth, scale=0.05)
            sd[p + ".res_layer.3.weight"] = rn(depth, depth, 3, 3, scale=0.3 * _conv_scale(9 * depth))
            _bn(sd, p + ".res_layer.4", depth, rn)
            sd[p + ".res_layer.5.fc1.weight"] = rn(depth // 16, depth, 1, 1, scale=_conv_scale(depth))
            sd[p + ".res_layer.5.fc2.weight"] = rn(depth, depth // 16, 1, 1, scale=_conv_scale(depth // 16))
            u += 1
    return sd


def w_encoder_state_dict(seed=1):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0):
        return torch.randn(shape, generator=g) * scale

    sd = irse50_state_dict(rn)
    sd["linear.weight"] = rn(512, 512)
    sd["linear.bias"] = rn(512, scale=0.1)
    return sd


def layerwise_encoder_state_dict(n_styles, seed=2):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0):
        return torch.randn(shape, generator=g) * scale

    sd = irse50_state_dict(rn)
    for i in range(n_styles):
        pools = 1 if i < 3 else 2 if i < 7 else 3
        for j in range(pools):
            sd[f"styles.{i}.convs.{2 * j}.weight"] = rn(512, 512, 3, 3, scale=_conv_scale(9 * 512))
            sd[f"styles.{i}.convs.{2 * j}.bias"] = rn(512, scale=0.05)
    sd["latlayer1.weight"] = rn(512, 256, 1, 1, scale=_conv_scale(256))
    sd["latlayer1.bias"] = rn(512, scale=0.05)
    sd["latlayer2.weight"] = rn(512, 128, 1, 1, scale=_conv_scale(128))
    sd["latlayer2.bias"] = rn(512, scale=0.05)
    return sd


def official_target_layers(img_resolution, channel_base, channel_max, include_torgb=True):
    """(name, shape) per predicted layer, in the order of the official weight_shapes table."""
    ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
    out = [("b4.conv1.weight", (ch(4), ch(4), 3, 3))]
    if include_torgb:
        out.append(("b4.torgb.weight", (3, ch(4), 1, 1)))
    r = 8
    while r <= img_resolution:
        out.append((f"b{r}.conv0.weight", (ch(r), ch(r // 2), 3, 3)))
        out.append((f"b{r}.conv1.weight", (ch(r), ch(r), 3, 3)))
        if include_torgb:
            out.append((f"b{r}.torgb.weight", (3, ch(r), 1, 1)))
        r *= 2
    return out


def hypernet_state_dict(layers, hidden_dim, seed=3, out_scale=0.05):
    """``weight_regressors.<b8_conv0_weight>.{fusion,feature_extractor,w1,b1,w2,b2}``."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0):
        return torch.randn(shape, generator=g) * scale

    sd = {}
    for name, shape in layers:
        o, i = shape[0], shape[1]
        k = shape[2] if len(shape) == 4 else 1
        p = "weight_regressors." + name.replace(".", "_")
        sd[p + ".fusion.0.weight"] = rn(512, 1024, 1, 1, scale=_conv_scale(1024))
        sd[p + ".fusion.0.bias"] = rn(512, scale=0.05)
        sd[p + ".feature_extractor.0.weight"] = rn(64, 512, 3, 3, scale=2 * _conv_scale(9 * 512))
        sd[p + ".feature_extractor.0.bias"] = rn(64, scale=0.05)
        sd[p + ".feature_extractor.2.weight"] = rn(64, 64, 4, 4, scale=2 * _conv_scale(16 * 64))
        sd[p + ".feature_extractor.2.bias"] = rn(64, scale=0.05)
        sd[p + ".feature_extractor.4.weight"] = rn(64, 64, 4, 4, scale=2 * _conv_scale(16 * 64))
        sd[p + ".feature_extractor.4.bias"] = rn(64, scale=0.05)
        sd[p + ".feature_extractor.6.weight"] = rn(hidden_dim, 64, 4, 4, scale=2 * _conv_scale(16 * 64))
        sd[p + ".feature_extractor.6.bias"] = rn(hidden_dim, scale=0.05)
        sd[p + ".w1"] = rn(hidden_dim, i * hidden_dim, scale=_conv_scale(hidden_dim))
        sd[p + ".b1"] = rn(i * hidden_dim, scale=0.1)
        sd[p + ".w2"] = rn(hidden_dim, o * k * k, scale=out_scale * _conv_scale(hidden_dim))
        sd[p + ".b2"] = rn(o * k * k, scale=out_scale)
    return sd


def write_hyperinverter_checkpoint(path, img_resolution=32, channel_base=512, channel_max=32, hidden_dim=8, seed=10,
                                   include_w_encoder=True):
    """An official-format checkpoint: ``{"state_dict": net.state_dict(), "opts": vars(opts)}``."""
    n_styles = 2 * int(math.log2(img_resolution)) - 2
    sd = {}
    if include_w_encoder:
        sd.update({"w_encoder." + k: v for k, v in w_encoder_state_dict(seed).items()})
    sd.update({"w_bar_encoder." + k: v for k, v in layerwise_encoder_state_dict(n_styles, seed + 1).items()})
    layers = official_target_layers(img_resolution, channel_base, channel_max)
    sd.update({"hypernet." + k: v for k, v in hypernet_state_dict(layers, hidden_dim, seed + 2).items()})
    sd["discriminator.b4.out.weight"] = torch.randn(1, 512)
    opts = dict(
        dataset_type="ffhq_encode", encoder_type="LayerWiseEncoder", target_shape_name="conv_without_bias",
        hidden_dim=hidden_dim, output_size=img_resolution, batch_size=2, hyper_adv_lambda=0.005,
    )
    torch.save({"state_dict": sd, "opts": opts}, path)
    return Path(path)


def write_w_encoder_file(path, seed=10):
    """pSp-style separate W-encoder file: ``{"state_dict": {"encoder.*": ...}, "opts": ...}``."""
    sd = {"encoder." + k: v for k, v in w_encoder_state_dict(seed).items()}
    torch.save({"state_dict": sd, "opts": {"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}}, path)
    return Path(path)
