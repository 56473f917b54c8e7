"""The state of one editing session, without any Qt: photo, alignment, inversion, sliders.

The GUI reads and changes this object; the worker thread only receives copies
of what it needs (tensors, values), so the session itself is never shared
between threads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .editing import Direction
from .errors import HyperInverterError
from .inversion import InversionResult, load_inversion, save_inversion

SESSION_SUFFIX = ".hisession"
SESSION_FORMAT = "hyperinverter-gui/session/1"


@dataclass
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

    # --- photo and alignment -------------------------------------------------

    def reset_photo(self, path: Path | None, rgb: np.ndarray | None) -> int:
        """A new photo: everything derived from the old one is dropped. Returns the new generation."""
        self.photo_path, self.photo_rgb = path, rgb
        self.faces, self.face_index, self.points5 = [], 0, None
        self.detector, self.detector_message = "", None
        self.aligned_rgb, self.transform, self.inversion = None, None, None
        self.values = {}
        self.generation += 1
        return self.generation

    def set_points(self, points5: np.ndarray) -> int:
        """The user moved landmarks: alignment and inversion must be redone."""
        p = np.asarray(points5, dtype=np.float64)
        if p.shape != (5, 2):
            raise HyperInverterError(f"expected 5 landmarks, got {list(p.shape)}")
        self.points5 = p
        self.aligned_rgb, self.transform, self.inversion = None, None, None
        self.generation += 1
        return self.generation

    # --- sliders -------------------------------------------------------------

    def set_value(self, name: str, value: float) -> None:
        if not math.isfinite(value):
            raise HyperInverterError(f"slider {name}: {value} is not a number")
        if value == 0:
            self.values.pop(name, None)
        else:
            self.values[name] = float(value)

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
            from .alignment import AlignTransform

            try:
                s.transform = AlignTransform.from_json(info["transform"])
            except HyperInverterError:
                s.transform = None
        photo = info.get("photo")
        s.photo_path = Path(photo) if photo else None
        if s.photo_path is not None and s.photo_path.exists():
            from .alignment import load_photo

            try:
                s.photo_rgb = load_photo(s.photo_path).rgb
            except HyperInverterError:
                s.photo_rgb = None
        s.aligned_rgb = _to_uint8(result.image)
        return s


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    from .imageio import tensor_to_uint8

    return tensor_to_uint8(img)


class RenderScheduler:
    """Coalesces slider changes into renders: at most one in flight, the newest state always last.

    ``request(state)`` records the wanted state and returns it if a render should
    start now (nothing in flight), else None. ``finished(state)`` is called when a
    render ends and returns the next state to render (the newest one requested
    meanwhile), or None when the last finished render already shows the newest
    state. Nothing requested is ever lost.
    """

    def __init__(self) -> None:
        self.in_flight: Any = None
        self.pending: Any = None
        self._has_pending = False

    def request(self, state: Any) -> Any:
        if self.in_flight is None:
            self.in_flight = state
            return state
        self.pending, self._has_pending = state, True
        return None

    def finished(self, state: Any) -> Any:
        self.in_flight = None
        if self._has_pending:
            nxt, self.pending, self._has_pending = self.pending, None, False
            if nxt == state:
                return None
            self.in_flight = nxt
            return nxt
        return None

    def reset(self) -> None:
        self.in_flight, self.pending, self._has_pending = None, None, False

    @property
    def busy(self) -> bool:
        return self.in_flight is not None
