"""Keeping the same face: find, among new detections, the face that was chosen before.

Used when a photo is detected again (the user's choice of face must persist) and for
sequences (video frames, a batch of frames): the chosen face is followed from one detection
to the next instead of being picked again by size.

The rule: the new face whose box overlaps the old one most (intersection over union) is the
same face, if that overlap reaches ``MIN_IOU``; several faces overlapping about as much
(within ``IOU_TIE``) are told apart by their landmarks. With no overlap good enough, the face
whose landmarks lie nearest (mean distance of the eyes and mouth corners, in units of the
old face's size) is taken if it is within ``MAX_POINT_SHIFT``. Otherwise the face is lost.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: boxes overlapping at least this much (IoU) may be the same face
MIN_IOU = 0.3
#: faces whose overlap is within this of the best are compared by their landmarks instead
IOU_TIE = 0.1
#: without overlap, landmarks may have moved at most this many face sizes (box side) on average
MAX_POINT_SHIFT = 0.5


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _key_points(face: Any) -> np.ndarray | None:
    p = getattr(face, "points5", None)
    if p is None:
        return None
    p = np.asarray(p, dtype=np.float64).reshape(5, 2)[[0, 1, 3, 4]]
    return p if np.isfinite(p).all() else None


def _box(face: Any) -> tuple[float, float, float, float] | None:
    b = getattr(face, "box", face)
    try:
        b = tuple(float(v) for v in b)
    except TypeError:
        return None
    return b if len(b) == 4 else None


def point_shift(a: Any, b: Any) -> float:
    """Mean distance between the eyes and mouth corners of two faces, in units of ``a``'s box side (inf if unknown)."""
    pa, pb, box = _key_points(a), _key_points(b), _box(a)
    if pa is None or pb is None or box is None:
        return float("inf")
    side = max(box[2] - box[0], box[3] - box[1], 1e-9)
    return float(np.hypot(*(pa - pb).T).mean() / side)


def match_face(reference: Any, faces: Sequence[Any], *, min_iou: float = MIN_IOU,
               max_shift: float = MAX_POINT_SHIFT) -> int | None:
    """Index in ``faces`` of the face that is ``reference`` again, or None when none is.

    ``reference`` is a ``Face`` (box and points) or just a box (x0, y0, x1, y1); every
    coordinate is in pixels of the same upright photo (or of frames of the same size).
    """
    if not faces:
        return None
    ref_box = _box(reference)
    if ref_box is not None:
        ious = [box_iou(ref_box, _box(f) or (0, 0, 0, 0)) for f in faces]
        best = max(ious)
        if best >= min_iou:
            close = [i for i, v in enumerate(ious) if v >= max(min_iou, best - IOU_TIE)]
            if len(close) > 1:
                shifts = [point_shift(reference, faces[i]) for i in close]
                if np.isfinite(min(shifts)):
                    return close[int(np.argmin(shifts))]
            return int(np.argmax(ious))
    shifts = [point_shift(reference, f) for f in faces]
    i = int(np.argmin(shifts))
    return i if shifts[i] <= max_shift else None


class FaceTracker:
    """Follows one face through a sequence of detections (video frames, a batch of frames).

    The first detection picks ``first_index`` (0 = largest); after that each detection's face
    is the one that matches the face picked last (``match_face``), never the largest by
    default. ``pick`` returns None when the face is not among the new detections; the tracker
    then keeps looking for the last face it saw.
    """

    def __init__(self, first_index: int = 0, reference: Any = None):
        self.first_index = first_index
        self.reference = reference
        self.lost = 0  # detections in a row without the face

    def pick(self, faces: Sequence[Any]) -> int | None:
        if self.reference is None:
            if not 0 <= self.first_index < len(faces):
                self.lost += 1
                return None
            index = self.first_index
        else:
            index = match_face(self.reference, faces)
            if index is None:
                self.lost += 1
                return None
        self.reference = faces[index]
        self.lost = 0
        return index
