"""Writing image sequences (GIF, MP4) and PNGs with metadata, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.atomic import atomic_write


def write_gif(frames: Sequence[np.ndarray], path: Path, fps: float, ping_pong: bool = True) -> Path:
    """Animated GIF of uint8 RGB frames; ping-pong (A -> B -> A) loops smoothly."""
    from PIL import Image

    seq = [Image.fromarray(f) for f in frames]
    if ping_pong:
        seq = seq + seq[-2:0:-1]

    def write(tmp: str) -> None:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=int(1000 / fps), loop=0)

    return atomic_write(path, write, ".gif")


def write_mp4(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """MP4 (mp4v) of uint8 RGB frames through OpenCV."""
    try:
        import cv2
    except ImportError:
        raise HyperInverterError("MP4 export needs opencv-python (pip install 'opencv-python<5')") from None
    h, w = frames[0].shape[:2]

    def write(tmp: str) -> None:
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            raise HyperInverterError("OpenCV could not open an MP4 writer on this system")
        try:
            for f in frames:
                vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            vw.release()

    return atomic_write(path, write, ".mp4")


def write_png(path: Path, rgb: np.ndarray, text: Mapping[str, str] | None = None,
              icc_profile: bytes | None = None, overwrite: bool = False) -> Path:
    """An 8-bit RGB PNG with text metadata (and ICC profile), written atomically; never overwrites silently."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    if path.exists() and not overwrite:
        raise HyperInverterError(f"{path} exists; not overwriting it")
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(str(k), str(v))
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")

    def write(tmp: str) -> None:
        kwargs = {"pnginfo": info}
        if icc_profile:
            kwargs["icc_profile"] = icc_profile
        im.save(tmp, format="PNG", **kwargs)

    return atomic_write(path, write, ".png")
