"""Reading photos into tensors and writing PNGs atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from hyperinverter_gui.errors import HyperInverterError, ImageFileError
from hyperinverter_gui.media.atomic import atomic_write
from hyperinverter_gui.media.heif import HEIF_SUFFIXES, INSTALL_HINT, register_heif

#: photos the editor and the command line open (HEIC/HEIF through pillow-heif, see media/heif.py)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"} | HEIF_SUFFIXES


def unreadable_message(path: Path) -> str:
    """What to say about a file PIL cannot identify (HEIC without pillow-heif gets the install hint)."""
    if path.suffix.lower() in HEIF_SUFFIXES and not register_heif():
        return f"{path.name}: {INSTALL_HINT}"
    return f"{path.name} is not an image file (or a format this app cannot read)"


def read_rgb(path: str | Path) -> Image.Image:
    """Open any common photo (HEIC/HEIF too) as an 8-bit RGB PIL image, honouring EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"image not found: {path}")
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ImageFileError(unreadable_message(path)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f"{path.name} is truncated or corrupt ({e})") from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.rint(a / peak * 255), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparent pixels on white rather than on undefined colours.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return im.convert("RGB")


def image_to_tensor(im: Image.Image, resolution: int | None = None) -> torch.Tensor:
    """RGB image -> [3,R,R] float32 in [-1,1] (``ToTensor`` + ``Normalize(0.5, 0.5)``).

    When ``resolution`` is given and differs, the image is resized with PIL's
    bilinear filter to R x R first, as the official inference transform does.
    """
    if resolution is not None and im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    assert a.ndim == 3 and a.shape[2] == 3, a.shape
    t = torch.from_numpy(a.copy()).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def load_image(path: str | Path, resolution: int | None = None) -> torch.Tensor:
    return image_to_tensor(read_rgb(path), resolution)


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [-1,1] -> HxWx3 uint8, rounding (x+1)/2*255."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [3,H,W], got {list(img.shape)}")
    a = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return a.permute(1, 2, 0).numpy()


def save_png(img: torch.Tensor, path: str | Path, text: Mapping[str, str] | None = None) -> Path:
    """Write [3,H,W] in [-1,1] as an 8-bit PNG, atomically, with optional text chunks."""
    im = Image.fromarray(tensor_to_uint8(img), "RGB")
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(str(k), str(v))

    def write(tmp: str) -> None:
        try:
            im.save(tmp, format="PNG", pnginfo=info)
        except OSError as e:
            raise HyperInverterError(f"could not write {Path(path).name}: {e}") from None

    return atomic_write(path, write, ".png")
