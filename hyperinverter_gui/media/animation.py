"""Writing image sequences (GIF, MP4) and PNGs with metadata, atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.atomic import OutputWriteError, atomic_write, shown

#: frame rates of GIF and MP4 exports: a GIF frame lasts at least 10 ms (100 fps) and at most
#: 655 s; below 0.1 fps an animation is a slide show nobody waits for.
MIN_FPS, MAX_FPS = 0.1, 100.0


def check_fps(fps: float, name: str = "fps") -> float:
    """A frame rate in [MIN_FPS, MAX_FPS], else a message naming the setting ``name``."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise HyperInverterError(f"{name} must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise HyperInverterError(f"{name} must be between {MIN_FPS:g} and {MAX_FPS:g} frames per second, got {fps!r}")
    return value


def write_gif(frames: Sequence[np.ndarray], path: Path, fps: float, ping_pong: bool = True,
              overwrite: bool = True) -> Path:
    """Animated GIF of uint8 RGB frames; ping-pong (A -> B -> A) loops smoothly."""
    from PIL import Image

    fps = check_fps(fps)
    seq = [Image.fromarray(f) for f in frames]
    if ping_pong:
        seq = seq + seq[-2:0:-1]

    def write(tmp: str) -> None:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=int(round(1000 / fps)), loop=0)

    return atomic_write(path, write, ".gif", overwrite=overwrite)


def _raise_if_disk_full(tmp: str) -> None:
    """OpenCV reports a full disk only as a failure to open or to write: look at the space left."""
    import errno
    import shutil

    from hyperinverter_gui.media.atomic import LOW_SPACE_BYTES

    try:
        free = shutil.disk_usage(Path(tmp).parent).free
    except OSError:
        return
    if free < LOW_SPACE_BYTES:
        raise OSError(errno.ENOSPC, "No space left on device", tmp)


def write_mp4(frames: Sequence[np.ndarray], path: Path, fps: float, overwrite: bool = True) -> Path:
    """MP4 (mp4v) of uint8 RGB frames through OpenCV; the file is read back to check it is complete
    (OpenCV only warns when a frame cannot be written, e.g. on a full disk)."""
    fps = check_fps(fps)
    try:
        import cv2
    except ImportError:
        raise HyperInverterError("MP4 export needs opencv-python (pip install 'opencv-python<5')") from None
    h, w = frames[0].shape[:2]

    def write(tmp: str) -> None:
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            _raise_if_disk_full(tmp)
            raise HyperInverterError(f"OpenCV could not open an MP4 writer for {shown(path)} on this system "
                                     "(its FFmpeg may lack the mp4v encoder); write a GIF or PNG frames instead")
        try:
            for f in frames:
                vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            vw.release()
        cap = cv2.VideoCapture(tmp)
        try:
            got = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        finally:
            cap.release()
        if got < len(frames):
            _raise_if_disk_full(tmp)
            raise OutputWriteError(f"OpenCV wrote only {got} of {len(frames)} frames to {shown(path)}; "
                                   "nothing was kept")

    return atomic_write(path, write, ".mp4", overwrite=overwrite)


def write_png(path: Path, rgb: np.ndarray, text: Mapping[str, str] | None = None,
              icc_profile: bytes | None = None, overwrite: bool = False) -> Path:
    """An 8-bit RGB PNG with text metadata (and ICC profile), written atomically; never overwrites silently:
    with ``overwrite=False`` a name taken before or while the file is written is refused."""
    from PIL import Image

    from hyperinverter_gui.media.images import png_info

    path = Path(path)
    if path.exists() and not overwrite:
        raise HyperInverterError(f"{shown(path)} exists; not overwriting it")
    info = png_info(text)
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")

    def write(tmp: str) -> None:
        kwargs = {"pnginfo": info}
        if icc_profile:
            kwargs["icc_profile"] = icc_profile
        im.save(tmp, format="PNG", **kwargs)

    return atomic_write(path, write, ".png", overwrite=overwrite)
