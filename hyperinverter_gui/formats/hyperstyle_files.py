"""HyperStyle backend: load the authors' released files and invert photos with them.

Files (see the HyperStyle README):

* ``hyperstyle_ffhq.pt``: ``{"state_dict": {"hypernet.*", "decoder.*"}, "opts": {...},
  "latent_avg": [num_ws, 512]}``; ``decoder.*`` is a rosinality StyleGAN2 generator;
* ``faces_w_encoder.pt``: a pSp checkpoint whose ``encoder.*`` is the W encoder
  (IR-SE-50 + equalised linear; its own ``decoder.*`` is not used).

Nothing from the files is executed (``torch.load(weights_only=True)``); the
networks are ours (``models/hyperstyle.py``), built from the files' tensor
names and shapes, with the generator converted to our parameter names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from hyperinverter_gui.errors import ModelFileError, ModelMismatchError
from hyperinverter_gui.formats import checkpoints, guard
from hyperinverter_gui.formats.loading import generator_from_state_dict, load_strict
from hyperinverter_gui.formats.rosinality import convert_rosinality_state_dict
from hyperinverter_gui.networks.construction import uninitialized
from hyperinverter_gui.networks.encoders import detect_backbone
from hyperinverter_gui.networks.hyperstyle import (
    FEATURE_RESOLUTION,
    HYPERNET_TYPES,
    INPUT_RESOLUTION,
    MAX_ITERATIONS,
    SHARED_LAYER_INDICES,
    HyperStyle,
    HyperStyleConfig,
    TunedLayer,
    is_torgb_index,
    num_hypernet_outputs,
    stack_output_size,
    synthesis_name,
)
from hyperinverter_gui.networks.stylegan2 import Generator

__all__ = ["HyperStyle", "hyperstyle_config", "load_hyperstyle"]

BACKEND_NAME = "hyperstyle"
_SHARED_KEYS = ("w1", "b1", "w2", "b2")


# --------------------------------------------------------------------------
# Configuration from the checkpoint


def _parse_layers(value: Any, n_outputs: int, source: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return list(range(n_outputs))  # upstream: empty string = every layer
        parts = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ModelFileError(f"{source}: opts.layers_to_tune is a {type(value).__name__}, not a list of layers")
    try:
        return sorted({int(p) for p in parts})
    except (TypeError, ValueError):
        raise ModelFileError(f"{source}: opts.layers_to_tune={value!r} is not a comma-separated list of integers") from None


def _conv_channels(sd: Mapping[str, torch.Tensor], prefix: str, source: str) -> tuple[int, ...]:
    chans: list[int] = []
    j = 0
    while f"{prefix}convs.{2 * j}.weight" in sd:
        w = sd[f"{prefix}convs.{2 * j}.weight"]
        if w.ndim != 4 or tuple(w.shape[2:]) != (3, 3):
            raise ModelMismatchError(f"{source}: {prefix}convs.{2 * j}.weight has shape {list(w.shape)}, expected a 3x3 conv")
        if chans and int(w.shape[1]) != chans[-1]:
            raise ModelMismatchError(f"{source}: {prefix}convs.{2 * j}.weight reads {w.shape[1]} channels, "
                                     f"the previous conv makes {chans[-1]}")
        if not chans:
            chans.append(int(w.shape[1]))
        chans.append(int(w.shape[0]))
        j += 1
    if not chans:
        raise ModelFileError(f"{source}: refinement block {prefix[:-1]} has no conv stack (convs.0.weight)")
    return tuple(chans)


def hyperstyle_config(
    hypernet_sd: Mapping[str, torch.Tensor],
    opts: Mapping[str, Any] | None,
    generator: Generator,
    source: str = "HyperStyle checkpoint",
    w_backbone: str = "ir_se",
) -> HyperStyleConfig:
    """Architecture of a HyperStyle hypernetwork from its ``hypernet.*`` tensors (prefix removed),
    cross-checked with the stored training options and the generator."""
    res = generator.img_resolution
    n_outputs = num_hypernet_outputs(res)
    shapes = {k: tuple(int(s) for s in v) for k, v in generator.synthesis.weight_shapes().items()}
    opts = dict(opts) if isinstance(opts, Mapping) else {}

    if opts.get("output_size") is not None and int(opts["output_size"]) != res:
        raise ModelMismatchError(
            f"{source} was trained for a {int(opts['output_size'])} px generator, "
            f"but its decoder makes {res} px images"
        )
    dataset = str(opts.get("dataset_type") or "")
    if "cars" in dataset:
        raise ModelFileError(
            f"{source} is a HyperStyle model for cars (dataset_type={dataset!r}), which works on "
            "non-square crops; only square domains (faces, animals) are supported"
        )
    hyper_type = opts.get("encoder_type")
    if hyper_type is not None and hyper_type not in HYPERNET_TYPES:
        raise ModelFileError(
            f"{source}: unsupported HyperStyle network type {hyper_type!r} (supported: {', '.join(HYPERNET_TYPES)})"
        )
    separable_keys = any(".output.0.make_kernel_in." in k for k in hypernet_sd)
    if hyper_type is None:
        hyper_type = HYPERNET_TYPES[1] if separable_keys else HYPERNET_TYPES[0]
    separable = hyper_type == HYPERNET_TYPES[1]

    conv1 = hypernet_sd.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4:
        raise ModelFileError(f"{source}: the hypernetwork has no ResNet stem (hypernet.conv1.weight)")
    input_nc = int(conv1.shape[1])
    if input_nc != 6 or int(opts.get("input_nc", 6)) != 6:
        raise ModelMismatchError(
            f"{source}: the hypernetwork reads {input_nc} input channels; HyperStyle needs 6 (photo + reconstruction)"
        )

    indices = sorted({int(k.split(".")[1]) for k in hypernet_sd
                      if k.startswith("refinement_blocks.") and k.split(".")[1].isdigit()})
    if not indices:
        raise ModelFileError(f"{source}: the hypernetwork has no refinement blocks (hypernet.refinement_blocks.*)")
    too_far = [i for i in indices if i >= n_outputs]
    if too_far:
        raise ModelMismatchError(
            f"{source} refines generator layer(s) {too_far}, but a {res} px generator has only layers 0-{n_outputs - 1}"
        )
    declared = _parse_layers(opts.get("layers_to_tune"), n_outputs, source)
    if declared is not None and declared != indices:
        raise ModelMismatchError(
            f"{source}: its options tune layers {declared}, but it holds refinement blocks for {indices}"
        )

    w1 = hypernet_sd.get("shared_weight_hypernet.w1")
    w2 = hypernet_sd.get("shared_weight_hypernet.w2")
    if w1 is None or w2 is None or w1.ndim != 2 or w2.ndim != 2 or w1.shape[0] != w2.shape[0]:
        raise ModelFileError(f"{source}: the shared weight generator (hypernet.shared_weight_hypernet.w1/w2) is missing or malformed")
    z_dim = int(w1.shape[0])

    layers: list[TunedLayer] = []
    shared_shape: tuple[int, ...] | None = None
    for i in indices:
        name = synthesis_name(i)
        shape = shapes.get(name)
        if shape is None or len(shape) != 4:
            raise ModelMismatchError(f"{source} refines {name}, which the generator does not have")
        o, c_in, k, _ = shape
        prefix = f"refinement_blocks.{i}."
        chans = _conv_channels(hypernet_sd, prefix, source)
        if is_torgb_index(i):
            kind = "torgb"
        elif i in SHARED_LAYER_INDICES:
            kind = "shared"
        else:
            kind = "separable" if separable else "per_channel"
        n_convs = len(chans) - 1
        first_stride = 1 if kind == "shared" else 2
        if kind != "per_channel" and stack_output_size(n_convs, first_stride) != 1:
            raise ModelMismatchError(
                f"{source}: refinement block {i} ({name}) has {n_convs} convs, which do not reduce the "
                f"{FEATURE_RESOLUTION}x{FEATURE_RESOLUTION} features to 1x1"
            )
        if kind == "shared":
            if f"{prefix}linear.weight" not in hypernet_sd:
                raise ModelMismatchError(f"{source}: refinement block {i} ({name}) should use the shared weight "
                                         "generator but has no linear layer (linear.weight)")
            if shared_shape is None:
                shared_shape = shape
            elif shape != shared_shape:
                raise ModelMismatchError(
                    f"{source}: the shared weight generator serves {name} {list(shape)} and a layer of shape "
                    f"{list(shared_shape)}; the generator's layers do not fit one shared generator"
                )
            if chans[-1] != z_dim:
                raise ModelMismatchError(f"{source}: refinement block {i} makes a {chans[-1]}-vector, "
                                         f"the shared weight generator reads {z_dim}")
        elif kind in ("per_channel", "torgb"):
            head = hypernet_sd.get(f"{prefix}output.{1 if kind == 'per_channel' else 0}.weight")
            if head is None or head.ndim != 4:
                raise ModelFileError(f"{source}: refinement block {i} ({name}) has no output conv")
            if int(head.shape[0]) != o * c_in:
                raise ModelMismatchError(
                    f"{source}: refinement block {i} predicts {int(head.shape[0])} offsets for {name}, "
                    f"whose weight {list(shape)} needs {o * c_in} (one per out/in channel pair)"
                )
        else:
            mk_in = hypernet_sd.get(f"{prefix}output.0.make_kernel_in.weight")
            mk_out = hypernet_sd.get(f"{prefix}output.0.make_kernel_out.weight")
            if mk_in is None or mk_out is None:
                raise ModelMismatchError(f"{source}: refinement block {i} ({name}) is not a separable block")
            if int(mk_in.shape[0]) != k * k * c_in or int(mk_out.shape[0]) != k * k * o:
                raise ModelMismatchError(
                    f"{source}: separable block {i} makes kernels for {int(mk_out.shape[0]) // (k * k)}x"
                    f"{int(mk_in.shape[0]) // (k * k)} channels, but {name} is {list(shape)}"
                )
        layers.append(TunedLayer(i, name, shape, kind, chans))

    if shared_shape is not None:
        s_out, s_in, s_k, _ = shared_shape
    else:  # unused, but upstream always builds (and stores) it
        s_k = 3 if int(w1.shape[1]) % 9 == 0 else 1
        s_out, s_in = int(w1.shape[1]) // (s_k * s_k), int(w2.shape[1]) // z_dim
    if int(w1.shape[1]) != s_out * s_k * s_k or int(w2.shape[1]) != s_in * z_dim:
        raise ModelMismatchError(
            f"{source}: the shared weight generator makes kernels of {int(w1.shape[1])} x {int(w2.shape[1]) // z_dim}, "
            f"which do not fit the generator's {s_out}x{s_in}x{s_k}x{s_k} layers"
        )
    meta = {k: str(opts[k]) for k in ("dataset_type", "encoder_type", "layers_to_tune", "output_size") if k in opts}
    return HyperStyleConfig(
        img_resolution=res,
        layers=layers,
        shared_z_dim=z_dim,
        shared_in=s_in,
        shared_out=s_out,
        shared_kernel=s_k,
        input_nc=input_nc,
        w_backbone=w_backbone,
        hypernet_type=hyper_type,
        metadata=meta,
    )


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.storage_offset() == b.storage_offset() and a.stride() == b.stride()):
        return True
    return bool(torch.equal(a, b))


def _drop_shared_copies(sd: dict[str, torch.Tensor], cfg: HyperStyleConfig, source: str) -> dict[str, torch.Tensor]:
    """Upstream's state dict repeats the shared generator under every shared block; keep one."""
    out = dict(sd)
    for t in cfg.layers:
        for key in _SHARED_KEYS:
            copy_key = f"refinement_blocks.{t.index}.hypernet.{key}"
            if copy_key not in out:
                continue
            if t.kind != "shared":
                raise ModelMismatchError(f"{source}: refinement block {t.index} holds shared-generator weights "
                                         f"but {t.name} is not a shared layer")
            if not _same_tensor(out[copy_key], out[f"shared_weight_hypernet.{key}"]):
                raise ModelMismatchError(f"{source}: the copy of the shared weight generator in refinement block "
                                         f"{t.index} differs from hypernet.shared_weight_hypernet")
            del out[copy_key]
    return out


# --------------------------------------------------------------------------
# Loading


def _kind_of(obj: Any) -> str:
    return checkpoints.describe_checkpoint(obj)


def _w_encoder_state(path: Path) -> dict[str, torch.Tensor]:
    obj = checkpoints.load_torch_file(path)
    kind = _kind_of(obj)
    if kind == "hyperstyle":
        raise ModelFileError(
            f"{path.name} is a HyperStyle checkpoint, not its W encoder: were the two files given the wrong way round?"
        )
    if kind not in ("w_encoder", "e4e"):
        raise ModelFileError(
            f"{path.name} is {checkpoints.KIND_NAMES[kind]}, not a W-encoder checkpoint (faces_w_encoder.pt)"
        )
    sd = checkpoints.subdict(checkpoints.state_dict_of(obj), "encoder")
    if any(k.startswith("styles.") for k in sd):
        raise ModelFileError(
            f"{path.name} is an e4e/pSp encoder with one output per style (encoder.styles.*); HyperStyle "
            "needs its single-vector W encoder (faces_w_encoder.pt)"
        )
    if "linear.weight" not in sd:
        raise ModelFileError(f"{path.name}: the encoder has no output layer (encoder.linear.weight); "
                             "it is not a W encoder")
    return sd


def load_hyperstyle(checkpoint: str | Path, w_encoder: str | Path | None) -> HyperStyle:
    """HyperStyle from the authors' checkpoint (``hyperstyle_ffhq.pt``) and W encoder (``faces_w_encoder.pt``).

    The generator is the checkpoint's own ``decoder.*`` (rosinality layout,
    converted); ``latent_avg`` comes from the checkpoint. Raises
    :class:`ModelFileError` / :class:`ModelMismatchError` with a message for
    the user when a file is missing, truncated, of another kind, or does not fit.
    """
    with guard.reading(checkpoint, "HyperStyle checkpoint"):
        return _load_hyperstyle(Path(checkpoint), w_encoder)


def _load_hyperstyle(checkpoint: Path, w_encoder: str | Path | None) -> HyperStyle:
    checkpoint = Path(checkpoint)
    if w_encoder is None:
        raise ModelFileError(
            "HyperStyle needs its W encoder file (faces_w_encoder.pt for faces) in addition to "
            f"{checkpoint.name}"
        )
    w_path = Path(w_encoder)
    if not w_path.exists():
        raise ModelFileError(
            f"HyperStyle's W encoder was not found at {w_path}. HyperStyle needs its W encoder "
            "(faces_w_encoder.pt for faces) in addition to the HyperStyle checkpoint"
        )
    obj = checkpoints.load_torch_file(checkpoint)
    kind = _kind_of(obj)
    if kind == "hyperinverter":
        raise ModelFileError(
            f"{checkpoint.name} is a HyperInverter checkpoint, not HyperStyle; use the HyperInverter backend for it"
        )
    if kind in ("w_encoder", "e4e") and _kind_of(checkpoints.load_torch_file(w_path)) == "hyperstyle":
        raise ModelFileError(
            f"{checkpoint.name} is a W encoder and {w_path.name} the HyperStyle checkpoint: "
            "the two files were given the wrong way round"
        )
    if kind != "hyperstyle":
        raise ModelFileError(
            f"{checkpoint.name} is {checkpoints.KIND_NAMES[kind]}, not a HyperStyle checkpoint "
            "(hypernet.* and decoder.* tensors)"
        )
    sd = checkpoints.state_dict_of(obj)
    opts = obj.get("opts") if isinstance(obj, Mapping) else None
    latent_avg = obj.get("latent_avg") if isinstance(obj, Mapping) else None
    if not isinstance(latent_avg, torch.Tensor):
        raise ModelFileError(f"{checkpoint.name} has no latent_avg (the mean w added to the W encoder's output)")

    w_sd = _w_encoder_state(w_path)

    g_cfg, g_sd = convert_rosinality_state_dict(
        checkpoints.subdict(sd, "decoder"), latent_avg, f"{checkpoint.name} (decoder)"
    )
    generator = generator_from_state_dict(g_cfg, g_sd, checkpoint.name)
    if generator.w_dim != 512:
        raise ModelMismatchError(f"{checkpoint.name}: the decoder's w has {generator.w_dim} dimensions; HyperStyle's "
                                 "W encoder makes 512")
    num_ws, w_dim = generator.num_ws, generator.w_dim
    la = latent_avg.detach().float()
    if la.shape[-1] != w_dim or la.numel() not in (w_dim, num_ws * w_dim):
        raise ModelMismatchError(
            f"{checkpoint.name}: latent_avg has shape {list(la.shape)}; expected [{w_dim}] or [{num_ws}, {w_dim}]"
        )
    la = la.reshape(-1, w_dim).expand(num_ws, w_dim).contiguous()

    try:
        w_backbone = detect_backbone(w_sd)
    except ValueError as e:
        raise ModelFileError(f"{w_path.name}: {e}") from None
    hyper_sd = checkpoints.subdict(sd, "hypernet")
    cfg = hyperstyle_config(hyper_sd, opts, generator, checkpoint.name, w_backbone)
    hyper_sd = _drop_shared_copies(hyper_sd, cfg, checkpoint.name)

    return _build(generator, cfg, w_sd, hyper_sd, la, checkpoint.name, w_path.name)


def _build(
    generator: Generator,
    cfg: HyperStyleConfig,
    w_sd: Mapping[str, torch.Tensor],
    hyper_sd: Mapping[str, torch.Tensor],
    latent_avg: torch.Tensor,
    source: str,
    w_source: str,
) -> HyperStyle:
    with uninitialized():
        model = HyperStyle(generator, cfg)
    load_strict(model.w_encoder, w_sd, "W encoder", w_source)
    load_strict(model.hypernet, hyper_sd, "HyperStyle hypernetwork", source)
    model.latent_avg = latent_avg
    return model.eval().requires_grad_(False)


