"""Inverting photos with HyperInverter and keeping the result for later edits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from hyperinverter_gui.errors import HyperInverterError, ModelFileError, ModelMismatchError
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


def load_inversion(path: str | Path) -> InversionResult:
    """Read a file written by :func:`save_inversion`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise HyperInverterError(f"inversion file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path.name} is not a readable inversion file ({e})") from None
    if meta.get("format") != INVERSION_FORMAT:
        raise ModelFileError(f"{path.name} is a safetensors file but not an inversion saved by this app")
    missing = [k for k in ("w", "phase1", "image") if k not in tensors]
    if missing:
        raise ModelFileError(f"{path.name} lacks {', '.join(missing)}")
    w = tensors.pop("w")
    if w.ndim != 2:
        raise ModelMismatchError(f"{path.name}: w must be [num_ws, w_dim], got {list(w.shape)}")
    deltas = {k[len("delta."):]: v for k, v in tensors.items() if k.startswith("delta.")}
    return InversionResult(w, WeightDeltas(deltas), tensors["phase1"], tensors["image"], meta)
