"""Identify what a model file is from its first bytes, before parsing it."""

from __future__ import annotations

from pathlib import Path

from hyperinverter_gui.errors import ModelFileError

# torch.save's legacy (non-zip) format starts with this pickled magic number.
_LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def sniff_file(path: Path) -> str:
    """Return "zip" (torch.save / safetensors-free archive), "torch-legacy", "pickle",
    "safetensors" or "unknown"; raise ModelFileError for missing, empty or HTML files."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    if not path.is_file():  # a FIFO or device: opening it could block forever
        raise ModelFileError(f"{path} is not a regular file (a named pipe or a device), not a model file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e.strerror or e}") from None
    if size == 0:
        raise ModelFileError(f"{path.name} is empty (0 bytes); the download or copy did not complete")
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        raise ModelFileError(
            f"{path.name} is an HTML page, not a model file (a failed or unconfirmed download?)"
        )
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 2:
        if head[2:3] == b"\x8a" and head[4:14] == _LEGACY_TORCH_MAGIC:
            return "torch-legacy"
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"
