"""Load PyTorch ``.pt`` checkpoints safely and tell what kind of model they hold."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from hyperinverter_gui.errors import ModelFileError, UnsafeModelFileError
from hyperinverter_gui.formats import guard, sniff


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with a specific message for each way it can fail
    (any other failure of torch's reader is still a ``ModelFileError`` naming the file)."""
    with guard.reading(path, "PyTorch checkpoint"):
        return _load_torch_file(Path(path))


def _load_torch_file(path: Path) -> Any:
    path = Path(path)
    kind = sniff.sniff_file(path)
    if kind == "pickle":
        raise ModelFileError(
            f"{path.name} is a plain Python pickle (such as an NVIDIA StyleGAN2 .pkl), not a PyTorch "
            "checkpoint; pass it as the generator"
        )
    if kind == "safetensors":
        raise ModelFileError(f"{path.name} is a safetensors file, not a PyTorch checkpoint")
    if kind == "zip":
        try:
            zipfile.ZipFile(path).close()
        except zipfile.BadZipFile:
            raise ModelFileError(f"{path.name} is truncated or corrupt (not a complete zip archive)") from None
    elif kind != "torch-legacy":
        raise ModelFileError(f"{path.name} is not a PyTorch checkpoint (unrecognised file contents)")
    try:
        # mmap: tensors are read from disk only when used, so parts we drop
        # (e.g. a HyperInverter checkpoint's discriminator) never load.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights_only" in msg.lower() or "unsupported global" in msg.lower():
            raise UnsafeModelFileError(
                f"refused to load {path.name}: it contains Python objects other than tensors and plain "
                "containers, which a model checkpoint never needs. Nothing from the file was executed."
            ) from None
        raise ModelFileError(f"{path.name} is truncated or corrupt ({msg.splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ModelFileError(f"{path.name} is truncated or corrupt ({first})") from None


def state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint: ``obj["state_dict"]`` or the dict itself."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelFileError("checkpoint holds no state_dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ModelFileError("checkpoint holds no tensors")
    return sd


def subdict(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix.`` with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}


def describe_checkpoint(obj: Any) -> str:
    """Best guess of what a loaded ``.pt`` is: 'hyperinverter', 'w_encoder', 'hyperstyle', 'e4e',
    'rosinality_generator', 'stylegan2_state_dict' or 'unknown'."""
    if isinstance(obj, Mapping) and "g_ema" in obj and isinstance(obj["g_ema"], Mapping):
        return "rosinality_generator"
    try:
        sd = state_dict_of(obj)
    except ModelFileError:
        return "unknown"
    keys = sd.keys()
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    if has("w_bar_encoder.") and has("hypernet.weight_regressors."):
        return "hyperinverter"
    if has("hypernet.") and has("decoder."):
        return "hyperstyle"
    if has("encoder.") and has("decoder."):
        return "e4e"
    if has("encoder.") and not has("decoder."):
        return "w_encoder"
    if has("mapping.fc0.") and has("synthesis.b4."):
        return "stylegan2_state_dict"
    return "unknown"


KIND_NAMES = {
    "hyperinverter": "a HyperInverter checkpoint",
    "w_encoder": "a pSp/e4e W-encoder checkpoint",
    "hyperstyle": "a HyperStyle checkpoint",
    "e4e": "an e4e/pSp encoder checkpoint with its own generator",
    "rosinality_generator": "a rosinality stylegan2-pytorch generator",
    "stylegan2_state_dict": "a bare StyleGAN2 generator state_dict",
    "unknown": "an unrecognised checkpoint",
}
