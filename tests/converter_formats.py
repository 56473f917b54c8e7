"""Writers for the two foreign generator formats, used by the converter tests.

Both take the NVIDIA-named tensors of one generator (``PersistentNode.flat()``
of ``official_formats.stylegan2_generator_tree``) and write the same numbers
in the other format's own layout, spelled out here independently of the
package under test:

* NVIDIA StyleGAN2 TensorFlow pickles: a tuple ``(G, D, Gs)`` of
  ``dnnlib.tflib.network.Network`` objects, each pickled as the dict of its
  ``__getstate__`` (version, name, static_kwargs, components, build_module_src,
  build_func_name, variables = [(name, ndarray), ...]);
* rosinality stylegan2-pytorch ``.pt`` files: ``{"g_ema": state_dict,
  "latent_avg": w_avg}``.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

# --------------------------------------------------------------------------
# TensorFlow (dnnlib.tflib) network pickles


class Network:
    """What ``dnnlib.tflib.network.Network`` pickles: its ``__getstate__`` dict, nothing else."""

    def __init__(self, name, build_func_name, static_kwargs, variables, components=None,
                 source="# TensorFlow network source\n"):
        self.state = {
            "version": 4,
            "name": name,
            "static_kwargs": dict(static_kwargs),
            "components": dict(components or {}),
            "build_module_src": source,
            "build_func_name": build_func_name,
            "variables": [(k, np.array(v, dtype=np.float32)) for k, v in variables.items()],
        }

    def __getstate__(self):
        return self.state

    def __setstate__(self, state):  # pragma: no cover - only used when reading back without the package
        self.state = state


@contextlib.contextmanager
def _fake_tflib_module():
    """Register ``dnnlib.tflib.network.Network`` just long enough to pickle."""
    names = ["dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"]
    saved = {n: sys.modules.get(n) for n in names}
    dn, tl, nw = (types.ModuleType(n) for n in names)
    nw.Network = Network
    dn.tflib, tl.network = tl, nw
    old = (Network.__module__, Network.__qualname__)
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    sys.modules.update(dict(zip(names, (dn, tl, nw))))
    try:
        yield
    finally:
        Network.__module__, Network.__qualname__ = old
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _np(t):
    return t.detach().to(torch.float32).numpy().copy()


def tf_variables(nv, architecture="skip", revised=False):
    """(mapping vars, synthesis vars, own vars of G) in TF names and layouts from NVIDIA-named tensors."""
    res = max(int(k.split(".")[1][1:]) for k in nv if k.startswith("synthesis.b"))
    log2 = int(math.log2(res))
    mapping = {}
    i = 0
    while f"mapping.fc{i}.weight" in nv:
        mapping[f"Dense{i}/weight"] = _np(nv[f"mapping.fc{i}.weight"]).T  # [in, out]
        mapping[f"Dense{i}/bias"] = _np(nv[f"mapping.fc{i}.bias"])
        i += 1
    syn = {}

    def layer(scope, p, noise_idx, up=False):
        w = nv[p + ".weight"]  # [out, in, kh, kw] correlation kernel
        if up:
            w = w.flip([2, 3])  # TF runs the up-sampling conv as a true convolution
        syn[f"{scope}/weight"] = _np(w.permute(2, 3, 1, 0))  # [kh, kw, in, out]
        syn[f"{scope}/mod_weight"] = _np(nv[p + ".affine.weight"]).T
        syn[f"{scope}/mod_bias"] = _np(nv[p + ".affine.bias"]) - 1
        syn[f"{scope}/noise_strength"] = _np(nv[p + ".noise_strength"]).reshape(())
        syn[f"{scope}/bias"] = _np(nv[p + ".bias"])
        syn[f"noise{noise_idx}"] = _np(nv[p + ".noise_const"])[None, None]

    def torgb(scope, p):
        syn[f"{scope}/weight"] = _np(nv[p + ".weight"].permute(2, 3, 1, 0))
        syn[f"{scope}/mod_weight"] = _np(nv[p + ".affine.weight"]).T
        syn[f"{scope}/mod_bias"] = _np(nv[p + ".affine.bias"]) - 1
        syn[f"{scope}/bias"] = _np(nv[p + ".bias"])

    if revised:
        syn["lod"] = np.float32(0.0)
    syn["4x4/Const/const"] = _np(nv["synthesis.b4.const"])[None]
    layer("4x4/Conv", "synthesis.b4.conv1", 0)
    for s in range(2, log2 + 1):
        r = 2**s
        if s > 2:
            layer(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", 2 * s - 5, up=True)
            layer(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1", 2 * s - 4)
        if architecture == "skip" or s == log2:
            torgb(f"ToRGB_lod{log2 - s}" if revised else f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
    own = {"lod": np.float32(0.0), "dlatent_avg": _np(nv["mapping.w_avg"])}
    return mapping, syn, own


def tf_generator(nv, name="Gs", static_kwargs=None, architecture="skip", revised=False,
                 source="# TensorFlow network source\n"):
    mapping, syn, own = tf_variables(nv, architecture, revised)
    kw = dict(static_kwargs or {})
    num_ws = 2 * int(math.log2(kw.get("resolution", 1024))) - 2
    comps = {
        "synthesis": Network("G_synthesis", "G_synthesis_stylegan_revised" if revised else "G_synthesis_stylegan2",
                             kw, syn, source=source),
        "mapping": Network("G_mapping", "G_mapping", dict(kw, dlatent_broadcast=num_ws), mapping, source=source),
    }
    return Network(name, "G_main", kw, own, comps, source=source)


def tf_static_kwargs(nv, channel_base, channel_max, **extra):
    """The kwargs the TF training loop would have stored for this generator."""
    res = max(int(k.split(".")[1][1:]) for k in nv if k.startswith("synthesis.b"))
    n_map = len([k for k in nv if k.startswith("mapping.fc") and k.endswith(".weight")])
    kw = dict(
        num_channels=3,
        resolution=res,
        label_size=0,
        fmap_base=channel_base // 2,  # TF: nf(stage) = fmap_base / 2**stage, stage = log2(res) - 1
        fmap_max=channel_max,
        latent_size=int(nv["mapping.fc0.weight"].shape[1]),
        dlatent_size=int(nv[f"mapping.fc{n_map - 1}.weight"].shape[0]),
        mapping_layers=n_map,
    )
    kw.update(extra)
    return kw


def write_tf_pickle(path, networks, protocol=4):
    """Pickle ``networks`` (e.g. the tuple (G, D, Gs)) as the TF release did."""
    with _fake_tflib_module():
        data = pickle.dumps(networks, protocol=protocol)
    Path(path).write_bytes(data)
    return Path(path)


def tf_discriminator(seed=0, source="# TensorFlow network source\n"):
    rng = np.random.default_rng(seed)
    return Network("D", "D_stylegan2", {"resolution": 32, "num_channels": 3, "label_size": 0},
                   {"Output/weight": rng.standard_normal((16, 1)), "Output/bias": np.zeros(1)}, source=source)


# --------------------------------------------------------------------------
# rosinality stylegan2-pytorch generators


def _blur_kernel_times_4():
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * 4  # make_kernel([1,3,3,1]) * factor**2


def rosinality_state_dict(nv):
    """The ``g_ema`` state dict rosinality's Generator would have for these numbers."""
    res = max(int(k.split(".")[1][1:]) for k in nv if k.startswith("synthesis.b"))
    log2 = int(math.log2(res))
    g = {}
    i = 0
    while f"mapping.fc{i}.weight" in nv:
        g[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"].clone()
        g[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"].clone()
        i += 1
    g["input.input"] = nv["synthesis.b4.const"][None].clone()

    def styled(dst, p, upsample):
        g[f"{dst}.conv.weight"] = nv[p + ".weight"][None].clone()  # [1, out, in, k, k]
        if upsample:
            g[f"{dst}.conv.blur.kernel"] = _blur_kernel_times_4()
        g[f"{dst}.conv.modulation.weight"] = nv[p + ".affine.weight"].clone()
        g[f"{dst}.conv.modulation.bias"] = nv[p + ".affine.bias"].clone()
        g[f"{dst}.noise.weight"] = nv[p + ".noise_strength"].reshape(1).clone()
        g[f"{dst}.activate.bias"] = nv[p + ".bias"].clone()

    def rgb(dst, p, upsample):
        if upsample:
            g[f"{dst}.upsample.kernel"] = _blur_kernel_times_4()
        g[f"{dst}.bias"] = nv[p + ".bias"].reshape(1, -1, 1, 1).clone()
        g[f"{dst}.conv.weight"] = nv[p + ".weight"][None].clone()
        g[f"{dst}.conv.modulation.weight"] = nv[p + ".affine.weight"].clone()
        g[f"{dst}.conv.modulation.bias"] = nv[p + ".affine.bias"].clone()

    styled("conv1", "synthesis.b4.conv1", False)
    rgb("to_rgb1", "synthesis.b4.torgb", False)
    noises = {0: nv["synthesis.b4.conv1.noise_const"]}
    for j, s in enumerate(range(3, log2 + 1)):
        r = 2**s
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", True)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", False)
        rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb", True)
        noises[2 * j + 1] = nv[f"synthesis.b{r}.conv0.noise_const"]
        noises[2 * j + 2] = nv[f"synthesis.b{r}.conv1.noise_const"]
    for k in sorted(noises):
        g[f"noises.noise_{k}"] = noises[k][None, None].clone()
    return g


def write_rosinality_pt(path, nv, latent_avg=True, **extra):
    """``torch.save({"g_ema": ..., "latent_avg": ...})`` like rosinality's convert_weight.py."""
    ckpt = {"g_ema": rosinality_state_dict(nv)}
    if latent_avg:
        ckpt["latent_avg"] = nv["mapping.w_avg"].clone()
    ckpt.update(extra)
    torch.save(ckpt, path)
    return Path(path)
