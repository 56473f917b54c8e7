"""Reading any photo into upright 8-bit RGB, keeping what is needed to save it back.

Handles JPEG/PNG/WebP/BMP/TIFF and HEIC/HEIF (phone photos, through pillow-heif), EXIF
orientation, palette/grayscale/16-bit/float images, alpha, and CMYK (converted through its ICC
profile when it has one).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hyperinverter_gui.errors import HyperInverterError, ImageFileError
from hyperinverter_gui.media.atomic import atomic_write
from hyperinverter_gui.media.heif import HEIF_SUFFIXES, INSTALL_HINT, original_orientation, register_heif

#: file suffixes we can write, and the PIL format for each
SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_EXIF_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_ORIENTATION_TAG = 0x0112


@dataclass
class Photo:
    """An upright 8-bit RGB photo and the metadata worth keeping when saving an edit.

    ``rgb`` has EXIF orientation applied (so the EXIF kept in ``exif`` says
    orientation 1), transparent pixels composited on white, and everything
    converted to 8 bits per channel.
    """

    rgb: np.ndarray
    path: Path | None = None
    format: str | None = None
    mode: str = "RGB"
    icc_profile: bytes | None = None
    exif: bytes | None = None
    alpha: np.ndarray | None = None
    orientation: int = 1
    dpi: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright photo."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def with_rgb(self, rgb: np.ndarray) -> "Photo":
        """The same metadata with new pixels of the same size (e.g. after paste-back)."""
        rgb = as_rgb_uint8(rgb)
        if rgb.shape != self.rgb.shape:
            raise ValueError(f"new pixels {rgb.shape} differ in size from the photo {self.rgb.shape}")
        return replace(self, rgb=rgb)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Coerce an array to contiguous HxWx3 uint8 (gray is repeated, alpha dropped, 16-bit scaled)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageFileError(f"expected an HxWx3 RGB image, got an array of shape {list(np.shape(image))}")
    if a.shape[2] in (2, 4):
        a = a[:, :, :-1]
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        scale = 255.0 if np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def _profile_space(icc: bytes) -> str | None:
    """'RGB', 'GRAY', 'CMYK', ... of an ICC profile, or None when it cannot be parsed."""
    try:
        from PIL import ImageCms

        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return prof.profile.xcolor_space.strip().upper()
    except Exception:
        return None


def _srgb_profile_bytes() -> bytes | None:
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except Exception:
        return None


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64))
        peak = 1.0 if a.max(initial=0) <= 1.0 else (255.0 if a.max(initial=0) <= 255 else a.max())
    else:
        a = a.astype(np.float64)
        top = a.max(initial=0)
        peak = 255.0 if top <= 255 else (65535.0 if top <= 65535 else top)
    return Image.fromarray(np.clip(np.rint(a / peak * 255.0), 0, 255).astype(np.uint8), "L")


def _decode(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bytes | None, list[str]]:
    """PIL image (already upright) -> (rgb uint8, alpha or None, icc to keep, notes)."""
    notes: list[str] = []
    icc = im.info.get("icc_profile") or None
    alpha = None
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        im = _to_8bit_gray(im)
        notes.append("converted from high bit depth to 8 bits")
    if mode == "CMYK":
        rgb_im = None
        if icc is not None and _profile_space(icc) == "CMYK":
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                rgb_im = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
                notes.append("CMYK converted to sRGB through its ICC profile")
                icc = _srgb_profile_bytes()
            except Exception:
                rgb_im = None
        if rgb_im is None:
            rgb_im = im.convert("RGB")
            notes.append("CMYK converted to RGB without a colour profile (colours are approximate)")
            icc = None
        im = rgb_im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.uint8)[:, :, 3].copy()
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        if alpha.min() == 255:
            alpha = None
    if im.mode != "RGB":
        im = im.convert("RGB")
    rgb = np.array(im, dtype=np.uint8)
    if icc is not None:
        space = _profile_space(icc)
        if space != "RGB":
            # A gray/CMYK/unreadable profile does not describe RGB pixels; drop it.
            icc = None
    return rgb, alpha, icc, notes


def load_photo(path: str | Path) -> Photo:
    """Read a photo as upright 8-bit RGB, with its ICC profile, EXIF and alpha kept aside.

    Raises ``ImageFileError`` with a plain message for anything that is not a
    readable image (missing, folder, unknown format, truncated, too large).
    """
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"image not found: {path}")
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image")
    if not path.is_file():  # a FIFO or device: opening it would block (on the GUI thread: a frozen window)
        raise ImageFileError(f"{path} is not a regular file (a named pipe or a device), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt = im.format
                mode = im.mode
                im.load()
                orientation = 1
                exif_bytes = None
                try:
                    exif = im.getexif()
                    orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
                except Exception:
                    exif = None
                # HEIF: decoding already turned the pixels upright and set the EXIF tag to 1.
                heif_orientation = original_orientation(im.info)
                try:
                    upright = ImageOps.exif_transpose(im)
                except Exception:
                    upright = im.copy()
                    orientation = 1
                if upright is None:
                    upright = im.copy()
                if exif is not None and len(exif):
                    try:
                        if _ORIENTATION_TAG in exif:
                            exif[_ORIENTATION_TAG] = 1
                        exif_bytes = exif.tobytes()
                    except Exception:
                        exif_bytes = None
                dpi = im.info.get("dpi")
                if "icc_profile" in im.info and "icc_profile" not in upright.info:
                    upright.info["icc_profile"] = im.info["icc_profile"]
    except Image.DecompressionBombError:
        raise ImageFileError(f"{path.name} is too large to open safely (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        if path.suffix.lower() in HEIF_SUFFIXES and not register_heif():
            raise ImageFileError(f"{path.name}: {INSTALL_HINT}") from None
        raise ImageFileError(f"{path.name} is not an image file (or a format this app cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageFileError(f"{path.name} is truncated or corrupt ({e})") from None
    except MemoryError:
        raise ImageFileError(f"{path.name} is too large for the available memory") from None
    try:
        rgb, alpha, icc, notes = _decode(upright)
    except MemoryError:
        raise ImageFileError(f"{path.name} is too large for the available memory") from None
    except (OSError, ValueError) as e:
        raise ImageFileError(f"{path.name}: cannot convert its pixels to RGB ({e})") from None
    if heif_orientation is not None:
        orientation = heif_orientation
    if dpi is not None:
        try:
            dpi = (float(dpi[0]), float(dpi[1]))
        except (TypeError, ValueError, IndexError):
            dpi = None
    return Photo(
        rgb=rgb,
        path=path,
        format=fmt,
        mode=mode,
        icc_profile=icc,
        exif=exif_bytes,
        alpha=alpha,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        dpi=dpi,
        notes=tuple(notes),
    )


def save_photo(
    path: str | Path,
    rgb: np.ndarray,
    like: Photo | None = None,
    *,
    quality: int = 95,
    keep_exif: bool = True,
    keep_alpha: bool = True,
) -> Path:
    """Write ``rgb`` atomically, in the format given by the file suffix.

    With ``like`` (the photo it came from), its ICC profile, EXIF (orientation
    set to 1, since the pixels are upright), resolution and alpha channel are
    kept where the format can hold them. JPEG is written at ``quality`` with full
    chroma resolution; PNG, TIFF and BMP are lossless.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise HyperInverterError(
            f"cannot write {path.name}: use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    rgb = as_rgb_uint8(rgb)
    im = Image.fromarray(rgb, "RGB")
    kwargs: dict = {}
    if like is not None:
        if keep_alpha and like.alpha is not None and fmt in _ALPHA_FORMATS and like.alpha.shape == rgb.shape[:2]:
            im = Image.fromarray(np.dstack([rgb, like.alpha]), "RGBA")
        if like.icc_profile and fmt in _ICC_FORMATS:
            kwargs["icc_profile"] = like.icc_profile
        if keep_exif and like.exif and fmt in _EXIF_FORMATS:
            kwargs["exif"] = like.exif
        if like.dpi and fmt in ("PNG", "JPEG", "TIFF"):
            kwargs["dpi"] = like.dpi
    if fmt == "JPEG":
        kwargs.update(quality=int(quality), subsampling=0)
    elif fmt == "WEBP":
        kwargs.update(quality=int(quality), method=4)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_deflate")

    def write(tmp: str) -> None:
        try:
            im.save(tmp, format=fmt, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise HyperInverterError(f"could not write {path.name}: {e}") from None

    return atomic_write(path, write, path.suffix.lower())
