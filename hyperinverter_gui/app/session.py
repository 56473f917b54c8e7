"""The state of one editing session, without any Qt: photo, alignment, inversion, sliders.

An evented model: every change goes through a method that emits what changed on
``session.events`` (views subscribe; they never poll). The GUI thread owns it; jobs on the
engine thread receive copies of what they need (arrays, tensors, values), never the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hyperinverter_gui.app.events import Signal
from hyperinverter_gui.alignment.geometry import MAX_COORDINATE
from hyperinverter_gui.editing.edits import Direction, EditError, check_edit_value
from hyperinverter_gui.errors import HyperInverterError, SessionFileError
from hyperinverter_gui.formats.guard import file_kind_problem
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
        value = check_edit_value(value, name)  # finite, within +-MAX_EDIT_VALUE
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
            check_edit_value(value, name)  # finite, within +-MAX_EDIT_VALUE
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
        """Read a session written by :meth:`save`.

        Every problem is a ``HyperInverterError`` naming the file (and the field): a damaged
        inversion (:class:`~hyperinverter_gui.errors.InversionFileError`) or malformed session data
        (:class:`~hyperinverter_gui.errors.SessionFileError`). The photo the session refers to is
        checked with ``os.stat`` before it is opened: a named pipe there would block the GUI thread.
        A photo that is gone or unreadable is not an error (``photo_rgb`` stays None).
        """
        path = Path(path)
        result = load_inversion(path)
        if result.metadata.get("session_format") != SESSION_FORMAT:
            raise SessionFileError(f"{path.name} is an inversion file, not an editing session")
        try:
            info = json.loads(result.metadata["session"])
        except (KeyError, ValueError, RecursionError):
            raise SessionFileError(f"{path.name}: damaged session data (not valid JSON)") from None
        if not isinstance(info, dict):
            raise SessionFileError(f"{path.name}: damaged session data (a {type(info).__name__}, not a record)")

        def field_error(name: str, expected: str) -> SessionFileError:
            value = repr(info.get(name))
            return SessionFileError(f"{path.name}: session field '{name}' must be {expected}, not "
                                    f"{value if len(value) <= 40 else value[:37] + '...'}")

        s = cls()
        s.inversion = result
        values = info.get("values") or {}
        if not isinstance(values, dict):
            raise field_error("values", "a table of slider values")
        for name, v in values.items():
            try:
                s.values[str(name)] = check_edit_value(v, str(name))
            except EditError as e:
                raise SessionFileError(f"{path.name}: session field 'values': {e}") from None
        models = info.get("models") or {}
        if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
            raise field_error("models", "a table of model names")
        s.model_names = {str(k): v for k, v in models.items()}
        if info.get("points5") is not None:
            try:
                p5 = np.asarray(info["points5"], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise field_error("points5", "five (x, y) landmark pairs") from None
            # As saved (the nose may be NaN: unknown); not re-ordered, so the user's points stay theirs.
            if p5.shape != (5, 2) or not np.isfinite(p5[[0, 1, 3, 4]]).all() or \
                    np.nanmax(np.abs(p5)) > MAX_COORDINATE:
                raise field_error("points5", f"five (x, y) landmark pairs within +-{MAX_COORDINATE:g} px")
            s.points5 = p5
        transform = info.get("transform")
        if transform is not None:
            from hyperinverter_gui.alignment import AlignTransform

            try:
                s.transform = AlignTransform.from_json(transform)
            except HyperInverterError:
                s.transform = None  # paste-back is redone from the landmarks
        photo = info.get("photo")
        if photo is not None and (not isinstance(photo, str) or "\0" in photo):
            raise field_error("photo", "a file path")
        s.photo_path = Path(photo) if photo else None
        if s.photo_path is not None and file_kind_problem(s.photo_path) is None:
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
