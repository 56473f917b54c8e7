"""The state of one editing session, without any Qt: photo, alignment, inversion, sliders.

An evented model: every change goes through a method that emits what changed on
``session.events`` (views subscribe; they never poll). The GUI thread owns it; jobs on the
engine thread receive copies of what they need (arrays, tensors, values), never the session.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hyperinverter_gui.app.events import Signal
from hyperinverter_gui.editing.edits import Direction
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.inversion.result import InversionResult, load_inversion, save_inversion

SESSION_SUFFIX = ".hisession"
SESSION_FORMAT = "hyperinverter-gui/session/1"


class SessionEvents:
    """What an :class:`EditSession` announces. Each is an :class:`~hyperinverter_gui.app.events.Signal`."""

    def __init__(self) -> None:
        self.photo = Signal()  # () a new photo (or session): everything derived from the old one is gone
        self.faces = Signal()  # () detection results (faces, detector, message)
        self.alignment = Signal()  # () points, aligned crop and transform changed (or were cleared)
        self.inversion = Signal()  # () the inversion changed (or was cleared)
        self.value = Signal()  # (name, value) one slider value
        self.values = Signal()  # () several values at once (reset, undo of a reset, a loaded session)


@dataclass(eq=False)
class EditSession:
    """Everything about the photo being edited."""

    photo_path: Path | None = None
    photo_rgb: np.ndarray | None = None  # upright uint8 HxWx3
    faces: list[Any] = field(default_factory=list)  # alignment.Face, largest first
    face_index: int = 0
    points5: np.ndarray | None = None  # [5,2] landmarks in photo pixels (possibly corrected by the user)
    detector: str = ""
    detector_message: str | None = None
    aligned_rgb: np.ndarray | None = None  # the crop fed to the inverter
    transform: Any = None  # alignment.AlignTransform, for paste-back
    inversion: InversionResult | None = None
    values: dict[str, float] = field(default_factory=dict)  # slider name -> value
    generation: int = 0  # bumps whenever the photo or its alignment changes (stale-result guard)
    model_names: dict[str, str] = field(default_factory=dict)
    events: SessionEvents = field(default_factory=SessionEvents, repr=False)

    # --- photo and alignment -------------------------------------------------

    def reset_photo(self, path: Path | None, rgb: np.ndarray | None) -> int:
        """A new photo: everything derived from the old one is dropped. Returns the new generation."""
        self.photo_path, self.photo_rgb = path, rgb
        self.faces, self.face_index, self.points5 = [], 0, None
        self.detector, self.detector_message = "", None
        self.aligned_rgb, self.transform, self.inversion = None, None, None
        self.values = {}
        self.generation += 1
        self.events.photo.emit()
        return self.generation

    def set_photo_rgb(self, rgb: np.ndarray) -> None:
        """The decoded photo of ``photo_path`` arrived."""
        self.photo_rgb = rgb
        self.events.photo.emit()

    def set_faces(self, faces: list[Any], face_index: int, detector: str, message: str | None) -> None:
        self.faces, self.face_index, self.detector, self.detector_message = list(faces), face_index, detector, message
        self.events.faces.emit()

    def set_alignment(self, points5: np.ndarray, aligned_rgb: np.ndarray | None, transform: Any) -> None:
        """Points and the crop they give (the inversion of an older crop is dropped)."""
        self.points5 = np.asarray(points5, dtype=np.float64)
        self.aligned_rgb, self.transform = aligned_rgb, transform
        if self.inversion is not None:
            self.inversion = None
            self.events.inversion.emit()
        self.events.alignment.emit()

    def set_inversion(self, result: InversionResult | None) -> None:
        """A new inversion of the current crop (None: cleared while re-inverting)."""
        self.inversion = result
        self.generation += 1
        self.events.inversion.emit()

    def set_points(self, points5: np.ndarray) -> int:
        """The user moved landmarks: alignment and inversion must be redone."""
        p = np.asarray(points5, dtype=np.float64)
        if p.shape != (5, 2):
            raise HyperInverterError(f"expected 5 landmarks, got {list(p.shape)}")
        self.points5 = p
        self.aligned_rgb, self.transform, self.inversion = None, None, None
        self.generation += 1
        self.events.alignment.emit()
        self.events.inversion.emit()
        return self.generation

    # --- sliders -------------------------------------------------------------

    def set_value(self, name: str, value: float) -> None:
        if not math.isfinite(value):
            raise HyperInverterError(f"slider {name}: {value} is not a number")
        old = self.values.get(name, 0.0)
        if value == 0:
            self.values.pop(name, None)
        else:
            self.values[name] = float(value)
        if old != value:
            self.events.value.emit(name, float(value))

    def set_values(self, values: Mapping[str, float]) -> None:
        """Replace every slider value at once (one notification)."""
        for name, value in values.items():
            if not math.isfinite(value):
                raise HyperInverterError(f"slider {name}: {value} is not a number")
        self.values = {n: float(v) for n, v in values.items() if v != 0}
        self.events.values.emit()

    def value(self, name: str) -> float:
        return self.values.get(name, 0.0)

    def edits(self, directions: Mapping[str, Direction]) -> list[tuple[Direction, float]]:
        """(direction, value) pairs for the sliders that are set and known."""
        return [(directions[n], v) for n, v in sorted(self.values.items()) if n in directions and v != 0]

    def edit_summary(self) -> str:
        return ", ".join(f"{n}={v:+g}" for n, v in sorted(self.values.items())) or "none"

    # --- saving and restoring ------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the inversion and slider values, so the photo can be edited later without re-inverting."""
        if self.inversion is None:
            raise HyperInverterError("nothing to save yet: invert a photo first")
        path = Path(path)
        meta = {
            "session_format": SESSION_FORMAT,
            "session": json.dumps({
                "photo": str(self.photo_path) if self.photo_path else None,
                "values": self.values,
                "points5": None if self.points5 is None else self.points5.tolist(),
                "transform": None if self.transform is None else self.transform.to_json(),
                "models": self.model_names,
            }),
        }
        return save_inversion(self.inversion, path, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "EditSession":
        path = Path(path)
        result = load_inversion(path)
        if result.metadata.get("session_format") != SESSION_FORMAT:
            raise HyperInverterError(f"{path.name} is an inversion file, not an editing session")
        try:
            info = json.loads(result.metadata["session"])
        except (KeyError, ValueError):
            raise HyperInverterError(f"{path.name}: damaged session data") from None
        s = cls()
        s.inversion = result
        s.values = {str(k): float(v) for k, v in (info.get("values") or {}).items()}
        s.model_names = dict(info.get("models") or {})
        if info.get("points5") is not None:
            s.points5 = np.asarray(info["points5"], dtype=np.float64)
        if info.get("transform") is not None:
            from hyperinverter_gui.alignment import AlignTransform

            try:
                s.transform = AlignTransform.from_json(info["transform"])
            except HyperInverterError:
                s.transform = None
        photo = info.get("photo")
        s.photo_path = Path(photo) if photo else None
        if s.photo_path is not None and s.photo_path.exists():
            from hyperinverter_gui.alignment import load_photo

            try:
                s.photo_rgb = load_photo(s.photo_path).rgb
            except HyperInverterError:
                s.photo_rgb = None
        s.aligned_rgb = _to_uint8(result.image)
        return s


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    from hyperinverter_gui.media.images import tensor_to_uint8

    return tensor_to_uint8(img)
