"""Opening and aligning photos for inversion: one path for the editor and the command line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.engine.cancel import CancelToken


@dataclass
class AlignOutcome:
    """What opening/aligning a photo found. ``aligned`` is None when no face was found."""

    rgb: np.ndarray | None = None  # the decoded photo, when it was opened from a file
    faces: list[Any] = field(default_factory=list)  # alignment.Face, largest first (None: not detected now)
    detected: bool = False
    detector: str = ""  # the landmark source: "fan", "dlib", "haar" ("" when the points were given)
    message: str | None = None  # about the detector (e.g. approximate landmarks, the photo had to be turned)
    notice: str | None = None  # the part of ``message`` the editor shows in its banner (approximate, turned)
    face_index: int = 0
    points5: np.ndarray | None = None
    aligned: np.ndarray | None = None  # uint8 crop at the generator's resolution
    transform: Any = None  # alignment.AlignTransform, for paste-back
    no_face: str | None = None  # why no face could be used


def check_regular_file(path: Path) -> None:
    """Refuse a pipe or a device before it is opened: reading one would block the engine thread
    (or never end) instead of failing."""
    import stat

    from hyperinverter_gui.errors import ImageFileError
    from hyperinverter_gui.media.atomic import shown

    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing or unreadable: the photo reader says so in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ImageFileError(f"{shown(path)} is not a regular file (a pipe or a device), not an image")


def default_points(width: int, height: int) -> np.ndarray:
    """Five points of a typical frontal face in the middle of a photo, for placing by hand."""
    s = 0.18 * min(width, height)
    cx, cy = width / 2, height / 2
    return np.array([(cx - s, cy - 0.3 * s), (cx + s, cy - 0.3 * s), (cx, cy + 0.35 * s),
                     (cx - 0.75 * s, cy + s), (cx + 0.75 * s, cy + s)], dtype=np.float64)


def landmark_caption(detector: str, faces: list[Any], face_index: int, points5: np.ndarray | None) -> str:
    """Where the points in use come from, for the photo's caption: 'landmarks: dlib (...)', '... set by hand'.

    The points count as the detector's while they are the chosen face's own; once moved (or
    placed on a photo where no face was found) they are set by hand.
    """
    from hyperinverter_gui.alignment import describe_source

    if points5 is None:
        return ""
    own = None
    if detector and faces and 0 <= face_index < len(faces):
        own = getattr(faces[face_index], "points5", None)
    if own is not None and np.allclose(np.asarray(own, np.float64), np.asarray(points5, np.float64), equal_nan=True):
        return f"landmarks: {describe_source(detector)}"
    return f"landmarks: {describe_source('manual')}"


def align_photo(
    resolution: int,
    *,
    path: Path | None = None,
    rgb: np.ndarray | None = None,
    points5: np.ndarray | None = None,
    face_index: int = 0,
    follow: Any = None,
    tracker: Any = None,
    detector: str = "auto",
    token: CancelToken | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> AlignOutcome:
    """Open ``path`` (or take ``rgb``), find the faces (unless ``points5`` are given), align one.

    Which face: ``face_index`` (0 = largest); or, when the same photo is detected again,
    ``follow`` (the ``Face`` chosen before): the face found again at its place is kept (see
    ``alignment.track``), else ``face_index``. In a sequence (video frames, a batch of frames),
    ``tracker`` (an ``alignment.FaceTracker``) picks the face it followed so far; when that face
    is not in this photo the outcome has ``no_face``.

    With no face found the outcome carries the photo and ``no_face`` (the user can place the
    points by hand); a ``face_index`` beyond the faces found raises the alignment's error.
    """
    from hyperinverter_gui.alignment import (
        align_face,
        detect_faces,
        face_from_points,
        load_photo,
        match_face,
    )
    from hyperinverter_gui.alignment.detect import no_face_error

    token = token or CancelToken()
    step = progress or (lambda stage, fraction: None)
    out = AlignOutcome()
    if path is not None:
        step("Opening photo", 0.02)
        check_regular_file(Path(path))
        rgb = out.rgb = load_photo(path).rgb
    if rgb is None:
        raise ValueError("align_photo needs a path or an image")
    token.raise_if_cancelled()
    if points5 is None:
        step("Finding the face", 0.05)
        found = detect_faces(rgb, detector=detector)
        out.detected, out.faces, out.detector, out.message = True, list(found.faces), found.detector, found.message
        if found.message and (found.approximate or found.details.get("turn")):
            out.notice = found.message
        if not found.faces:
            out.no_face = str(no_face_error(found))
            return out
        if tracker is not None:
            picked = tracker.pick(found.faces)
            if picked is None:
                n = len(found.faces)
                out.no_face = (f"the face followed so far is not among the {n} face{'s' if n != 1 else ''} "
                               "found in this photo")
                return out
            face_index = picked
        elif follow is not None:
            again = match_face(follow, found.faces)
            face_index = again if again is not None else face_index
        face = found.face(face_index)
        out.face_index = face_index
    else:
        face = face_from_points(points5, (rgb.shape[1], rgb.shape[0]))
    token.raise_if_cancelled()
    step("Aligning", 0.10)
    aligned = align_face(rgb, face, output_size=resolution)
    out.aligned, out.transform, out.points5 = aligned.image, aligned.transform, np.asarray(face.points5)
    return out
