"""Finding faces and their landmarks.

Three landmark sources, in this order ("auto"):

1. face-alignment (S3FD detector + FAN, 68 points), on CUDA when available, when its model
   weights are in the torch hub cache;
2. dlib (HOG detector + the 68-point predictor FFHQ itself was aligned with), when the optional
   ``landmarks`` extra is installed (``dlib_landmarks.py``); it needs no download;
3. otherwise face-alignment once more, now allowed to download its weights, and when that
   fails (offline) the OpenCV Haar cascades that ship inside opencv-python: face boxes and
   eyes from the cascades, mouth corners estimated from the face's proportions. Such results
   are marked approximate and carry a message for the user.

When a source finds no face in the upright photo, it looks again in the photo turned by
90, 270 and 180 degrees (a photo whose EXIF orientation was lost); the points are mapped
back to the upright photo, so the crop comes out upright all the same.
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

from hyperinverter_gui.alignment import dlib_landmarks
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

#: the landmark sources detect_faces knows, besides "auto"
SOURCES = ("fan", "dlib", "haar")
#: quarter turns (np.rot90, counter-clockwise) tried when the upright photo shows no face
TURNS = (1, 3, 2)
#: how each source is named to the user
SOURCE_LABELS = {
    "fan": "face-alignment (FAN, 68 points)",
    "dlib": "dlib (68 points, as FFHQ was aligned)",
    "haar": "OpenCV Haar cascades (approximate: eyes found, mouth estimated)",
    "manual": "set by hand",
}

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
    """Faces found in one photo, largest first.

    ``details`` may hold "fallback_reason" (why earlier sources were not used) and "turn"
    (degrees counter-clockwise the photo had to be turned for the face to be found).
    """

    faces: list[Face]
    detector: str  # "fan", "dlib", "haar" or "manual"
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
        how = {"fan": " (face-alignment detector)", "dlib": " (dlib detector)",
               "haar": " (OpenCV Haar detector)"}.get(result.detector, "")
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
    """Forget loaded detectors and earlier failures (e.g. to retry a download after going online).

    dlib's loaded predictor is kept (its file does not change; loading takes half a second);
    only a failure to load it is forgotten.
    """
    with _lock:
        _fan_cache.clear()
        _haar_cache.clear()
    dlib_landmarks.clear_cache()


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


def _haar_message(reason: str | None, dlib_reason: str | None = None) -> str:
    why = f"face-alignment (FAN) is not available: {reason}. " if reason else ""
    if dlib_reason:
        why += f"dlib is not available either: {dlib_reason}. "
    return (
        f"{why}Used OpenCV's Haar cascade detector instead: the eye positions are approximate and the mouth "
        "corners are estimated from the face's proportions, so the alignment may be slightly off. "
        "Check the landmarks, or set them by hand."
    )


def _dlib_message(reason: str | None) -> str | None:
    if not reason:
        return None
    return (
        f"Face landmarks from dlib's 68-point predictor (the landmarks FFHQ was aligned with); "
        f"face-alignment (FAN) was not used: {reason}."
    )


# --- dlib -----------------------------------------------------------------------------------------


def _detect_dlib(rgb: np.ndarray, thorough: bool = True) -> list[Face]:
    """Faces from dlib's HOG detector and 68-point predictor (see ``dlib_landmarks``), largest first."""
    faces = []
    for box, score, _ in dlib_landmarks.detect_boxes(rgb, upsamples=(1, 2) if thorough else (1,)):
        lm = dlib_landmarks.landmarks68(rgb, box)
        faces.append(Face(box=box, points5=points5_from_68(lm), landmarks68=lm, score=score, detector="dlib"))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


# --- turned photos ----------------------------------------------------------------------------------


def unturn_points(points: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Map pixel positions in ``np.rot90(photo, k)`` back to the upright photo of ``size`` (width, height)."""
    p = np.asarray(points, dtype=np.float64)
    w, h = size
    x, y = p[..., 0], p[..., 1]
    k %= 4
    if k == 0:
        return p.copy()
    if k == 1:
        return np.stack([w - 1 - y, x], axis=-1)
    if k == 2:
        return np.stack([w - 1 - x, h - 1 - y], axis=-1)
    return np.stack([y, h - 1 - x], axis=-1)


def _unturn_face(face: Face, k: int, size: tuple[int, int]) -> Face:
    x0, y0, x1, y1 = face.box
    corners = unturn_points(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]), k, size)
    (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)
    return Face(
        box=(float(bx0), float(by0), float(bx1), float(by1)),
        points5=unturn_points(face.points5, k, size),
        landmarks68=None if face.landmarks68 is None else unturn_points(face.landmarks68, k, size),
        score=face.score,
        detector=face.detector,
        approximate=face.approximate,
    )


def _search(rgb: np.ndarray, find, turns: bool) -> tuple[list[Face], int]:
    """``find`` on the upright photo, else on the photo turned a quarter, three quarters, a half.

    Returns the faces (in upright coordinates) and the degrees (counter-clockwise) the photo was turned.
    """
    faces = find(rgb, True)
    if faces or not turns:
        return faces, 0
    size = (int(rgb.shape[1]), int(rgb.shape[0]))
    for k in TURNS:
        faces = find(np.ascontiguousarray(np.rot90(rgb, k)), False)
        if faces:
            return [_unturn_face(f, k, size) for f in faces], 90 * k
    return [], 0


def _turn_note(degrees: int) -> str | None:
    if not degrees:
        return None
    how = {90: "a quarter turn to the left", 270: "a quarter turn to the right", 180: "upside down"}[degrees]
    return (f"The face was found only with the photo turned {how}; the photo's orientation may be wrong "
            "(no EXIF orientation?). The crop is upright all the same.")


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return " ".join(kept) if kept else None


def _result(faces: list[Face], source: str, size, degrees: int, message: str | None = None,
            reason: str | None = None, **details) -> DetectionResult:
    if reason:
        details["fallback_reason"] = reason
    if degrees:
        details["turn"] = degrees
    return DetectionResult(faces=faces, detector=source, approximate=source == "haar", image_size=size,
                           message=_join(message, _turn_note(degrees)), details=details)


def describe_source(source: str) -> str:
    """The landmark source ("fan", "dlib", "haar", "manual") as the user is told it."""
    return SOURCE_LABELS.get(source, source)


def detect_faces(
    image: np.ndarray,
    *,
    detector: str = "auto",
    device: str | None = None,
    allow_download: bool = True,
    turns: bool = True,
) -> DetectionResult:
    """Find faces and their five alignment points, largest face first.

    ``image``: upright HxWx3 uint8 RGB. ``detector``: "auto" (face-alignment when its weights
    are present, else dlib when installed, else face-alignment with a download, else the Haar
    fallback; ``result.message`` says why), or one source only: "fan", "dlib"
    (``DetectorUnavailableError`` when it cannot run) or "haar". ``device`` for FAN: default
    CUDA when available. ``allow_download``: let face-alignment fetch its weights when they are
    not cached (each stalled network step is cut after ``DOWNLOAD_TIMEOUT_S`` seconds).
    ``turns``: when no face is found upright, look in the photo turned by 90, 270 and 180 degrees.

    Never raises for "no face": the result then has an empty ``faces`` list; use
    ``result.face(i)`` to get a face or a clear error.
    """
    rgb = as_rgb_uint8(image)
    size = (int(rgb.shape[1]), int(rgb.shape[0]))
    if detector not in ("auto", *SOURCES):
        raise ValueError(f"unknown detector {detector!r}: use auto, fan, dlib or haar")
    dev = device or _default_device()
    reason = dlib_reason = None

    def run_fan(download: bool) -> DetectionResult:
        faces, degrees = _search(rgb, lambda im, _: _detect_fan(im, dev, download), turns)
        return _result(faces, "fan", size, degrees, device=dev)

    fan_tried = False
    if detector == "fan" or (detector == "auto" and fan_weights_present()):
        fan_tried = True
        try:
            return run_fan(allow_download)
        except DetectorUnavailableError as e:
            if detector == "fan":
                raise
            reason = str(e).split(": ", 1)[-1]
        except Exception as e:  # a failure while running the network: fall back rather than crash
            if detector == "fan":
                raise DetectorUnavailableError(f"face-alignment failed on this photo: {_describe(e)}") from None
            reason = f"it failed on this photo ({type(e).__name__}: {e})"
    elif detector == "auto":
        reason = "its model weights are not downloaded (`hyperinverter weights download fan-2d s3fd`)"
    if detector in ("auto", "dlib"):
        try:
            faces, degrees = _search(rgb, _detect_dlib, turns)
            return _result(faces, "dlib", size, degrees, _dlib_message(reason), reason)
        except DetectorUnavailableError as e:
            if detector == "dlib":
                raise
            dlib_reason = str(e).split(": ", 1)[-1]
        except Exception as e:
            if detector == "dlib":
                raise DetectorUnavailableError(f"dlib failed on this photo ({type(e).__name__}: {e})") from None
            dlib_reason = f"it failed on this photo ({type(e).__name__}: {e})"
    if detector == "auto" and not fan_tried:
        try:
            return run_fan(allow_download)
        except DetectorUnavailableError as e:
            reason = str(e).split(": ", 1)[-1]
        except Exception as e:
            reason = f"it failed on this photo ({type(e).__name__}: {e})"
    faces, degrees = _search(rgb, lambda im, _: _detect_haar(im), turns)
    details = {"dlib_reason": dlib_reason} if dlib_reason else {}
    return _result(faces, "haar", size, degrees, _haar_message(reason, dlib_reason), reason, **details)


def _fan_files_present() -> bool:
    """Both face-alignment weight files are cached (without importing face-alignment, which is slow)."""
    folder = fan_weights_dir()
    return all((folder / os.path.basename(u)).is_file() for u in _FAN_FILES.values())


def auto_source() -> tuple[str, str]:
    """The source "auto" would use now, and why - without loading any model (for ``weights list``)."""
    import importlib.util

    has_fa = importlib.util.find_spec("face_alignment") is not None
    if has_fa and _fan_files_present():
        return "fan", "its weights are in " + str(fan_weights_dir())
    dlib_reason = dlib_landmarks.unavailable_reason()
    if dlib_reason is None:
        return "dlib", "face-alignment's weights are not downloaded" if has_fa else "face-alignment is not installed"
    return "haar", f"face-alignment's weights are not downloaded and {dlib_reason}"


def landmark_source_lines() -> list[str]:
    """What ``hyperinverter weights list`` says about the landmark sources."""
    source, why = auto_source()
    state = "[ok]    " if source != "haar" else "[approx]"
    lines = [f"{state}  landmark source: {describe_source(source)}, since {why}"]
    if dlib_landmarks.available():
        lines.append(f"          dlib predictor: {dlib_landmarks.predictor_path()} ({dlib_landmarks.LICENCE_NOTE})")
    else:
        lines.append(f"          dlib landmarks: {dlib_landmarks.unavailable_reason()}; {dlib_landmarks.LICENCE_NOTE}")
    return lines
