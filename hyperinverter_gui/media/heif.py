"""HEIC/HEIF photos (what phones save) through ``pillow-heif``.

Importing this module registers pillow-heif's opener with PIL once, so ``Image.open`` reads
``.heic``/``.heif`` files like any JPEG. libheif applies the file's rotation and mirroring while
decoding and pillow-heif then sets the EXIF orientation to 1 (keeping the original value in
``im.info["original_orientation"]``), so the pixels come out upright and ``ImageOps.exif_transpose``
does not turn them a second time. Without pillow-heif installed, HEIC files are refused with a
message saying what to install.
"""

from __future__ import annotations

HEIF_SUFFIXES = {".heic", ".heif", ".hif"}
INSTALL_HINT = "reading HEIC/HEIF photos needs pillow-heif: python3 -m pip install pillow-heif"

_registered: bool | None = None


def register_heif() -> bool:
    """Let PIL open HEIC/HEIF files; False when pillow-heif is not installed (or cannot load)."""
    global _registered
    if _registered is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _registered = True
        except Exception:  # noqa: BLE001 - ImportError, or its bundled libheif failing to load
            _registered = False
    return _registered


def original_orientation(info: dict) -> int | None:
    """The EXIF orientation a HEIF file had before decoding made its pixels upright (None: not HEIF)."""
    value = info.get("original_orientation")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


register_heif()

__all__ = ["HEIF_SUFFIXES", "INSTALL_HINT", "original_orientation", "register_heif"]
