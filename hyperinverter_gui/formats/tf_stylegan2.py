"""Convert NVIDIA's TensorFlow StyleGAN2 network pickles without TensorFlow.

The original StyleGAN2 release (``stylegan2-ffhq-config-f.pkl`` and friends)
pickles ``dnnlib.tflib.network.Network`` objects, usually as a tuple
``(G, D, Gs)``; ``Gs`` is the averaged generator meant for inference. Each
Network pickles a plain dict (its ``__getstate__``): ``version``, ``name``,
``static_kwargs`` (the build function's keyword arguments: resolution,
fmap_base, ...), ``components`` (sub-networks, for a generator ``mapping`` and
``synthesis``), ``build_module_src`` (Python source that TensorFlow's
``__setstate__`` would ``exec``), ``build_func_name`` and ``variables``
(``[(name, numpy array), ...]``).

A restricted unpickler resolves the Network class to a stand-in that keeps the
state as data and drops the source unread, and otherwise only rebuilds numpy
arrays and plain containers; any other global is refused before anything
runs. The TF variables are then renamed and re-laid out to the parameter
names of stylegan2-ada-pytorch's ``Generator`` (the names our
``models.stylegan2.Generator`` uses):

* dense weights are stored ``[in, out]`` -> transposed to ``[out, in]``;
* convolution weights are stored ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``;
  the up-sampling convolutions (``Conv0_up``) are additionally flipped in both
  spatial axes, because TF applies them as a true convolution through
  ``conv2d_transpose`` while the PyTorch layers store correlation kernels;
* the modulation bias is stored without its constant ``+1`` -> add 1;
* per-layer noise lives in ``synthesis/noise<i>`` ``[1, 1, R, R]`` (layer
  index ``i``: 0 for the 4x4 conv, then ``2*log2(R)-5`` / ``2*log2(R)-4``
  for each block's first / second conv) and its ``noise_strength`` under the
  layer's own scope;
* ``dlatent_avg`` becomes ``mapping.w_avg``; the mapping learning-rate
  multiplier (``mapping_lrmul``, 0.01) and all sizes come from ``static_kwargs``;
* the resampling filter (``resample_kernel``, default ``[1, 3, 3, 1]``) is
  stored as the normalised 2-D outer product in every ``resample_filter``.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hyperinverter_gui.errors import (
    ModelFileError,
    ModelStructureError,
    UnsafeModelFileError,
)
from hyperinverter_gui.formats import sniff
from hyperinverter_gui.formats.safe_pickle import AllowListUnpickler, common_globals
from hyperinverter_gui.networks.stylegan2 import GeneratorConfig

TF_NETWORK_MODULE = "dnnlib.tflib.network"
MAX_NETWORK_DEPTH = 16  # Gs -> mapping/synthesis: 1 level in the official files
MAX_NETWORKS = 1_000

# Keyword arguments of the TF build functions that only matter for training,
# for TF graph construction or for random noise; they do not change the
# function a converted generator computes.
_IGNORED_KWARGS = {
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
    "dlatent_avg_beta", "w_avg_beta", "style_mixing_prob", "is_training", "is_validation",
    "is_template_graph", "force_clean_graph", "return_dlatents", "components", "mapping_func",
    "synthesis_func", "randomize_noise", "fused_modconv", "dtype", "num_fp16_res", "structure",
    "dlatent_broadcast",
}


@dataclass
class TFNetwork:
    """One pickled ``dnnlib.tflib`` Network, reduced to data."""

    name: str
    version: int
    build_func_name: str
    static_kwargs: dict[str, Any] = field(default_factory=dict)
    components: dict[str, "TFNetwork"] = field(default_factory=dict)
    variables: dict[str, np.ndarray] = field(default_factory=dict)

    def all_variables(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Own variables plus those of every component, under ``<component>/``.

        Each network object is visited once, at most ``MAX_NETWORK_DEPTH`` levels down: a
        component shared through the pickle's memo would otherwise make a small file expand
        exponentially (the same limit as for stylegan2-ada pickles).
        """
        out: dict[str, np.ndarray] = {}
        seen: set[int] = set()
        stack: list[tuple[TFNetwork, str, int]] = [(self, prefix, 0)]
        while stack:
            net, pre, depth = stack.pop()
            if id(net) in seen:
                raise ModelStructureError(
                    f"malformed TensorFlow network pickle: component {pre.rstrip('/')[:80]} is the same object as "
                    "another one; a network never shares components (a crafted or damaged file)")
            seen.add(id(net))
            if depth > MAX_NETWORK_DEPTH or len(seen) > MAX_NETWORKS:
                raise ModelStructureError("malformed TensorFlow network pickle: components nested too deeply")
            out.update({pre + k: v for k, v in net.variables.items()})
            for cname, comp in net.components.items():
                stack.append((comp, f"{pre}{cname}/", depth + 1))
        return out


class _NetworkStandIn:
    """Takes the place of ``dnnlib.tflib.network.Network`` while unpickling.

    ``__setstate__`` receives the dict the real class would use to rebuild a
    TensorFlow graph; this one only checks and records its data fields.
    """

    network: TFNetwork | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Unpickling creates it without calling __init__; a call means a crafted pickle.
        if args or kwargs:
            raise UnsafeModelFileError(
                "refused to load: the pickle calls the TensorFlow Network class with arguments. "
                "Nothing from the file was executed."
            )

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ModelFileError("malformed TensorFlow network object in pickle (state is not a dict)")
        name = str(state.get("name") or "?")
        version = state.get("version")
        if not isinstance(version, int):
            raise ModelFileError(f"malformed TensorFlow network '{name}' in pickle (no version)")
        components = state.get("components") or {}
        static_kwargs = state.get("static_kwargs") or {}
        variables = state.get("variables") or []
        if not isinstance(components, dict) or not isinstance(static_kwargs, dict):
            raise ModelFileError(f"malformed TensorFlow network '{name}' in pickle")
        comps: dict[str, TFNetwork] = {}
        for cname, comp in components.items():
            if not isinstance(comp, _NetworkStandIn) or comp.network is None:
                raise ModelFileError(f"component '{cname}' of TensorFlow network '{name}' is not a network")
            comps[str(cname)] = comp.network
        if not isinstance(variables, (list, tuple)):
            raise ModelFileError(f"malformed variable list in TensorFlow network '{name}'")
        vars_: dict[str, np.ndarray] = {}
        for item in variables:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise ModelFileError(f"malformed variable entry in TensorFlow network '{name}'")
            value = item[1]
            if isinstance(value, np.generic):
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
                raise ModelFileError(f"variable {item[0]} of '{name}' is not a numeric array")
            vars_[item[0]] = value
        # state["build_module_src"] is Python source the original class exec()s; it is dropped unread.
        self.network = TFNetwork(
            name=name,
            version=version,
            build_func_name=str(state.get("build_func_name") or ""),
            static_kwargs=dict(static_kwargs),
            components=comps,
            variables=vars_,
        )


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    # Protocol-5 numpy pickles; only numeric dtypes are accepted.
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub" or not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafeModelFileError("refused to load: unexpected array buffer in pickle")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    **common_globals(),
    (TF_NETWORK_MODULE, "Network"): _NetworkStandIn,
}
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer


class TFNetworkUnpickler(AllowListUnpickler):
    """Resolves only the allow-list above; refuses every other global before it runs."""

    allowed = _ALLOWED
    kind = "TensorFlow network pickle"

    def refuse(self, module: str, name: str) -> None:
        if module == "torch_utils.persistence":
            raise ModelFileError(
                "this is a PyTorch network pickle (stylegan2-ada-pytorch format), not a TensorFlow one; "
                "load it as an NVIDIA stylegan2-ada-pytorch generator"
            )
        super().refuse(module, name)


def is_tf_network_pickle(path: str | Path) -> bool:
    """Cheap check from the first bytes: a pickle that names ``dnnlib.tflib.network``."""
    path = Path(path)
    try:
        if sniff.sniff_file(path) != "pickle":
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except (ModelFileError, OSError):
        return False
    # The first object of such a pickle is a Network, so its class name comes first.
    return TF_NETWORK_MODULE.encode() in head


def read_tf_pickle(path: str | Path) -> Any:
    """Unpickle a TF network pickle into ``TFNetwork`` objects and plain containers."""
    path = Path(path)
    kind = sniff.sniff_file(path)  # raises for missing / empty / HTML files
    if kind in ("zip", "torch-legacy"):
        raise ModelFileError(
            f"{path.name} is a PyTorch checkpoint (.pt), not a TensorFlow StyleGAN2 network pickle"
        )
    if kind != "pickle":
        raise ModelFileError(f"{path.name} is not a TensorFlow network pickle (unrecognised file contents)")
    try:
        with open(path, "rb") as f:
            data = TFNetworkUnpickler(f).load()
    except ModelFileError as e:
        if type(e) is ModelFileError and not str(e).startswith(path.name):
            raise ModelFileError(f"{path.name}: {e}") from None
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, RuntimeError, MemoryError) as e:
        raise ModelFileError(f"{path.name} is truncated or corrupt ({type(e).__name__}: {e})") from None
    return _unwrap(data, path.name)


def _unwrap(obj: Any, source: str) -> Any:
    if isinstance(obj, _NetworkStandIn):
        if obj.network is None:
            raise ModelFileError(f"{source}: a TensorFlow network object in the pickle has no state")
        return obj.network
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unwrap(o, source) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, source) for k, v in obj.items()}
    return obj


def _pick_generator(data: Any, source: str) -> TFNetwork:
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetwork) for n in data):
        return data[2]  # (G, D, Gs): Gs is the moving average used for inference
    if isinstance(data, TFNetwork):
        if data.components.keys() >= {"mapping", "synthesis"}:
            return data  # a generator pickled on its own
        raise ModelFileError(f"{source} holds a single TensorFlow network '{data.name}', which is not a generator")
    if isinstance(data, dict) and isinstance(data.get("Gs"), TFNetwork):
        return data["Gs"]
    if isinstance(data, (tuple, list)):
        found = ", ".join(n.name if isinstance(n, TFNetwork) else type(n).__name__ for n in data)
        raise ModelFileError(f"{source} has no generator 'Gs' (expected (G, D, Gs), found: {found or 'nothing'})")
    raise ModelFileError(f"{source} has no generator 'Gs' (found a {type(data).__name__})")


def _kwargs_of(gs: TFNetwork) -> dict[str, Any]:
    """Gs's static kwargs, completed by those its components were built with."""
    kw: dict[str, Any] = {}
    for comp in ("mapping", "synthesis"):
        if comp in gs.components:
            kw.update(gs.components[comp].static_kwargs)
    kw.update(gs.static_kwargs)
    return kw


def _resample_filter(kernel: Any) -> torch.Tensor:
    k = torch.tensor([1.0, 1.0] if kernel is None else [float(v) for v in kernel], dtype=torch.float64)
    if k.ndim == 1:
        k = torch.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 or float(k.sum()) == 0:
        raise ModelFileError(f"unsupported resample_kernel {kernel!r}")
    return (k / k.sum()).float()


def tf_generator_config(gs: TFNetwork, source: str = "generator") -> tuple[GeneratorConfig, torch.Tensor]:
    """Architecture and resampling filter of a TF StyleGAN2 generator, from its static kwargs."""
    kw = _kwargs_of(gs)

    def get(name: str, default: Any) -> Any:
        v = kw.get(name, default)
        return default if v is None else v

    def unsupported(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: {what} cannot be converted to the PyTorch StyleGAN2 generator")

    if get("mapping_nonlinearity", "lrelu") != "lrelu" or get("nonlinearity", "lrelu") != "lrelu":
        raise unsupported("a generator with a non-lrelu activation")
    if not get("normalize_latents", True):
        raise unsupported("a mapping network without latent normalisation")
    architecture = str(get("architecture", "skip"))
    synthesis = gs.components.get("synthesis")
    if synthesis is not None and synthesis.build_func_name == "G_synthesis_stylegan_revised":
        architecture = "orig"  # configs B-D: progressive growing, fully grown = one final toRGB
    if architecture not in ("skip", "orig"):
        raise unsupported(f"the '{architecture}' synthesis architecture")
    res = int(get("resolution", 1024))
    if res < 4 or res & (res - 1):
        raise ModelFileError(f"{source}: resolution must be a power of two >= 4, got {res}")
    fmap_base = float(get("fmap_base", 16 << 10))
    fmap_decay = float(get("fmap_decay", 1.0))
    fmap_min, fmap_max = int(get("fmap_min", 1)), int(get("fmap_max", 512))

    def nf(stage: int) -> int:
        return int(np.clip(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_min, fmap_max))

    if kw.get("fmap_const") is not None and int(kw["fmap_const"]) != nf(1):
        raise unsupported("a constant input with its own channel count (fmap_const)")

    log2 = int(math.log2(res))
    cfg = GeneratorConfig(
        z_dim=int(get("latent_size", 512)),
        c_dim=int(get("label_size", 0)),
        w_dim=int(get("dlatent_size", 512)),
        img_resolution=res,
        img_channels=int(get("num_channels", 3)),
        mapping_layers=int(get("mapping_layers", 8)),
        mapping_lr_multiplier=float(get("mapping_lrmul", 0.01)),
        channels={2**s: nf(s - 1) for s in range(2, log2 + 1)},
        conv_clamp=None if kw.get("conv_clamp") is None else float(kw["conv_clamp"]),
        architecture=architecture,
    )
    # None in the TF code means nearest-neighbour resampling, i.e. a [1, 1] filter.
    kernel = kw["resample_kernel"] if "resample_kernel" in kw else [1, 3, 3, 1]
    return cfg, _resample_filter(kernel)


def convert_tf_generator(gs: TFNetwork, source: str = "generator") -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """NVIDIA-named PyTorch state dict (and config) of a TF StyleGAN2 generator network."""
    v = gs.all_variables()
    if gs.build_func_name == "G_style" or any(k.endswith("StyleMod/weight") for k in v):
        raise ModelFileError(f"{source} is a StyleGAN (version 1) generator; only StyleGAN2 networks are supported")
    if gs.version < 4:
        raise ModelFileError(
            f"{source}: TensorFlow network format version {gs.version} is too old (StyleGAN2 pickles are version 4)"
        )
    if not gs.components.keys() >= {"mapping", "synthesis"}:
        raise ModelFileError(f"{source}: generator '{gs.name}' lacks its mapping/synthesis sub-networks")
    if "synthesis/4x4/Conv/mod_weight" not in v:
        raise ModelFileError(f"{source}: generator '{gs.name}' has no StyleGAN2 synthesis layers (4x4/Conv/mod_weight)")
    if "mapping/LabelConcat/weight" in v:
        raise ModelFileError(
            f"{source}: conditional generators of the original StyleGAN2 release (label concatenation) "
            "cannot be converted exactly"
        )
    if "synthesis/lod" in v and float(np.asarray(v.get("lod", v["synthesis/lod"]))) != 0.0:
        raise ModelFileError(f"{source}: the generator is not fully grown (lod != 0); it cannot be converted")
    cfg, filt = tf_generator_config(gs, source)
    # Hidden and label-embedding widths: the TF defaults differ between releases, the weights do not lie.
    if cfg.mapping_layers > 1 and "mapping/Dense0/weight" in v:
        hidden = int(v["mapping/Dense0/weight"].shape[-1])
        cfg.mapping_layer_features = None if hidden == cfg.w_dim else hidden
    if cfg.c_dim and "mapping/LabelEmbed/weight" in v:
        cfg.mapping_embed_features = int(v["mapping/LabelEmbed/weight"].shape[-1])
    kw = _kwargs_of(gs)
    use_noise = kw.get("use_noise", True) is not False

    def var(name: str) -> torch.Tensor:
        if name not in v:
            raise ModelFileError(f"{source}: TensorFlow variable '{name}' is missing")
        return torch.from_numpy(np.array(v[name], dtype=np.float32))

    def conv(name: str, flip: bool = False) -> torch.Tensor:
        w = var(name)  # [kh, kw, in, out]
        if w.ndim != 4:
            raise ModelFileError(f"{source}: '{name}' should be a 4-D kernel, has shape {list(w.shape)}")
        if flip:
            w = w.flip([0, 1])
        return w.permute(3, 2, 0, 1).contiguous()

    def dense(name: str) -> torch.Tensor:
        w = var(name)  # [in, out]
        if w.ndim != 2:
            raise ModelFileError(f"{source}: '{name}' should be a matrix, has shape {list(w.shape)}")
        return w.t().contiguous()

    sd: dict[str, torch.Tensor] = {}
    sd["mapping.w_avg"] = var("dlatent_avg") if "dlatent_avg" in v else torch.zeros(cfg.w_dim)
    if cfg.c_dim:
        sd["mapping.embed.weight"] = dense("mapping/LabelEmbed/weight")
        sd["mapping.embed.bias"] = var("mapping/LabelEmbed/bias")
    for i in range(cfg.mapping_layers):
        sd[f"mapping.fc{i}.weight"] = dense(f"mapping/Dense{i}/weight")
        sd[f"mapping.fc{i}.bias"] = var(f"mapping/Dense{i}/bias")

    def modconv(dst: str, src: str, noise_idx: int, res: int, flip: bool = False) -> None:
        sd[f"{dst}.weight"] = conv(f"{src}/weight", flip)
        sd[f"{dst}.bias"] = var(f"{src}/bias")
        sd[f"{dst}.affine.weight"] = dense(f"{src}/mod_weight")
        sd[f"{dst}.affine.bias"] = var(f"{src}/mod_bias") + 1
        sd[f"{dst}.resample_filter"] = filt.clone()
        if use_noise or f"{src}/noise_strength" in v:
            sd[f"{dst}.noise_strength"] = var(f"{src}/noise_strength").reshape([])
            sd[f"{dst}.noise_const"] = var(f"synthesis/noise{noise_idx}").reshape(res, res)
        else:
            sd[f"{dst}.noise_strength"] = torch.zeros([])
            sd[f"{dst}.noise_const"] = torch.zeros(res, res)

    log2 = int(math.log2(cfg.img_resolution))
    for s in range(2, log2 + 1):
        r = 2**s
        tf_block = f"synthesis/{r}x{r}"
        pt_block = f"synthesis.b{r}"
        sd[f"{pt_block}.resample_filter"] = filt.clone()
        if r == 4:
            const = var("synthesis/4x4/Const/const")
            sd[f"{pt_block}.const"] = const.reshape(const.shape[-3:])
            modconv(f"{pt_block}.conv1", "synthesis/4x4/Conv", 0, r)
        else:
            modconv(f"{pt_block}.conv0", f"{tf_block}/Conv0_up", 2 * s - 5, r, flip=True)
            modconv(f"{pt_block}.conv1", f"{tf_block}/Conv1", 2 * s - 4, r)
        if cfg.architecture == "skip" or r == cfg.img_resolution:
            rgb = f"{tf_block}/ToRGB"
            if f"{rgb}/weight" not in v and f"synthesis/ToRGB_lod{log2 - s}/weight" in v:
                rgb = f"synthesis/ToRGB_lod{log2 - s}"  # progressive-growing naming (configs B-D)
            sd[f"{pt_block}.torgb.weight"] = conv(f"{rgb}/weight")
            sd[f"{pt_block}.torgb.bias"] = var(f"{rgb}/bias")
            sd[f"{pt_block}.torgb.affine.weight"] = dense(f"{rgb}/mod_weight")
            sd[f"{pt_block}.torgb.affine.bias"] = var(f"{rgb}/mod_bias") + 1
    _check_unknown_kwargs(kw, source)
    return cfg, sd


_USED_KWARGS = {
    "latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers", "mapping_fmaps",
    "mapping_lrmul", "mapping_nonlinearity", "normalize_latents", "label_fmaps", "fmap_base", "fmap_decay",
    "fmap_min", "fmap_max", "fmap_const", "architecture", "nonlinearity", "resample_kernel", "conv_clamp", "use_noise",
}


def _check_unknown_kwargs(kw: Mapping[str, Any], source: str) -> None:
    unknown = sorted(set(kw) - _USED_KWARGS - _IGNORED_KWARGS)
    if unknown:
        raise ModelFileError(
            f"{source}: unknown generator setting(s) {', '.join(unknown[:5])}; the network may not convert exactly"
        )


def load_tf_generator(path: str | Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """``(config, NVIDIA-named state dict)`` of ``Gs`` in a TensorFlow StyleGAN2 network pickle.

    Feed the result to ``loading.generator_from_state_dict(cfg, sd, source)``.
    """
    path = Path(path)
    data = read_tf_pickle(path)
    gs = _pick_generator(data, path.name)
    del data  # drop G and D
    try:
        return convert_tf_generator(gs, path.name)
    except ModelStructureError as e:
        raise ModelStructureError(f"{path.name}: {e}") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{path.name}: generator settings are invalid ({e})") from None
