"""dlib's face detector and 68-point landmark predictor: the landmarks FFHQ was aligned with.

Optional (``pip install "hyperinverter-gui[landmarks]"``): the ``dlib-bin`` wheels provide
dlib, the ``face-recognition-models`` package the predictor file
``shape_predictor_68_face_landmarks.dat``. Its training data (iBUG 300-W) is licensed for
non-commercial use only, so it is never required: without it the detector order simply
skips dlib.

The predictor file is located through importlib's package metadata *without importing*
``face_recognition_models`` (its ``__init__`` needs ``pkg_resources``, which current
setuptools no longer ships). ``HYPERINVERTER_DLIB_PREDICTOR`` may name the file instead
(e.g. the one from dlib.net, unpacked).

Detection: dlib's HOG detector on a working copy whose long side lies between
``MIN_SIDE`` and ``MAX_SIDE`` (small photos are enlarged, large ones reduced), padded by a
replicated border so faces cut by the photo's edge are still found, at upsample 1; a
detection must score at least ``MIN_SCORE`` (at upsample 1 the detector also fires weakly,
around 0.1, on badge-like patterns). When nothing is found the copy is searched once more at
upsample 2 (faces down to ~20 px of the copy), unless the copy is an enlarged tiny photo.
The predictor then runs on the full-resolution photo around each box, enlarged when the face
is small (dlib returns whole-pixel points).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.alignment.errors import DetectorUnavailableError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
PREDICTOR_ENV = "HYPERINVERTER_DLIB_PREDICTOR"
MODELS_PACKAGE = "face_recognition_models"
INSTALL_HINT = 'pip install "hyperinverter-gui[landmarks]" (from a checkout: pip install -e ".[landmarks]")'
LICENCE_NOTE = (
    "non-commercial use only: dlib's 68-point model was trained on the iBUG 300-W data set, "
    "whose licence excludes commercial use"
)

#: long side of the copy the HOG detector scans (0.4 s at upsample 1 on 2 cores for 1024 px)
MAX_SIDE = 1024
#: photos smaller than this (long side) are enlarged first, so small faces reach the detector's 80 px window
MIN_SIDE = 160
#: replicated border added around the copy, as a fraction of its long side
PAD_FRACTION = 0.1
#: detections scoring below this are dropped (real faces score 0.5-3; badges, textures up to ~0.2)
MIN_SCORE = 0.3
#: a second, finer search (upsample 2) is skipped when it would magnify the photo more than this
#: (an enlarged tiny photo: it would only find faces too small to align)
MAX_MAGNIFICATION = 8.0
#: detections of one face at several positions are merged when their boxes overlap this much (IoU)
MERGE_IOU = 0.5
#: the predictor sees the face at least this large (box side, px): dlib's points are whole pixels
LANDMARK_MIN_SIDE = 256
LANDMARK_MAX_ENLARGE = 8.0

_lock = threading.Lock()
_cache: dict[str, Any] = {}  # predictor path -> (detector, predictor), or the DetectorUnavailableError of loading it


def clear_cache(loaded: bool = False) -> None:
    """Forget earlier failures to load (and with ``loaded``, the loaded models too)."""
    with _lock:
        for key in [k for k, v in _cache.items() if loaded or isinstance(v, BaseException)]:
            del _cache[key]


def predictor_path() -> Path | None:
    """The 68-point predictor file: ``$HYPERINVERTER_DLIB_PREDICTOR``, else inside face-recognition-models.

    Found without importing the package (``find_spec`` of a top-level package runs none of its code).
    """
    env = os.environ.get(PREDICTOR_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_file() else None
    try:
        spec = importlib.util.find_spec(MODELS_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        p = Path(folder) / "models" / PREDICTOR_FILE
        if p.is_file():
            return p
    return None


def unavailable_reason() -> str | None:
    """Why dlib cannot be used here (None: it can), without importing or loading anything."""
    try:
        has_dlib = importlib.util.find_spec("dlib") is not None
    except (ImportError, ValueError):
        has_dlib = False
    if not has_dlib:
        return f"dlib is not installed ({INSTALL_HINT})"
    if predictor_path() is None:
        env = os.environ.get(PREDICTOR_ENV)
        if env:
            return f"{PREDICTOR_ENV} names {env}, which is not a file"
        return f"dlib's 68-point predictor file is not installed ({INSTALL_HINT})"
    return None


def available() -> bool:
    return unavailable_reason() is None


def _models() -> tuple[Any, Any]:
    """The (HOG detector, 68-point predictor), loaded once; raises why they cannot be had.

    Whether dlib and the predictor file are there is checked on every call (it costs next to
    nothing), so installing or removing the extra takes effect; loading happens once per file.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise DetectorUnavailableError(f"dlib cannot be used: {reason}")
    path = str(predictor_path())
    with _lock:
        cached = _cache.get(path)
        if isinstance(cached, BaseException):
            raise cached
        if cached is not None:
            return cached
        try:
            import dlib

            models = (dlib.get_frontal_face_detector(), dlib.shape_predictor(path))
        except Exception as e:  # a broken wheel, an unreadable or damaged .dat file
            text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            err = DetectorUnavailableError(f"dlib cannot be used: it could not be loaded ({type(e).__name__}: {text})")
            _cache[path] = err
            raise err from None
        _cache[path] = models
        return models


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def working_copy(rgb: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The copy the detector scans: (image, scale, pad); photo index x is copy index (x + 0.5) * scale - 0.5 + pad."""
    import cv2

    h, w = rgb.shape[:2]
    long_side = max(h, w)
    f = 1.0
    if long_side > MAX_SIDE:
        f = MAX_SIDE / long_side
    elif long_side < MIN_SIDE:
        f = MIN_SIDE / long_side
    img = rgb
    if f != 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
        f = img.shape[1] / w
    pad = int(round(PAD_FRACTION * max(img.shape[:2])))
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(img), f, pad


def detect_boxes(
    rgb: np.ndarray, *, min_score: float = MIN_SCORE, upsamples: tuple[int, ...] = (1, 2)
) -> list[tuple[tuple[float, float, float, float], float, int]]:
    """Face boxes (x0, y0, x1, y1) in photo pixels, their detection scores and the upsampling that found them.

    Each upsampling of ``upsamples`` is tried in turn until one finds a face (the later ones only
    while they magnify the photo at most ``MAX_MAGNIFICATION`` times).
    """
    detector, _ = _models()
    img, f, pad = working_copy(rgb)
    found: list = []
    for i, upsample in enumerate(upsamples):
        if i and f * 2**upsample > MAX_MAGNIFICATION:
            break
        with _lock:
            rects, scores, _ = detector.run(img, upsample, min_score)
        for r, s in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            # dlib's box holds pixels left..right inclusive; its edges, in photo index coordinates
            # (pixel i spans i - 0.5 .. i + 0.5): copy index c maps to (c - pad + 0.5) / f - 0.5.
            box = tuple(float(v) for v in (
                (r.left() - pad) / f - 0.5, (r.top() - pad) / f - 0.5,
                (r.right() + 1 - pad) / f - 0.5, (r.bottom() + 1 - pad) / f - 0.5,
            ))
            if all(_iou(box, k[0]) < MERGE_IOU for k in found):
                found.append((box, float(s), upsample))
        if found:
            break
    return found


def landmarks68(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 points [68, 2] for the face in ``box`` (its edges), both in photo index coordinates."""
    import cv2
    import dlib

    _, predictor = _models()
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0)
    g = min(LANDMARK_MAX_ENLARGE, max(1.0, LANDMARK_MIN_SIDE / side))
    m = 0.6 * side
    cx0, cy0 = max(0, int(math.floor(x0 - m))), max(0, int(math.floor(y0 - m)))
    cx1, cy1 = min(w, int(math.ceil(x1 + m))), min(h, int(math.ceil(y1 + m)))
    crop = rgb[cy0:cy1, cx0:cx1]
    if g > 1.0:
        crop = cv2.resize(crop, (round(crop.shape[1] * g), round(crop.shape[0] * g)), interpolation=cv2.INTER_CUBIC)
        gx, gy = crop.shape[1] / (cx1 - cx0), crop.shape[0] / (cy1 - cy0)
    else:
        gx = gy = 1.0
    crop = np.ascontiguousarray(crop)
    # box edges -> the first and last pixel inside the box, as indices of the (enlarged) crop
    rect = dlib.rectangle(
        int(round((x0 - cx0 + 0.5) * gx)), int(round((y0 - cy0 + 0.5) * gy)),
        int(round((x1 - cx0 + 0.5) * gx - 1)), int(round((y1 - cy0 + 0.5) * gy - 1)),
    )
    with _lock:
        shape = predictor(crop, rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    pts[:, 0] = (pts[:, 0] + 0.5) / gx - 0.5 + cx0
    pts[:, 1] = (pts[:, 1] + 0.5) / gy - 0.5 + cy0
    return pts
