"""Reading photos into tensors and writing PNGs atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from hyperinverter_gui.errors import HyperInverterError, ImageFileError
from hyperinverter_gui.media.atomic import atomic_write, shown
from hyperinverter_gui.media.heif import HEIF_SUFFIXES, INSTALL_HINT, register_heif

#: photos the editor and the command line open (HEIC/HEIF through pillow-heif, see media/heif.py)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"} | HEIF_SUFFIXES


def unreadable_message(path: Path) -> str:
    """What to say about a file PIL cannot identify (HEIC without pillow-heif gets the install hint)."""
    if path.suffix.lower() in HEIF_SUFFIXES and not register_heif():
        return f"{path.name}: {INSTALL_HINT}"
    return f"{path.name} is not an image file (or a format this app cannot read)"


def _require_image_file(path: str | Path) -> Path:
    """``path`` if it is a plain file; a missing file, a folder, a FIFO or a device is refused
    before any reader touches it (a pipe would block the reader, a device never end)."""
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"image not found: {shown(path)}")
    if path.is_dir():
        raise ImageFileError(f"{shown(path)} is a folder, not an image")
    if not path.is_file():
        raise ImageFileError(f"{shown(path)} is not a regular file (a pipe or a device), not an image")
    return path


def read_rgb(path: str | Path) -> Image.Image:
    """Open any common photo (HEIC/HEIF too) as an 8-bit RGB PIL image, honouring EXIF orientation."""
    path = _require_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError:
        # The same guard as alignment.photo.load_photo (PIL refuses over twice MAX_IMAGE_PIXELS).
        raise ImageFileError(f"{shown(path.name)} is too large to open safely "
                             f"(over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageFileError(unreadable_message(path)) from None
    except MemoryError:
        raise ImageFileError(f"{shown(path.name)} is too large for the available memory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageFileError(f"{shown(path.name)} is truncated or corrupt ({e})") from None
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


def check_image_header(path: str | Path) -> None:
    """Refuse before any work what ``read_rgb`` would refuse from the file's header alone: a missing
    file, a folder, a pipe, a file that is no image, one too large to open safely. Cheap: no pixels
    are decoded."""
    path = _require_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                pass
    except Image.DecompressionBombError:
        raise ImageFileError(f"{shown(path.name)} is too large to open safely "
                             f"(over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageFileError(unreadable_message(path)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageFileError(f"{shown(path.name)} is truncated or corrupt ({e})") from None


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


class NonFiniteImageError(HyperInverterError):
    """A rendered image holds NaN or infinity: writing it would give a flat, wrong picture."""


def ensure_finite(img: torch.Tensor, what: str) -> torch.Tensor:
    """Refuse an image with NaN/Inf values before it is shown as a result or written."""
    if not bool(torch.isfinite(img).all()):
        raise NonFiniteImageError(
            f"{what} came out as invalid numbers (NaN or infinity), so it was not written: an edit value "
            "may be far too large, or a model, direction or inversion file holds invalid numbers")
    return img


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [-1,1] -> HxWx3 uint8, rounding (x+1)/2*255."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [3,H,W], got {list(img.shape)}")
    a = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return a.permute(1, 2, 0).numpy()


def png_info(text: Mapping[str, str] | None) -> PngImagePlugin.PngInfo | None:
    """PNG text chunks; values that cannot be encoded (file names that are not UTF-8) are made printable."""
    if not text:
        return None
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(shown(str(k)), shown(str(v)))
    return info


def save_png(img: torch.Tensor, path: str | Path, text: Mapping[str, str] | None = None,
             overwrite: bool = True) -> Path:
    """Write [3,H,W] in [-1,1] as an 8-bit PNG, atomically, with optional text chunks.

    Non-finite pixels are refused (``NonFiniteImageError``); ``overwrite=False`` refuses a name
    that exists when the file is complete (see ``media.atomic``)."""
    ensure_finite(img, Path(path).name)
    im = Image.fromarray(tensor_to_uint8(img), "RGB")
    info = png_info(text)
    return atomic_write(path, lambda tmp: im.save(tmp, format="PNG", pnginfo=info), ".png", overwrite=overwrite)
