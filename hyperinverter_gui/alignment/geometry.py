"""Geometry of the FFHQ alignment: landmarks -> oriented square, and the saved transform.

Coordinates are pixel *indices* as floats: the centre of the top-left pixel is (0, 0),
x grows to the right and y downwards. The photo is always the upright one (EXIF
orientation already applied).

The FFHQ recipe (NVIDIA ffhq-dataset, ``recreate_aligned_images``) builds the crop
square from four numbers of the face only: the two eye centres and the two mouth
corners. The nose tip, when known, is carried along for display but not used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hyperinverter_gui.alignment.errors import LandmarkError, TransformFileError

# --- Constants of the FFHQ recipe ------------------------------------------------------------
#: half-width of the square is the larger of these multiples of the eye distance ...
EYE_SPAN_FACTOR = 2.0
#: ... and of the eye-midpoint-to-mouth-midpoint distance
MOUTH_SPAN_FACTOR = 1.8
#: the square's centre sits this fraction of the way from the eye midpoint to the mouth midpoint
CENTRE_SHIFT = 0.1
#: context kept around the square when cropping, as a fraction of the square's side (at least 3 px)
BORDER_FRACTION = 0.1
MIN_BORDER = 3
#: reflect padding, at least this fraction of the side, where the square leaves the photo
PAD_FRACTION = 0.3
#: blur (sigma) of the padded area, as a fraction of the side
PAD_BLUR_FRACTION = 0.02
#: the square is rendered at this many times the output size, then filtered down (4096 for 1024)
SUPERSAMPLE = 4

TRANSFORM_FORMAT = "hyperinverter-alignment-transform"
TRANSFORM_VERSION = 1

# Bounds on numbers from users and files (documented in docs/design-notes.md). Coordinates are
# photo pixels: no photo the app can open (PIL's decompression-bomb limit) is near a million
# pixels wide, and beyond that float64 geometry overflows into inf/NaN instead of failing.
MAX_COORDINATE = 1_000_000.0
MAX_SOURCE_SIDE = 1_000_000  # width/height of the photo a transform refers to
MAX_OUTPUT_SIZE = 8192  # side of an aligned crop
MAX_TRANSFORM_BYTES = 1 << 20  # a transform is about 1 KB of JSON

#: order of the five points used everywhere in this package
POINT_NAMES = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")


def points5_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """Five points from the 68-point (iBUG / FAN) layout.

    Eye centres are the means of the six eyelid points of each eye (36-41, 42-47),
    the nose tip is point 30 and the mouth corners are points 48 and 54 (outer lip).
    """
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68 or lm.shape[1] < 2:
        raise LandmarkError(f"expected 68 landmarks of (x, y), got an array of shape {list(lm.shape)}")
    lm = lm[:, :2]
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def as_points5(points: Any) -> np.ndarray:
    """Normalise landmarks to a float64 array [5, 2] (nose row NaN when unknown).

    Accepts 5 points (eyes, nose, mouth corners), 4 points (eyes, mouth corners),
    68 points (iBUG layout), or the same as a flat list of 8, 10 or 136 numbers.
    Points labelled the mirrored way round (right eye first) are swapped, so the
    order of the two eyes and of the two mouth corners does not matter.
    """
    try:
        a = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise LandmarkError("landmarks must be numbers: x1,y1,x2,y2,...") from None
    if a.ndim == 1:
        if a.size % 2:
            raise LandmarkError(f"landmarks need an even count of numbers (x,y pairs); got {a.size}")
        a = a.reshape(-1, 2)
    if a.ndim != 2 or a.shape[1] not in (2, 3):
        raise LandmarkError(f"landmarks must be (x, y) pairs; got an array of shape {list(a.shape)}")
    n = a.shape[0]
    if n == 68:
        p = points5_from_68(a)
    elif n == 5:
        p = a[:, :2].copy()
    elif n == 4:
        p = np.insert(a[:, :2], 2, np.nan, axis=0)
    else:
        raise LandmarkError(
            f"expected 4 or 5 landmarks (left eye, right eye, [nose tip], left mouth corner, right mouth corner) "
            f"or 68, got {n} ({2 * n} numbers); give 8 or 10 numbers"
        )
    key = p[[0, 1, 3, 4]]
    if not np.all(np.isfinite(key)):
        raise LandmarkError("the eye and mouth-corner landmarks must be finite numbers")
    if np.nanmax(np.abs(p)) > MAX_COORDINATE:
        raise LandmarkError(f"landmarks must lie within +-{MAX_COORDINATE:g} pixels; got {np.nanmax(np.abs(p)):g}")
    if not (np.isfinite(p[2]).all() or np.isnan(p[2]).all()):
        raise LandmarkError("the nose landmark must be two numbers, or left out")
    eye_to_eye = p[1] - p[0]
    eye_to_mouth = (p[3] + p[4]) / 2 - (p[0] + p[1]) / 2
    if eye_to_eye[0] * eye_to_mouth[1] - eye_to_eye[1] * eye_to_mouth[0] < 0:
        # Mirror-labelled (the subject's left eye given first): swap both pairs.
        p = p[[1, 0, 2, 4, 3]]
    return p


def ffhq_square(points5: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, half-axis x and half-axis y of the FFHQ crop square for five points.

    The horizontal axis blends the eye line with the eye-to-mouth line turned by
    90 degrees; its length is the larger of 2x the eye distance and 1.8x the
    eye-to-mouth distance. The vertical axis is the horizontal one turned 90 degrees
    (pointing from the eyes towards the mouth). The centre is 10 % of the way from
    the eye midpoint to the mouth midpoint.
    """
    p = np.asarray(points5, dtype=np.float64)
    eye_mid = (p[0] + p[1]) / 2
    mouth_mid = (p[3] + p[4]) / 2
    eye_to_eye = p[1] - p[0]
    eye_to_mouth = mouth_mid - eye_mid
    turned = np.array([eye_to_mouth[1], -eye_to_mouth[0]])  # eye-to-mouth turned to point along the eye line
    direction = eye_to_eye + turned
    norm = math.hypot(*direction)
    half = max(EYE_SPAN_FACTOR * math.hypot(*eye_to_eye), MOUTH_SPAN_FACTOR * math.hypot(*eye_to_mouth))
    if norm < 1e-9 or half < 1e-9:
        raise LandmarkError("the landmarks are degenerate (eyes and mouth at the same place)")
    hx = direction / norm * half
    hy = np.array([-hx[1], hx[0]])
    centre = eye_mid + CENTRE_SHIFT * eye_to_mouth
    return centre, hx, hy


def ffhq_quad(points5: np.ndarray) -> np.ndarray:
    """Corners [4, 2] of the FFHQ crop square: top-left, bottom-left, bottom-right, top-right."""
    c, hx, hy = ffhq_square(points5)
    return np.stack([c - hx - hy, c - hx + hy, c + hx + hy, c + hx - hy])


def expected_positions(points5: np.ndarray, output_size: int = 1024) -> dict[str, np.ndarray]:
    """Where the FFHQ recipe puts eye midpoint and mouth midpoint in the aligned crop.

    Derived from the recipe alone: both lie on the vertical centre line; with
    m = eye-to-mouth distance, d = eye distance and h = the half side
    max(2 d, 1.8 m), the eye midpoint is 0.1 m above the centre and the mouth
    midpoint 0.9 m below it, in units where the side is 2 h. For usual faces
    (1.8 m >= 2 d) this gives fixed fractions 0.5 - 0.05/1.8 and 0.75 of the side.
    """
    p = np.asarray(points5, dtype=np.float64)
    d = math.hypot(*(p[1] - p[0]))
    m = math.hypot(*((p[3] + p[4]) / 2 - (p[0] + p[1]) / 2))
    h = max(EYE_SPAN_FACTOR * d, MOUTH_SPAN_FACTOR * m)
    s = output_size
    x = 0.5 * s - 0.5
    return {
        "eye_mid": np.array([x, (0.5 - CENTRE_SHIFT * m / (2 * h)) * s - 0.5]),
        "mouth_mid": np.array([x, (0.5 + (1 - CENTRE_SHIFT) * m / (2 * h)) * s - 0.5]),
    }


def _as_size(size: int | Sequence[int] | None, default: int) -> tuple[int, int]:
    if size is None:
        return default, default
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


@dataclass
class AlignTransform:
    """Everything needed to map between the original photo and its aligned crop.

    ``quad`` holds the crop square's corners in the upright original photo, in the
    order top-left, bottom-left, bottom-right, top-right of the aligned image. Pixel
    (i, j) of an aligned image of side S shows original position
    ``TL + (TR - TL) * (i + 0.5) / S + (BL - TL) * (j + 0.5) / S``.
    """

    quad: np.ndarray
    source_size: tuple[int, int]  # (width, height) of the upright original
    output_size: int
    points5: np.ndarray | None = None
    detector: str = "manual"
    approximate: bool = False
    source_name: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.quad = np.asarray(self.quad, dtype=np.float64).reshape(4, 2)
        self.source_size = (int(self.source_size[0]), int(self.source_size[1]))
        self.output_size = int(self.output_size)
        if self.points5 is not None:
            self.points5 = np.asarray(self.points5, dtype=np.float64).reshape(5, 2)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def side(self) -> float:
        """Length of the square's side in original pixels."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])))

    def matrix_to_source(self, size: int | Sequence[int] | None = None) -> np.ndarray:
        """2x3 affine: pixel index in an aligned image of ``size`` (default output_size) -> original."""
        w, h = _as_size(size, self.output_size)
        tl, bl, _, tr = self.quad
        ax = (tr - tl) / w
        ay = (bl - tl) / h
        t = tl + 0.5 * ax + 0.5 * ay
        return np.array([[ax[0], ay[0], t[0]], [ax[1], ay[1], t[1]]])

    def matrix_to_aligned(self, size: int | Sequence[int] | None = None) -> np.ndarray:
        """2x3 affine: original pixel index -> pixel index in an aligned image of ``size``."""
        m = np.vstack([self.matrix_to_source(size), [0.0, 0.0, 1.0]])
        return np.linalg.inv(m)[:2]

    def to_aligned(self, points: Any, size: int | Sequence[int] | None = None) -> np.ndarray:
        """Map original-photo points [N, 2] into the aligned crop."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix_to_aligned(size)
        return p @ m[:, :2].T + m[:, 2]

    def to_source(self, points: Any, size: int | Sequence[int] | None = None) -> np.ndarray:
        """Map aligned-crop points [N, 2] back into the original photo."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix_to_source(size)
        return p @ m[:, :2].T + m[:, 2]

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "format": TRANSFORM_FORMAT,
            "version": TRANSFORM_VERSION,
            "source_size": list(self.source_size),
            "output_size": self.output_size,
            "quad": [[float(x), float(y)] for x, y in self.quad],
            "quad_order": "top-left, bottom-left, bottom-right, top-right of the aligned image",
            "coordinates": "pixel indices of the upright (EXIF-rotated) photo; pixel centres at integers",
            "detector": self.detector,
            "approximate": bool(self.approximate),
        }
        if self.points5 is not None:
            d["points5"] = [[None if not np.isfinite(v) else float(v) for v in pt] for pt in self.points5]
        if self.source_name:
            d["source_name"] = self.source_name
        if self.extra:
            d["extra"] = self.extra
        return d

    def to_json(self) -> str:
        """The transform as a JSON text (see :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Any) -> "AlignTransform":
        if not isinstance(d, dict) or d.get("format") != TRANSFORM_FORMAT:
            raise TransformFileError("not an alignment transform (made by 'hyperinverter align --save-transform')")
        version = d.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise TransformFileError(f"the alignment transform's 'version' must be a whole number, not {version!r:.40}")
        if version > TRANSFORM_VERSION:
            raise TransformFileError(f"alignment transform version {version} is newer than this program")

        def numbers(key: str, shape: tuple[int, ...], allow_null: bool = False) -> np.ndarray:
            value = d.get(key)
            try:
                if allow_null:
                    value = [[np.nan if v is None else v for v in p] for p in value]
                # Only plain numbers: strings such as "1" are refused, not converted.
                flat = np.asarray(value, dtype=object).reshape(-1)
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
                    raise TypeError
                a = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise TransformFileError(f"the alignment transform is incomplete or corrupt: '{key}' is missing or "
                                         "not numbers") from None
            if a.shape != shape:
                raise TransformFileError(f"the alignment transform is incomplete or corrupt: '{key}' must have "
                                         f"shape {list(shape)}, not {list(a.shape)}")
            finite = a[np.isfinite(a)] if allow_null else a
            if not allow_null and not np.isfinite(a).all():
                raise TransformFileError(f"the alignment transform's '{key}' holds non-finite numbers")
            if finite.size and np.abs(finite).max() > MAX_COORDINATE:
                raise TransformFileError(f"the alignment transform's '{key}' holds coordinates beyond "
                                         f"+-{MAX_COORDINATE:g} pixels")
            return a

        quad = numbers("quad", (4, 2))
        size_a = numbers("source_size", (2,))
        if not (size_a == np.round(size_a)).all() or size_a.min() < 1 or size_a.max() > MAX_SOURCE_SIDE:
            raise TransformFileError(
                f"the alignment transform's 'source_size' must be two whole numbers in 1..{MAX_SOURCE_SIDE}")
        size = [int(v) for v in size_a]
        out = d.get("output_size")
        if isinstance(out, bool) or not isinstance(out, (int, float)) or not math.isfinite(out) or out != int(out) \
                or not 1 <= out <= MAX_OUTPUT_SIZE:
            raise TransformFileError(
                f"the alignment transform's 'output_size' must be a whole number in 1..{MAX_OUTPUT_SIZE}, "
                f"not {out!r:.40}")
        out = int(out)
        pts = numbers("points5", (5, 2), allow_null=True) if d.get("points5") is not None else None
        for key, kinds in (("detector", (str,)), ("source_name", (str, type(None))), ("approximate", (bool,)),
                           ("extra", (dict, type(None)))):
            if key in d and not isinstance(d[key], kinds):
                raise TransformFileError(f"the alignment transform's '{key}' has the wrong type "
                                         f"({type(d[key]).__name__})")
        tl, bl, br, tr = quad
        side = np.hypot(*(tr - tl))
        if side < 1e-6 or np.abs(br - (tr + bl - tl)).max() > 1e-3 * max(side, 1.0):
            raise TransformFileError("the alignment transform's quad is not a square")
        return cls(
            quad=quad,
            source_size=(size[0], size[1]),
            output_size=out,
            points5=pts,
            detector=str(d.get("detector", "manual")),
            approximate=bool(d.get("approximate", False)),
            source_name=d.get("source_name"),
            extra=dict(d.get("extra") or {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "AlignTransform":
        """Parse :meth:`to_json` output; raises ``TransformFileError`` on anything else."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TransformFileError(f"the alignment transform is a {type(text).__name__}, not JSON text")
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise TransformFileError("the alignment transform is not valid JSON") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically."""
        from hyperinverter_gui.media.atomic import atomic_write

        text = self.to_json()

        def write(tmp: str) -> None:
            Path(tmp).write_text(text, encoding="utf-8")

        return atomic_write(path, write, ".json")

    @classmethod
    def load(cls, path: str | Path) -> "AlignTransform":
        path = Path(path)
        if not path.exists():
            raise TransformFileError(f"alignment transform not found: {path}")
        if not path.is_file():  # a folder, FIFO or device: reading it could block
            raise TransformFileError(f"{path} is not a regular file, not an alignment transform")
        if path.stat().st_size > MAX_TRANSFORM_BYTES:
            raise TransformFileError(f"{path.name} is too large to be an alignment transform")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TransformFileError(f"cannot read {path.name}: {e.strerror or e}") from None
        try:
            return cls.from_json(data)
        except TransformFileError as e:
            raise TransformFileError(f"{path.name}: {e}") from None
