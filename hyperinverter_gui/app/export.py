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
from hyperinverter_gui.media.images import tensor_to_uint8

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


def edited_image(engine: Engine, result: InversionResult, edits: list[tuple[Direction, float]]) -> np.ndarray:
    """The full-resolution edited face, float32 exact, as uint8 [R, R, 3]."""
    return tensor_to_uint8(engine.render(result, edits, kind="exact"))


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
        from hyperinverter_gui.alignment import load_photo, paste_back, save_photo

        if req.transform is None or req.photo_rgb is None:
            raise HyperInverterError("the original photo is not available for paste-back")
        pasted = paste_back(req.photo_rgb, edited, req.transform)
        like = load_photo(req.photo_path) if req.photo_path is not None and req.photo_path.exists() else None
        if path.suffix.lower() == ".png":
            return write_png(path, pasted, dict(req.text), like.icc_profile if like else None, overwrite=True)
        return save_photo(path, pasted, like)
    if req.mode != "aligned":
        raise ValueError(f"export mode must be 'aligned' or 'photo', got {req.mode!r}")
    return write_png(path, edited, dict(req.text), overwrite=True)


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
) -> list[Path]:
    """Render ``steps`` exact frames from A to B and write PNG frames, a GIF (A → B → A) and/or an MP4."""
    from hyperinverter_gui.media.animation import write_gif, write_mp4, write_png

    step = progress or (lambda stage, fraction: None)
    written: list[Path] = []

    def on_frame(done: int, total: int) -> None:
        step(f"frame {done}/{total}", 0.9 * done / total)

    frames = [tensor_to_uint8(f) for f in engine.interpolation_frames(a, b, steps, latent_only=latent_only,
                                                                      on_frame=on_frame, cancel=token)]
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        mode = "latent-only" if latent_only else "w+weights"
        for i, frame in enumerate(frames):
            alpha = i / (len(frames) - 1)
            written.append(write_png(frames_dir / f"frame_{i:03d}.png", frame,
                                     {"alpha": f"{alpha:.4f}", "mode": mode}, overwrite=True))
    step("Writing", 0.95)
    if gif is not None:
        written.append(write_gif(frames, gif, fps))
    if mp4 is not None:
        written.append(write_mp4(frames, mp4, fps))
    return written
