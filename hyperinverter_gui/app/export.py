"""Writing what the user made: the edited face, the photo with it pasted back, interpolation sequences.

The editor runs these as engine jobs (off the GUI thread); the command line calls them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.editing.edits import Direction
from hyperinverter_gui.engine.cancel import CancelToken
from hyperinverter_gui.engine.engine import Engine
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.inversion.result import InversionResult
from hyperinverter_gui.media.images import ensure_finite, tensor_to_uint8

#: frames of one interpolation (A and B included): each is held in memory until the files are
#: written (12 MB a frame at 1024 px), so the count is bounded and checked before any work.
MIN_INTERPOLATION_STEPS, MAX_INTERPOLATION_STEPS = 2, 300

Progress = Callable[[str, float], None]


@dataclass
class EditExport:
    """An edited face to write: ``mode`` "aligned" (the face at the model's resolution) or "photo"
    (the original photo with the edited face pasted back; needs ``photo_rgb`` and ``transform``)."""

    result: InversionResult
    edits: list[tuple[Direction, float]]
    path: Path
    mode: str = "aligned"
    text: Mapping[str, str] = field(default_factory=dict)  # PNG text metadata
    photo_rgb: np.ndarray | None = None
    transform: Any = None
    photo_path: Path | None = None  # the original, for its ICC profile and format
    overwrite: bool = False
    # The exact (float32, full resolution) frame of these edits when the caller has it already,
    # e.g. the editor's released frame on screen: nothing is rendered twice.
    edited: np.ndarray | None = None


def check_steps(steps: int, name: str = "steps") -> int:
    """An interpolation frame count in [MIN_INTERPOLATION_STEPS, MAX_INTERPOLATION_STEPS], else a
    message naming the setting."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not (
            MIN_INTERPOLATION_STEPS <= steps <= MAX_INTERPOLATION_STEPS):
        raise HyperInverterError(f"{name} must be a whole number from {MIN_INTERPOLATION_STEPS} to "
                                 f"{MAX_INTERPOLATION_STEPS} (frames including A and B), got {steps!r}")
    return steps


def edited_image(engine: Engine, result: InversionResult, edits: list[tuple[Direction, float]]) -> np.ndarray:
    """The full-resolution edited face, float32 exact, as uint8 [R, R, 3]; a frame of NaN/Inf is refused."""
    return tensor_to_uint8(ensure_finite(engine.render(result, edits, kind="exact"), "the edited face"))


def _write_new_photo(path: Path, pasted: np.ndarray, like: Any, overwrite: bool) -> Path:
    """``alignment.save_photo`` (format from the suffix), claiming the name only if it is still free."""
    from hyperinverter_gui.alignment import save_photo
    from hyperinverter_gui.media.atomic import atomic_write

    if overwrite:
        return save_photo(path, pasted, like)
    # save_photo writes atomically onto the temporary name; the finished file then claims ``path``.
    atomic_write(path, lambda tmp: save_photo(Path(tmp), pasted, like), path.suffix.lower(), overwrite=False)
    return path


def export_edit(engine: Engine, req: EditExport, progress: Progress | None = None) -> Path:
    """Render ``req`` exactly and write it atomically. Returns the path written."""
    from hyperinverter_gui.media.animation import write_png

    step = progress or (lambda stage, fraction: None)
    path = Path(req.path)
    if path.exists() and not req.overwrite:
        raise HyperInverterError(f"{path} exists; choose another name or confirm replacing it")
    step("Rendering the edited face", 0.1)
    edited = req.edited if req.edited is not None else edited_image(engine, req.result, req.edits)
    step("Writing", 0.8)
    if req.mode == "photo":
        from hyperinverter_gui.alignment import load_photo, paste_back

        if req.transform is None or req.photo_rgb is None:
            raise HyperInverterError("the original photo is not available for paste-back")
        pasted = paste_back(req.photo_rgb, edited, req.transform)
        like = load_photo(req.photo_path) if req.photo_path is not None and req.photo_path.exists() else None
        if path.suffix.lower() == ".png":
            return write_png(path, pasted, dict(req.text), like.icc_profile if like else None,
                             overwrite=req.overwrite)
        return _write_new_photo(path, pasted, like, req.overwrite)
    if req.mode != "aligned":
        raise ValueError(f"export mode must be 'aligned' or 'photo', got {req.mode!r}")
    return write_png(path, edited, dict(req.text), overwrite=req.overwrite)


def export_interpolation(
    engine: Engine,
    a: InversionResult,
    b: InversionResult,
    steps: int,
    *,
    latent_only: bool = False,
    frames_dir: Path | None = None,
    gif: Path | None = None,
    mp4: Path | None = None,
    fps: float = 12.0,
    progress: Progress | None = None,
    token: CancelToken | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Render ``steps`` exact frames from A to B and write PNG frames, a GIF (A → B → A) and/or an MP4.

    Every frame is rendered (and checked to be finite) before the first file is written, so a
    cancelled or failed run writes nothing; each file is written atomically."""
    from hyperinverter_gui.media.animation import (
        check_fps,
        write_gif,
        write_mp4,
        write_png,
    )

    check_steps(steps)
    if gif is not None or mp4 is not None:
        check_fps(fps)
    step = progress or (lambda stage, fraction: None)
    written: list[Path] = []

    def on_frame(done: int, total: int) -> None:
        step(f"frame {done}/{total}", 0.9 * done / total)

    frames = []
    for i, f in enumerate(engine.interpolation_frames(a, b, steps, latent_only=latent_only, on_frame=on_frame,
                                                      cancel=token)):
        frames.append(tensor_to_uint8(ensure_finite(f, f"interpolation frame {i}")))
    if token is not None:
        token.raise_if_cancelled()
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        mode = "latent-only" if latent_only else "w+weights"
        for i, frame in enumerate(frames):
            alpha = i / (len(frames) - 1)
            written.append(write_png(frames_dir / f"frame_{i:03d}.png", frame,
                                     {"alpha": f"{alpha:.4f}", "mode": mode}, overwrite=overwrite))
    step("Writing", 0.95)
    if gif is not None:
        written.append(write_gif(frames, gif, fps, overwrite=overwrite))
    if mp4 is not None:
        written.append(write_mp4(frames, mp4, fps, overwrite=overwrite))
    return written
