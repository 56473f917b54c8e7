"""Choosing the compute device."""

from __future__ import annotations

import torch

from hyperinverter_gui.errors import HyperInverterError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" fails clearly when there is no GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HyperInverterError("CUDA was requested but no CUDA GPU is available to PyTorch; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise HyperInverterError(f"unknown device {name!r}; use auto, cpu or cuda")
