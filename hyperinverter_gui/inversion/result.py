"""Inverting photos with HyperInverter and keeping the result for later edits."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from hyperinverter_gui.errors import InversionFileError
from hyperinverter_gui.media.atomic import atomic_write
from hyperinverter_gui.networks.hyperinverter import HyperInverter

INVERSION_FORMAT = "hyperinverter-gui/inversion/1"


class WeightDeltas(Mapping[str, torch.Tensor]):
    """Per-image residual weights delta_theta, keyed by synthesis parameter name.

    Each tensor has the parameter's own shape (no batch dimension), e.g.
    ``deltas["b8.conv0.weight"].shape == (512, 512, 3, 3)``.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._t = dict(tensors)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._t[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def to(self, device: torch.device | str) -> "WeightDeltas":
        return WeightDeltas({k: v.to(device) for k, v in self._t.items()})

    def batched(self) -> dict[str, torch.Tensor]:
        """``{name: [1, *shape]}``, the form the synthesis network takes."""
        return {k: v.unsqueeze(0) for k, v in self._t.items()}

    @staticmethod
    def stack(items: Iterable["WeightDeltas"]) -> dict[str, torch.Tensor]:
        """Several images' deltas as one batch ``{name: [N, *shape]}``."""
        items = list(items)
        keys = list(items[0])
        if any(list(d) != keys for d in items[1:]):
            raise ValueError("weight deltas predicted for different layer sets cannot be batched")
        return {k: torch.stack([d[k] for d in items]) for k in keys}


@dataclass
class InversionResult:
    """One photo inverted: everything edits need, without re-running the encoders."""

    w: torch.Tensor  # [num_ws, w_dim] Phase-I code (all rows equal after inversion).
    deltas: WeightDeltas  # delta_theta of Phase II.
    phase1: torch.Tensor  # [3,R,R] G(w; theta), roughly in [-1,1].
    image: torch.Tensor  # [3,R,R] G(w; theta + delta_theta).
    metadata: dict[str, str] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "InversionResult":
        return InversionResult(
            self.w.to(device), self.deltas.to(device), self.phase1.to(device), self.image.to(device), dict(self.metadata)
        )


def save_inversion(result: InversionResult, path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write a result as safetensors: ``w``, ``phase1``, ``image``, ``delta.<parameter name>``."""
    from safetensors.torch import save

    tensors = {
        "w": result.w.detach().float().cpu().contiguous(),
        "phase1": result.phase1.detach().float().cpu().contiguous(),
        "image": result.image.detach().float().cpu().contiguous(),
    }
    for k, v in result.deltas.items():
        tensors[f"delta.{k}"] = v.detach().float().cpu().contiguous()
    meta = {"format": INVERSION_FORMAT, **result.metadata, **dict(metadata or {})}
    meta = {str(k): str(v) for k, v in meta.items()}
    blob = canonical_safetensors(save(tensors, metadata=meta))
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob), ".safetensors")


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header in one fixed form (keys sorted).

    The writer keeps the metadata in a hash map whose order changes from process to process; a
    fixed header makes one inversion give one file, bit for bit, whichever process wrote it
    (batches compare outputs by SHA-256). The data offsets are relative to the data section, which
    is untouched; the header is padded with spaces to 8 bytes, as the format allows.
    """
    import json
    import struct

    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n:]


# Bounds of a saved inversion (documented in docs/design-notes.md): a 1024 px generator has 18 ws
# of 512; 64 ws, w of 4096 and 8192 px images leave a wide margin.
MAX_NUM_WS = 64
MAX_W_DIM = 4096
MAX_IMAGE_SIDE = 8192


def load_inversion(path: str | Path) -> InversionResult:
    """Read a file written by :func:`save_inversion`.

    Every way a file can be bad is an :class:`InversionFileError` naming the file (and the
    tensor): not a regular file, truncated, not ours, a tensor missing, of the wrong shape or
    dtype, or holding NaN/Inf (which would render a flat black image as a success).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InversionFileError(f"inversion file not found: {path}") from None
    except OSError as e:
        raise InversionFileError(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):  # a folder, or a FIFO that would block the reader: never opened
        raise InversionFileError(f"{path} is {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}, "
                                 "not an inversion file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InversionFileError(f"{path.name} is not a readable inversion file (truncated or damaged: {detail})") \
            from None
    if meta.get("format") != INVERSION_FORMAT:
        raise InversionFileError(f"{path.name} is a safetensors file but not an inversion saved by this app")
    missing = [k for k in ("w", "phase1", "image") if k not in tensors]
    if missing:
        raise InversionFileError(f"{path.name} lacks {', '.join(missing)}")
    for k, t in tensors.items():
        if not t.is_floating_point():
            raise InversionFileError(f"{path.name}: tensor '{k}' holds {t.dtype} values, not floating-point numbers")
        if not bool(torch.isfinite(t).all()):
            raise InversionFileError(f"{path.name}: tensor '{k}' holds NaN or infinite values; the file is damaged")
    tensors = {k: v.float() for k, v in tensors.items()}
    w = tensors.pop("w")
    if w.ndim != 2 or not (1 <= w.shape[0] <= MAX_NUM_WS and 1 <= w.shape[1] <= MAX_W_DIM):
        raise InversionFileError(f"{path.name}: w must be [num_ws, w_dim], got {list(w.shape)}")
    phase1, image = tensors["phase1"], tensors["image"]
    for k, t in (("phase1", phase1), ("image", image)):
        if t.ndim != 3 or t.shape[0] != 3 or t.shape[1] != t.shape[2] or not 1 <= t.shape[1] <= MAX_IMAGE_SIDE:
            raise InversionFileError(f"{path.name}: '{k}' must be an image [3, R, R], got {list(t.shape)}")
    if phase1.shape != image.shape:
        raise InversionFileError(f"{path.name}: 'phase1' {list(phase1.shape)} and 'image' {list(image.shape)} differ")
    deltas = {k[len("delta."):]: v for k, v in tensors.items() if k.startswith("delta.")}
    for k, v in deltas.items():
        if not k or v.ndim not in (1, 2, 4):  # biases, dense and conv weights
            raise InversionFileError(f"{path.name}: 'delta.{k}' has shape {list(v.shape)}, not a layer's weights")
    return InversionResult(w, WeightDeltas(deltas), phase1, image, meta)
