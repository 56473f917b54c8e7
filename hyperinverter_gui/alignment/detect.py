"""Finding faces and their landmarks.

Primary: face-alignment (S3FD detector + FAN, 68 points), on CUDA when available.
Its model weights live in the torch hub cache; when they are not there and cannot
be downloaded (offline), or the package is not installed, the OpenCV Haar cascades
that ship inside opencv-python are used instead: face boxes and eyes from the
cascades, mouth corners estimated from the face's proportions. Such results are
marked approximate and carry a message for the user.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hyperinverter_gui.alignment.errors import MANUAL_HINT, DetectorUnavailableError, FaceIndexError, NoFaceError
from hyperinverter_gui.alignment.geometry import as_points5, points5_from_68
from hyperinverter_gui.alignment.photo import as_rgb_uint8

#: long side of the copy the S3FD face detector looks at (it is slow on a CPU: ~3 s at 640 px on 2 cores)
FAN_DETECT_MAX_SIDE = {"cuda": 1600, "cpu": 640}
#: long side of the copy FAN takes its 68 landmarks from (each face is cropped to 256 px anyway)
FAN_LANDMARK_MAX_SIDE = 4096
HAAR_MAX_SIDE = 1280
#: seconds a stalled connection may block while face-alignment downloads its weights
DOWNLOAD_TIMEOUT_S = 10.0

# Proportions used to estimate the points the Haar cascades do not give, in units of the
# eye distance d, along the eye line (u) and across it towards the chin (n). They follow a
# common average-face 5-point template.
MOUTH_DROP = 1.1  # mouth midpoint below the eye midpoint
MOUTH_HALF_WIDTH = 0.42
NOSE_DROP = 0.6
# Where the eyes and mouth sit in an OpenCV frontal-face box (fractions of the box).
BOX_EYE_Y = 0.38
BOX_EYE_X = (0.30, 0.70)
BOX_MOUTH_Y = 0.78

_FAN_FILES = {
    "s3fd": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    "2DFAN-4": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}


@dataclass
class Face:
    """One face: box (x0, y0, x1, y1), five points and, from FAN, the 68 landmarks.

    ``points5`` rows: left eye, right eye, nose tip (NaN when unknown), left mouth
    corner, right mouth corner - all in pixels of the upright photo.
    """

    box: tuple[float, float, float, float]
    points5: np.ndarray
    landmarks68: np.ndarray | None = None
    score: float | None = None
    detector: str = "manual"
    approximate: bool = False

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass
class DetectionResult:
    """Faces found in one photo, largest first."""

    faces: list[Face]
    detector: str  # "fan", "haar" or "manual"
    approximate: bool = False
    message: str | None = None  # a note for the user (why a fallback was used, ...)
    image_size: tuple[int, int] = (0, 0)  # (width, height)
    details: dict = field(default_factory=dict)

    def face(self, index: int = 0) -> Face:
        """Face ``index`` (0 = largest); clear errors when there is none or too few."""
        if not self.faces:
            raise no_face_error(self)
        if not 0 <= index < len(self.faces):
            n = len(self.faces)
            raise FaceIndexError(
                f"face {index + 1} was asked for, but {'only ' if n else ''}{n} face{'s' if n != 1 else ''} "
                f"{'were' if n != 1 else 'was'} found (faces are numbered 1..{n}, largest first)"
            )
        return self.faces[index]


def no_face_error(result: DetectionResult | None = None) -> NoFaceError:
    how = ""
    if result is not None:
        how = {"fan": " (face-alignment detector)", "haar": " (OpenCV Haar detector)"}.get(result.detector, "")
    msg = f"no face was found in the photo{how}; {MANUAL_HINT}"
    if result is not None and result.message:
        msg += f". Note: {result.message}"
    return NoFaceError(msg)


def face_from_points(points: Any, image_size: tuple[int, int] | None = None) -> Face:
    """A ``Face`` from landmarks given by hand (4, 5 or 68 points, see ``as_points5``)."""
    arr = np.asarray(points, dtype=np.float64)
    lm68 = arr.reshape(-1, 2) if arr.size == 136 else None
    p = as_points5(points)
    known = p[np.isfinite(p).all(1)]
    x0, y0 = known.min(0)
    x1, y1 = known.max(0)
    pad = 0.6 * max(x1 - x0, y1 - y0, 1.0)
    box = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    return Face(box=tuple(float(v) for v in box), points5=p, landmarks68=lm68, detector="manual")


def manual_result(points: Any, image_size: tuple[int, int] = (0, 0)) -> DetectionResult:
    """A ``DetectionResult`` holding the one face given by hand."""
    return DetectionResult(faces=[face_from_points(points)], detector="manual", image_size=image_size)


# --- face-alignment (FAN) ---------------------------------------------------------------------

_lock = threading.Lock()
_fan_cache: dict[str, Any] = {}  # device -> FaceAlignment instance, or an Exception explaining why not


def clear_detector_cache() -> None:
    """Forget loaded detectors and earlier failures (e.g. to retry a download after going online)."""
    with _lock:
        _fan_cache.clear()
        _haar_cache.clear()


def fan_weights_dir() -> Path:
    """Folder where face-alignment keeps (and downloads) its weights: <torch hub>/checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _fan_urls() -> dict[str, str]:
    urls = dict(_FAN_FILES)
    try:  # prefer the package's own addresses, in case a release changes them
        from face_alignment import api
        from face_alignment.detection.sfd import sfd_detector

        urls["s3fd"] = sfd_detector.models_urls["s3fd"]
        urls["2DFAN-4"] = api.models_urls["2DFAN-4"]
    except Exception:
        pass
    return urls


def fan_weights_present() -> bool:
    """True when both S3FD and 2DFAN-4 weight files are in the torch hub cache."""
    folder = fan_weights_dir()
    return all((folder / os.path.basename(u)).is_file() for u in _fan_urls().values())


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every blocking socket step (connect, each read) while the weights download.

    torch.hub opens URLs without a timeout; on a network that silently drops packets
    that would hang for minutes.
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


def _describe(e: BaseException) -> str:
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"downloading its model weights failed (HTTP {e.code} {e.reason})"
    if isinstance(e, urllib.error.URLError):
        reason = getattr(e, "reason", e)
        return f"its model weights could not be downloaded ({reason}); this computer seems to be offline"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "downloading its model weights timed out"
    if isinstance(e, ImportError):
        return "the face-alignment package is not installed (pip install face-alignment)"
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"it could not be loaded ({type(e).__name__}: {text[:200]})"


def _load_fan(device: str, allow_download: bool) -> Any:
    """The cached FaceAlignment for ``device``; raises the (cached) reason when it cannot be had."""
    with _lock:
        cached = _fan_cache.get(device)
        if isinstance(cached, BaseException):
            raise cached
        if cached is not None:
            return cached
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import face_alignment
        except Exception as e:  # ImportError, or a broken dependency (numba, skimage)
            err = DetectorUnavailableError(f"face-alignment cannot be used: {_describe(e)}")
            _fan_cache[device] = err
            raise err from None
        if not allow_download and not fan_weights_present():
            # Not cached as a failure: a later call may allow the download.
            raise DetectorUnavailableError(
                f"face-alignment cannot be used: its model weights are not in {fan_weights_dir()} "
                "and downloading was not allowed"
            )
        kwargs: dict[str, Any] = {"device": device, "flip_input": False}
        params = inspect.signature(face_alignment.FaceAlignment).parameters
        if "compile" in params:
            kwargs["compile"] = False
        lm_type = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        try:
            with warnings.catch_warnings(), _socket_timeout(DOWNLOAD_TIMEOUT_S):
                warnings.simplefilter("ignore")
                fa = face_alignment.FaceAlignment(lm_type, **kwargs)
        except Exception as e:
            err = DetectorUnavailableError(f"face-alignment cannot be used: {_describe(e)}")
            _fan_cache[device] = err
            raise err from None
        _fan_cache[device] = fa
        return fa


def _scaled_down(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = rgb.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w


def faces_from_fan_output(landmarks: Any, boxes: Any, scale: float = 1.0) -> list[Face]:
    """Faces (largest first) from face-alignment's landmark and box lists, scaled by 1/scale."""
    faces = []
    if landmarks is None:
        return faces
    boxes = list(boxes) if boxes is not None else [None] * len(landmarks)
    for lm, b in zip(landmarks, boxes):
        lm = np.asarray(lm, dtype=np.float64)[:, :2] / scale
        if not np.isfinite(lm).all():
            continue
        if b is not None and len(b) >= 4:
            box = tuple(float(v) / scale for v in b[:4])
            score = float(b[4]) if len(b) > 4 else None
        else:
            (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
            box, score = (float(x0), float(y0), float(x1), float(y1)), None
        faces.append(Face(box=box, points5=points5_from_68(lm), landmarks68=lm, score=score, detector="fan"))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def _detect_fan(rgb: np.ndarray, device: str, allow_download: bool) -> list[Face]:
    import torch

    fa = _load_fan(device, allow_download)
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    small, f = _scaled_down(rgb, FAN_DETECT_MAX_SIDE[kind])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        found = fa.face_detector.detect_from_image(small.copy())
        if found is None or len(found) == 0:
            return []
        big, g = _scaled_down(rgb, FAN_LANDMARK_MAX_SIDE)
        boxes = [np.concatenate([np.asarray(b[:4], np.float64) / f * g, [float(b[4]) if len(b) > 4 else 1.0]])
                 for b in found]
        landmarks = fa.get_landmarks_from_image(big, detected_faces=boxes)
    return faces_from_fan_output(landmarks, boxes, g)


# --- OpenCV Haar cascades -----------------------------------------------------------------------

_haar_cache: dict[str, Any] = {}


def _cascade(name: str) -> Any:
    import cv2

    c = _haar_cache.get(name)
    if c is None:
        path = os.path.join(cv2.data.haarcascades, name)
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise DetectorUnavailableError(f"OpenCV's cascade file {name} is missing from the opencv-python install")
        _haar_cache[name] = c
    return c


def _overlap(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / float(min(aw * ah, bw * bh))


def _find_eyes(gray: np.ndarray, box) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Eye centres (left, right) inside a face box, and how many were really seen (1 or 2)."""
    x, y, w, h = (int(v) for v in box)
    ry0, ry1 = y + int(0.12 * h), y + int(0.62 * h)
    roi = gray[max(ry0, 0):ry1, max(x, 0):x + w]
    if roi.size == 0:
        return None
    lo, hi = max(6, int(0.10 * w)), max(8, int(0.45 * w))
    cands = []
    for name in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
        found = _cascade(name).detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
        cands = [(ex + ew / 2 + max(x, 0), ey + eh / 2 + max(ry0, 0), ew) for ex, ey, ew, eh in found]
        if cands:
            break
    if not cands:
        return None
    cx = x + w / 2
    left = [c for c in cands if c[0] < cx]
    right = [c for c in cands if c[0] >= cx]
    best, best_cost = None, np.inf
    for lc in left:
        for rc in right:
            dist = rc[0] - lc[0]
            if not 0.25 * w <= dist <= 0.75 * w:
                continue
            cost = abs(rc[1] - lc[1]) / w + abs((lc[0] + rc[0]) / 2 - cx) / w + abs(lc[2] - rc[2]) / w
            if cost < best_cost:
                best, best_cost = (lc, rc), cost
    if best is not None and abs(best[0][1] - best[1][1]) < 0.2 * w:
        return np.array(best[0][:2]), np.array(best[1][:2]), 2
    # One eye: mirror it across the box's centre line.
    one = min(cands, key=lambda c: abs(abs(c[0] - cx) - 0.2 * w))
    if not 0.08 * w <= abs(one[0] - cx) <= 0.38 * w:
        return None
    other = np.array([2 * cx - one[0], one[1]])
    pair = sorted([np.array(one[:2]), other], key=lambda p: p[0])
    return pair[0], pair[1], 1


def _points_from_eyes(le: np.ndarray, re: np.ndarray, box) -> np.ndarray:
    """Five points from two eye centres, blending the face box's proportions for the mouth."""
    x, y, w, h = box
    e2e = re - le
    d = float(np.hypot(*e2e))
    u = e2e / d
    n = np.array([-u[1], u[0]])
    mid = (le + re) / 2
    from_eyes = MOUTH_DROP * d
    from_box = float(np.dot(np.array([x + w / 2, y + BOX_MOUTH_Y * h]) - mid, n))
    drop = 0.5 * (from_eyes + from_box) if from_box > 0.5 * d else from_eyes
    mouth = mid + n * drop
    return np.stack([le, re, mid + n * NOSE_DROP * d, mouth - u * MOUTH_HALF_WIDTH * d, mouth + u * MOUTH_HALF_WIDTH * d])


def _detect_haar(rgb: np.ndarray) -> list[Face]:
    import cv2

    small, f = _scaled_down(rgb, HAAR_MAX_SIDE)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    eq = cv2.equalizeHist(gray)
    min_face = max(24, int(min(gray.shape) * 0.04))
    # Both frontal cascades: each misses faces the other finds. Boxes of the same face are merged,
    # keeping the first cascade's (its proportions are the ones BOX_* describe).
    kept: list = []
    for name, neighbours in (("haarcascade_frontalface_default.xml", 5), ("haarcascade_frontalface_alt2.xml", 4)):
        found = _cascade(name).detectMultiScale(eq, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_face, min_face))
        for b in sorted((tuple(int(v) for v in b) for b in found), key=lambda b: b[2] * b[3], reverse=True):
            if all(_overlap(b, k) < 0.5 for k in kept):
                kept.append(b)
    faces = []
    for b in kept:
        eyes = _find_eyes(gray, b)
        if eyes is None:
            continue  # no eye in it: most often not a face at all
        le, re, _ = eyes
        pts = _points_from_eyes(le, re, b) / f
        x, y, w, h = b
        faces.append(
            Face(
                box=(x / f, y / f, (x + w) / f, (y + h) / f),
                points5=pts,
                landmarks68=None,
                score=None,
                detector="haar",
                approximate=True,
            )
        )
    faces.sort(key=lambda fc: fc.area, reverse=True)
    return faces


def _haar_message(reason: str | None) -> str:
    why = f"face-alignment (FAN) is not available: {reason}. " if reason else ""
    return (
        f"{why}Used OpenCV's Haar cascade detector instead: the eye positions are approximate and the mouth "
        "corners are estimated from the face's proportions, so the alignment may be slightly off. "
        "Check the landmarks, or set them by hand."
    )


def detect_faces(
    image: np.ndarray,
    *,
    detector: str = "auto",
    device: str | None = None,
    allow_download: bool = True,
) -> DetectionResult:
    """Find faces and their five alignment points, largest face first.

    ``image``: upright HxWx3 uint8 RGB. ``detector``: "auto" (face-alignment, else
    the Haar fallback), "fan" (face-alignment only; ``DetectorUnavailableError``
    when it cannot run) or "haar". ``device`` for FAN: default CUDA when available.
    ``allow_download``: let face-alignment fetch its weights when they are not cached
    (each stalled network step is cut after ``DOWNLOAD_TIMEOUT_S`` seconds).

    Never raises for "no face": the result then has an empty ``faces`` list; use
    ``result.face(i)`` to get a face or a clear error.
    """
    rgb = as_rgb_uint8(image)
    size = (int(rgb.shape[1]), int(rgb.shape[0]))
    if detector not in ("auto", "fan", "haar"):
        raise ValueError(f"unknown detector {detector!r}: use auto, fan or haar")
    reason = None
    if detector in ("auto", "fan"):
        dev = device or _default_device()
        try:
            faces = _detect_fan(rgb, dev, allow_download)
            return DetectionResult(faces=faces, detector="fan", approximate=False, image_size=size,
                                   details={"device": dev})
        except DetectorUnavailableError as e:
            if detector == "fan":
                raise
            reason = str(e).split(": ", 1)[-1]
        except Exception as e:  # a failure while running the network: fall back rather than crash
            if detector == "fan":
                raise DetectorUnavailableError(f"face-alignment failed on this photo: {_describe(e)}") from None
            reason = f"it failed on this photo ({type(e).__name__}: {e})"
    faces = _detect_haar(rgb)
    return DetectionResult(
        faces=faces,
        detector="haar",
        approximate=True,
        message=_haar_message(reason),
        image_size=size,
        details={"fallback_reason": reason} if reason else {},
    )
