"""Build our networks from the authors' released files (no code from the files is run)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

from hyperinverter_gui.errors import ModelFileError, ModelMismatchError, UnsafeModelFileError
from hyperinverter_gui.formats import checkpoints, guard, nvidia_pickle, sniff
from hyperinverter_gui.networks.construction import uninitialized
from hyperinverter_gui.networks.encoders import detect_backbone
from hyperinverter_gui.networks.hyperinverter import HyperInverter, HyperInverterConfig
from hyperinverter_gui.networks.hypernetwork import TargetLayer, feature_index
from hyperinverter_gui.networks.stylegan2 import Generator, GeneratorConfig


def load_strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str, source: str,
                check_finite: bool = True) -> None:
    """Make ``sd``'s tensors the module's parameters, after checking names, shapes, dtypes and
    (unless ``check_finite`` is False: the model cache, written only from checked models) that
    every floating-point tensor is finite: NaN/Inf weights would render black images as successes."""
    own = module.state_dict()
    not_tensors = [k for k in own if k in sd and not isinstance(sd[k], torch.Tensor)]
    if not_tensors:
        raise ModelFileError(f"{source}: the {what}'s {not_tensors[0]} is not a tensor")
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {list(sd[k].shape)} (expected {list(own[k].shape)})"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors, e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"shape mismatch in {len(wrong)} tensors, e.g. {'; '.join(wrong[:3])}")
    if problems:
        raise ModelMismatchError(f"{source}: the {what} does not fit: " + "; ".join(problems))
    for k, t in own.items():
        if t.is_floating_point() and not (sd[k].is_floating_point() or sd[k].dtype in _INTEGER_DTYPES):
            raise ModelFileError(f"{source}: the {what}'s tensor {k} holds {sd[k].dtype} values, not numbers")
        if check_finite:
            guard.check_finite(sd[k], f"{what}: {k}", source)
    # Modules are built uninitialised (models.construction); the file's tensors become the parameters.
    module.load_state_dict({k: sd[k].to(own[k].dtype) for k in own}, strict=True, assign=True)


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _rank(sd: Mapping[str, torch.Tensor], key: str, ndim: int, source: str) -> None:
    t = sd.get(key)
    if t is not None and (not isinstance(t, torch.Tensor) or t.ndim != ndim):
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ModelFileError(f"{source}: generator tensor {key} has shape {shape}, expected {ndim} dimensions")


def _check_generator_ranks(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """The ranks of the tensors the architecture is derived from (the rest are compared by shape)."""
    for k in sd:
        parts = k.split(".")
        if k.startswith("mapping.") and k.endswith(".weight"):
            _rank(sd, k, 2, source)
        elif k.startswith("synthesis.") and parts[-1] == "weight" and parts[-2] in ("conv0", "conv1", "torgb"):
            _rank(sd, k, 4, source)


def generator_from_state_dict(
    cfg: GeneratorConfig, sd: Mapping[str, torch.Tensor], source: str = "generator", check_finite: bool = True
) -> Generator:
    sd = dict(sd)
    bad = next((k for k, v in sd.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ModelFileError(f"{source}: generator entry {bad} is a {type(sd[bad]).__name__}, not a tensor")
    # Filters stored 1-D (separable) are applied as their outer product.
    for k, v in list(sd.items()):
        if k.endswith("resample_filter") and v.ndim == 1:
            sd[k] = torch.outer(v, v)
    _check_generator_ranks(sd, source)
    try:
        derived = GeneratorConfig.from_state_dict(sd)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        detail = f"lacks {e}" if isinstance(e, KeyError) else guard.first_line(e)
        raise ModelFileError(f"{source}: the tensors do not form a StyleGAN2 generator ({detail})") from None
    for attr in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers", "channels"):
        if getattr(cfg, attr) != getattr(derived, attr):
            raise ModelMismatchError(
                f"{source}: stored configuration says {attr}={getattr(cfg, attr)}, "
                f"but the weights say {getattr(derived, attr)}"
            )
    try:
        with uninitialized():
            g = Generator(cfg)
    except ValueError as e:
        raise ModelFileError(f"{source}: {e}") from None
    load_strict(g, sd, "generator", source, check_finite)
    return g.eval().requires_grad_(False)


def load_generator(path: str | Path) -> Generator:
    """A StyleGAN2 generator from any supported file (see :func:`_load_generator`); any failure is a
    ``ModelFileError`` (or subclass) naming the file."""
    with guard.reading(path, "StyleGAN2 generator"):
        return _load_generator(path)


def _load_generator(path: str | Path) -> Generator:
    """A StyleGAN2 generator from any supported file, converted to stylegan2-ada-pytorch names.

    Supported: NVIDIA stylegan2-ada-pytorch network pickles, NVIDIA's original
    TensorFlow StyleGAN2 pickles (``dnnlib.tflib``), and rosinality
    stylegan2-pytorch ``.pt`` files (``g_ema``; also the decoder inside e4e /
    HyperStyle checkpoints). No code from any of the files is executed.
    """
    from hyperinverter_gui.formats.rosinality import load_rosinality_generator
    from hyperinverter_gui.formats.tf_stylegan2 import is_tf_network_pickle, load_tf_generator

    path = Path(path)
    kind = sniff.sniff_file(path)
    if kind in ("zip", "torch-legacy"):
        try:
            obj = checkpoints.load_torch_file(path)
        except UnsafeModelFileError:
            obj = None  # rosinality *training* checkpoints hold argparse options; the converter allows those
        what = checkpoints.describe_checkpoint(obj) if obj is not None else "rosinality_generator"
        if what in ("rosinality_generator", "e4e", "hyperstyle"):
            cfg, sd = load_rosinality_generator(path if obj is None else obj, source=path.name)
            return generator_from_state_dict(cfg, sd, path.name)
        raise ModelFileError(
            f"{path.name} is {checkpoints.KIND_NAMES[what]}, not a StyleGAN2 generator "
            "(an NVIDIA network pickle or a rosinality .pt)"
        )
    if kind == "pickle" and is_tf_network_pickle(path):
        cfg, sd = load_tf_generator(path)
        return generator_from_state_dict(cfg, sd, path.name)
    kwargs, sd = nvidia_pickle.load_stylegan2_ada_pickle(path)
    try:
        cfg = GeneratorConfig.from_stylegan2_ada_kwargs(kwargs)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as e:
        raise ModelFileError(f"{path.name}: generator configuration is incomplete or invalid ({e})") from None
    return generator_from_state_dict(cfg, sd, path.name)


def _hyperinverter_config(
    sd: Mapping[str, torch.Tensor], w_enc_sd: Mapping[str, torch.Tensor], generator: Generator, source: str
) -> HyperInverterConfig:
    e2 = checkpoints.subdict(sd, "w_bar_encoder")
    try:
        backbone = detect_backbone(e2)
        w_backbone = detect_backbone(w_enc_sd)
    except ValueError as e:
        raise ModelFileError(f"{source}: {e}") from None
    n_styles = len({k.split(".")[1] for k in e2 if k.startswith("styles.")})
    expected_styles = 2 * int(math.log2(generator.img_resolution)) - 2
    if n_styles != expected_styles:
        raise ModelMismatchError(
            f"{source} was trained for a {2 ** ((n_styles + 2) // 2)} px generator ({n_styles} feature maps), "
            f"but the generator makes {generator.img_resolution} px images (needs {expected_styles})"
        )
    regs = checkpoints.subdict(sd, "hypernet.weight_regressors")
    names = list(dict.fromkeys(k.split(".")[0] for k in regs))
    if not names:
        raise ModelFileError(f"{source}: no hypernetwork weight regressors found")
    shapes = generator.synthesis.weight_shapes()
    targets: list[TargetLayer] = []
    hidden = None
    for reg in names:
        layer = reg.replace("_", ".")
        if layer not in shapes:
            raise ModelMismatchError(
                f"{source} predicts weights for '{layer}', which this generator does not have"
            )
        w1, w2 = regs.get(f"{reg}.w1"), regs.get(f"{reg}.w2")
        if w1 is None or w2 is None:
            raise ModelFileError(f"{source}: regressor {reg} lacks w1/w2")
        for part, t_ in (("w1", w1), ("w2", w2)):
            if t_.ndim != 2:
                raise ModelFileError(f"{source}: tensor hypernet.weight_regressors.{reg}.{part} has shape "
                                     f"{list(t_.shape)}, expected 2 dimensions")
        shape = tuple(int(s) for s in shapes[layer])
        t = TargetLayer(layer, shape, feature_index(layer))
        o, i, k = t.out_in_kernel
        d = int(w1.shape[0])
        hidden = d if hidden is None else hidden
        if d != hidden or w1.shape[1] != i * d or w2.shape != (d, o * k * k):
            raise ModelMismatchError(
                f"{source}: regressor for {layer} has w1 {list(w1.shape)}, w2 {list(w2.shape)}, which do not "
                f"fit the generator's {layer} of shape {list(shape)}"
            )
        if t.feature_index >= n_styles:
            raise ModelMismatchError(f"{source}: {layer} needs E2 feature {t.feature_index} of {n_styles}")
        targets.append(t)
    assert hidden is not None
    return HyperInverterConfig(backbone, w_backbone, n_styles, hidden, targets)


def load_hyperinverter(
    checkpoint: str | Path,
    generator: Generator | str | Path,
    w_encoder: str | Path | None = None,
) -> HyperInverter:
    """HyperInverter from an official checkpoint ``.pt`` and its StyleGAN2 generator.

    E1 comes from the checkpoint's ``w_encoder.*`` tensors, or from a separate
    pSp-style W-encoder file (``encoder.*``) when ``w_encoder`` is given.
    The checkpoint's ``discriminator.*`` tensors are never materialised.
    Any failure is a ``ModelFileError`` (or subclass) naming the file.
    """
    with guard.reading(checkpoint, "HyperInverter checkpoint"):
        return _load_hyperinverter(Path(checkpoint), generator, w_encoder)


def _load_hyperinverter(
    checkpoint: Path,
    generator: Generator | str | Path,
    w_encoder: str | Path | None = None,
) -> HyperInverter:
    checkpoint = Path(checkpoint)
    if not isinstance(generator, Generator):
        generator = load_generator(generator)
    obj = checkpoints.load_torch_file(checkpoint)
    kind = checkpoints.describe_checkpoint(obj)
    if kind != "hyperinverter":
        raise ModelFileError(f"{checkpoint.name} is {checkpoints.KIND_NAMES[kind]}, not a HyperInverter checkpoint")
    sd = checkpoints.state_dict_of(obj)
    del obj
    if w_encoder is not None:
        w_path = Path(w_encoder)
        w_obj = checkpoints.load_torch_file(w_path)
        w_kind = checkpoints.describe_checkpoint(w_obj)
        if w_kind != "w_encoder":
            raise ModelFileError(f"{w_path.name} is {checkpoints.KIND_NAMES[w_kind]}, not a W-encoder checkpoint")
        w_sd = checkpoints.subdict(checkpoints.state_dict_of(w_obj), "encoder")
        w_source = w_path.name
    else:
        w_sd = checkpoints.subdict(sd, "w_encoder")
        w_source = checkpoint.name
        if not w_sd:
            raise ModelFileError(f"{checkpoint.name} has no w_encoder.* tensors; give the W-encoder file separately")
    cfg = _hyperinverter_config(sd, w_sd, generator, checkpoint.name)
    return build_hyperinverter(generator, cfg, w_sd, checkpoints.subdict(sd, "w_bar_encoder"),
                               checkpoints.subdict(sd, "hypernet"), checkpoint.name, w_source)


def build_hyperinverter(
    generator: Generator,
    cfg: HyperInverterConfig,
    w_encoder_sd: Mapping[str, torch.Tensor],
    w_bar_encoder_sd: Mapping[str, torch.Tensor],
    hypernet_sd: Mapping[str, torch.Tensor],
    source: str,
    w_source: str | None = None,
    check_finite: bool = True,
) -> HyperInverter:
    """Assemble a HyperInverter from its three state dicts (prefixes removed)."""
    with uninitialized():
        model = HyperInverter(torch.nn.Identity(), cfg)  # type: ignore[arg-type]
    model.generator = generator
    load_strict(model.w_encoder, w_encoder_sd, "W encoder (E1)", w_source or source, check_finite)
    load_strict(model.w_bar_encoder, w_bar_encoder_sd, "E2 encoder", source, check_finite)
    load_strict(model.hypernet, hypernet_sd, "hypernetwork", source, check_finite)
    return model.eval().requires_grad_(False)

