"""Rendering the FFHQ-aligned crop, and putting an edited crop back into the photo.

The crop follows the order of operations of the FFHQ recipe: optional shrink of
very large faces, crop with a border, reflect padding (blurred and blended towards
the median colour) where the square leaves the photo, then the square is sampled
at ``SUPERSAMPLE`` times the output size and filtered down. Every step keeps an
exact record of its coordinate change, so the transform stored with the crop is
exact and paste-back is its inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from hyperinverter_gui.alignment.errors import LandmarkError, TransformFileError
from hyperinverter_gui.alignment.geometry import (
    BORDER_FRACTION,
    MAX_OUTPUT_SIZE,
    MIN_BORDER,
    PAD_BLUR_FRACTION,
    PAD_FRACTION,
    SUPERSAMPLE,
    AlignTransform,
    as_points5,
    ffhq_quad,
)
from hyperinverter_gui.alignment.photo import as_rgb_uint8
from hyperinverter_gui.errors import HyperInverterError


def _cv2():
    try:
        import cv2
    except ImportError:
        raise HyperInverterError(
            "face alignment needs OpenCV: pip install 'opencv-python>=4.8,<5'"
        ) from None
    return cv2


@dataclass
class AlignedFace:
    """An aligned crop and the transform that relates it to the original photo."""

    image: np.ndarray  # uint8 [S, S, 3]
    transform: AlignTransform
    face: Any = None  # the Face it was made from, when it came from a detector


def _face_points(face_or_points: Any) -> tuple[np.ndarray, str, bool]:
    """(points5, detector name, approximate) from a Face, a DetectionResult or raw points."""
    faces = getattr(face_or_points, "faces", None)
    if faces is not None:  # a DetectionResult: take the largest face
        if not faces:
            from hyperinverter_gui.alignment.detect import no_face_error

            raise no_face_error(face_or_points)
        face_or_points = faces[0]
    pts = getattr(face_or_points, "points5", None)
    if pts is not None:
        return (
            as_points5(pts),
            str(getattr(face_or_points, "detector", "manual")),
            bool(getattr(face_or_points, "approximate", False)),
        )
    return as_points5(face_or_points), "manual", False


def _bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (
        int(math.floor(quad[:, 0].min())),
        int(math.floor(quad[:, 1].min())),
        int(math.ceil(quad[:, 0].max())),
        int(math.ceil(quad[:, 1].max())),
    )


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with mirrored edges; wide blurs are done on a reduced copy (same look, far faster)."""
    cv2 = _cv2()
    if sigma <= 0:
        return img.copy()
    h, w = img.shape[:2]
    step = int(max(1, min(sigma // 3, min(h, w) // 8)))
    if step <= 1:
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(img, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / step, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _median_colour(img: np.ndarray) -> np.ndarray:
    flat = img.reshape(-1, img.shape[2])
    stride = max(1, flat.shape[0] // 4_000_000)
    return np.median(flat[::stride], axis=0).astype(np.float32)


def _pil_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased (Lanczos) resize of uint8 RGB to (width, height)."""
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


def render_aligned(
    rgb: np.ndarray, quad: np.ndarray, output_size: int, supersample: int = SUPERSAMPLE
) -> np.ndarray:
    """Sample the square ``quad`` of ``rgb`` into an ``output_size`` crop with the FFHQ steps."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    quad = np.asarray(quad, dtype=np.float64).copy()
    side = float(np.hypot(*(quad[3] - quad[0])))
    s = int(output_size)

    # 1. Shrink faces much larger than the output (antialiased), as the recipe does.
    shrink = int(math.floor(side / s * 0.5))
    if shrink > 1:
        small_side = side / shrink
        margin = (max(int(round(small_side * BORDER_FRACTION)), MIN_BORDER) + 4) * shrink
        x0, y0, x1, y1 = _bbox(quad)
        x0, y0 = max(x0 - margin, 0), max(y0 - margin, 0)
        x1, y1 = min(x1 + margin, w), min(y1 + margin, h)
        nw, nh = max(1, int(round((x1 - x0) / shrink))), max(1, int(round((y1 - y0) / shrink)))
        work = _pil_resize(rgb[y0:y1, x0:x1], (nw, nh))
        scale = np.array([nw / (x1 - x0), nh / (y1 - y0)])
        quad = (quad - [x0, y0] + 0.5) * scale - 0.5
        side = side / shrink
    else:
        work = rgb

    # 2. Crop the square's bounding box plus a border.
    hh, ww = work.shape[:2]
    border = max(int(round(side * BORDER_FRACTION)), MIN_BORDER)
    bx0, by0, bx1, by1 = _bbox(quad)
    cx0, cy0 = max(bx0 - border, 0), max(by0 - border, 0)
    cx1, cy1 = min(bx1 + border, ww), min(by1 + border, hh)
    if cx1 <= cx0 or cy1 <= cy0:
        raise LandmarkError("the face square lies entirely outside the photo; check the landmarks")
    if (cx1 - cx0) < ww or (cy1 - cy0) < hh:
        work = work[cy0:cy1, cx0:cx1]
        quad = quad - [cx0, cy0]
    hh, ww = work.shape[:2]

    # 3. Where the square leaves the photo: reflect-pad, blur the padding and fade it to the median colour.
    bx0, by0, bx1, by1 = _bbox(quad)
    pads = [max(border - bx0, 0), max(border - by0, 0), max(bx1 - ww + border, 0), max(by1 - hh + border, 0)]
    if max(pads) > border - 4:
        least = int(round(side * PAD_FRACTION))
        pl, pt, pr, pb = (max(p, least, 1) for p in pads)
        f = np.pad(work.astype(np.float32), ((pt, pb), (pl, pr), (0, 0)), mode="reflect")
        fh, fw = f.shape[:2]
        xs = np.arange(fw, dtype=np.float32)
        ys = np.arange(fh, dtype=np.float32)
        # 1 at the outer edge of the padding, 0 where the photo starts, negative inside it.
        ramp_x = 1.0 - np.minimum(xs / pl, (fw - 1 - xs) / pr)
        ramp_y = 1.0 - np.minimum(ys / pt, (fh - 1 - ys) / pb)
        ramp = np.maximum(ramp_x[None, :], ramp_y[:, None])[:, :, None]
        blurred = _gaussian_blur(f, side * PAD_BLUR_FRACTION)
        f += (blurred - f) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
        del blurred
        f += (_median_colour(f) - f) * np.clip(ramp, 0.0, 1.0)
        work = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        del f
        quad = quad + [pl, pt]

    # 4. Sample the square at supersample x the output size, then filter down.
    t = s * max(1, int(supersample))
    tl, bl, _, tr = quad
    ax = (tr - tl) / t
    ay = (bl - tl) / t
    origin = tl + 0.5 * ax + 0.5 * ay
    m = np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])
    big = cv2.warpAffine(
        np.ascontiguousarray(work), m, (t, t),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )
    if t != s:
        big = _pil_resize(big, (s, s))
    return np.ascontiguousarray(big)


def align_face(
    image: np.ndarray,
    face_or_points: Any,
    output_size: int = 1024,
    *,
    supersample: int = SUPERSAMPLE,
    source_name: str | None = None,
) -> AlignedFace:
    """FFHQ-aligned crop of one face.

    ``image`` is the upright photo (HxWx3 uint8; gray, alpha and 16-bit arrays are
    converted). ``face_or_points`` is a ``Face`` from :func:`detect_faces`, a
    ``DetectionResult`` (its largest face), or landmarks: 5 points (left eye,
    right eye, nose tip, left mouth corner, right mouth corner), 4 points (no
    nose), 68 points, or a flat list of their coordinates. Returns the crop and
    an :class:`AlignTransform` for :func:`paste_back`.
    """
    if not 8 <= int(output_size) <= MAX_OUTPUT_SIZE:
        raise LandmarkError(f"the output size must be between 8 and {MAX_OUTPUT_SIZE} pixels, not {output_size}")
    rgb = as_rgb_uint8(image)
    points5, detector, approximate = _face_points(face_or_points)
    quad = ffhq_quad(points5)
    side = float(np.hypot(*(quad[3] - quad[0])))
    if not math.isfinite(side):
        raise LandmarkError("the landmarks are too far apart to make a face square; check them")
    if side < 4:
        raise LandmarkError(f"the face is too small to align (its square is {side:.1f} px wide)")
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = _bbox(quad)
    if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
        raise LandmarkError(
            f"the landmarks put the face outside the {w}x{h} photo; check them (pixels of the upright photo)"
        )
    img = render_aligned(rgb, quad, int(output_size), supersample)
    tf = AlignTransform(
        quad=quad,
        source_size=(w, h),
        output_size=int(output_size),
        points5=points5,
        detector=detector,
        approximate=approximate,
        source_name=source_name,
    )
    face = face_or_points if hasattr(face_or_points, "points5") else None
    return AlignedFace(image=img, transform=tf, face=face)


# --- paste-back -----------------------------------------------------------------------------

#: default feathered face region in aligned coordinates (fractions of the side):
#: an ellipse around forehead, cheeks and chin of an FFHQ-aligned face
FACE_ELLIPSE = {"cx": 0.5, "cy": 0.55, "rx": 0.31, "ry": 0.40}
DEFAULT_FEATHER = 0.07
#: blur (in original pixels) applied to an edited crop that is finer than the photo before pasting
PASTE_ANTIALIAS_SIGMA = 0.3


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def aligned_mask(size: int | tuple[int, int], mask: str | np.ndarray = "face", feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Blend weights [H, W] float32 in 0..1 over the aligned crop.

    ``"face"``: a feathered ellipse covering the face (the GAN's background and
    hair edges are left out); ``"full"``: the whole square with a feathered rim.
    ``feather`` is the width of the soft edge as a fraction of the side. An
    array is taken as the weights themselves (resized to ``size``).
    """
    cv2 = _cv2()
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    if isinstance(mask, np.ndarray):
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[:, :, 0]
        if m.ndim != 2:
            raise ValueError(f"a mask must be a 2-D array, got shape {list(mask.shape)}")
        if m.dtype == bool:
            m = m.astype(np.float32)
        elif m.dtype == np.uint8:
            m = m.astype(np.float32) / 255.0
        m = np.clip(m.astype(np.float32), 0.0, 1.0)
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        return m
    feather = max(float(feather), 1e-3)
    u = ((np.arange(w, dtype=np.float64) + 0.5) / w)[None, :]
    v = ((np.arange(h, dtype=np.float64) + 0.5) / h)[:, None]
    if mask == "full":
        edge = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v))
        inside = (edge - 0.5 / min(w, h)) / feather
    elif mask == "face":
        e = FACE_ELLIPSE
        r = np.sqrt(((u - e["cx"]) / e["rx"]) ** 2 + ((v - e["cy"]) / e["ry"]) ** 2)
        # distance inside the ellipse, roughly in units of the side
        inside = (1.0 - r) * min(e["rx"], e["ry"]) / feather
    else:
        raise ValueError(f"unknown mask {mask!r}: use 'face', 'full' or an array")
    return _smoothstep(inside).astype(np.float32)


def _check_source(original: np.ndarray, transform: AlignTransform) -> np.ndarray:
    orig = as_rgb_uint8(original)
    w, h = orig.shape[1], orig.shape[0]
    if (w, h) != tuple(transform.source_size):
        sw, sh = transform.source_size
        raise TransformFileError(
            f"the transform was made for a {sw}x{sh} photo, but this photo is {w}x{h} "
            "(use the same, upright photo that was aligned)"
        )
    return orig


def _paste_region(transform: AlignTransform) -> tuple[int, int, int, int] | None:
    w, h = transform.source_size
    x0, y0, x1, y1 = _bbox(transform.quad)
    x0, y0 = max(x0 - 1, 0), max(y0 - 1, 0)
    x1, y1 = min(x1 + 2, w), min(y1 + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _weights_size(transform: AlignTransform) -> int:
    return int(min(max(transform.output_size, 256), 2048))


def _warp_to_region(src: np.ndarray, transform: AlignTransform, region, replicate: bool = False) -> np.ndarray:
    """Sample an aligned-space array at the original pixels of ``region`` (bilinear)."""
    cv2 = _cv2()
    x0, y0, x1, y1 = region
    sh, sw = src.shape[:2]
    m = np.vstack([transform.matrix_to_aligned((sw, sh)), [0, 0, 1]])
    shift = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1]])
    m = (m @ shift)[:2]
    return cv2.warpAffine(
        src, m, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT,
    )


def paste_mask(
    transform: AlignTransform,
    mask: str | np.ndarray = "face",
    feather: float = DEFAULT_FEATHER,
) -> np.ndarray:
    """The blend weights paste-back uses, in original-photo pixels: float32 [H, W] in 0..1."""
    w, h = transform.source_size
    out = np.zeros((h, w), np.float32)
    region = _paste_region(transform)
    if region is None:
        return out
    weights = aligned_mask(_weights_size(transform), mask, feather)
    x0, y0, x1, y1 = region
    out[y0:y1, x0:x1] = _warp_to_region(weights, transform, region)
    return out


def paste_back(
    original: np.ndarray,
    edited_aligned: np.ndarray,
    transform: AlignTransform,
    *,
    mask: str | np.ndarray = "face",
    feather: float = DEFAULT_FEATHER,
) -> np.ndarray:
    """Put an edited aligned crop back into the original photo, at full resolution.

    The crop is mapped through the inverse of the alignment transform (it may be
    any size; it is scaled to the transform's square) and blended with feathered
    weights (:func:`aligned_mask`), so there is no seam. Pixels where the weight
    is 0 are returned bit-for-bit unchanged. ``original`` must be the same upright
    photo the transform was made for.
    """
    orig = _check_source(original, transform)
    edited = as_rgb_uint8(edited_aligned)
    result = orig.copy()
    region = _paste_region(transform)
    if region is None:
        return result
    eh, ew = edited.shape[:2]
    # Original pixels per edited pixel. When the crop is finer than the photo, a light blur
    # (PASTE_ANTIALIAS_SIGMA original pixels) stops fine GAN detail from aliasing; the
    # warp itself samples bilinearly at the original pixel centres.
    scale = transform.side / max(ew, eh)
    face_src: np.ndarray = edited
    if scale < 1.0:
        face_src = _gaussian_blur(edited.astype(np.float32), PASTE_ANTIALIAS_SIGMA / scale)
    weights = aligned_mask(_weights_size(transform), mask, feather)
    x0, y0, x1, y1 = region
    alpha = _warp_to_region(weights, transform, region)
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        return result
    # Work only on the rows/columns the mask touches.
    ry0, ry1, rx0, rx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub = (x0 + rx0, y0 + ry0, x0 + rx1, y0 + ry1)
    alpha = alpha[ry0:ry1, rx0:rx1, None]
    face = _warp_to_region(face_src, transform, sub, replicate=True).astype(np.float32)
    base = orig[sub[1]:sub[3], sub[0]:sub[2]].astype(np.float32)
    blended = np.clip(np.rint(base + (face - base) * alpha), 0, 255).astype(np.uint8)
    keep = alpha[:, :, 0] <= 0
    blended[keep] = orig[sub[1]:sub[3], sub[0]:sub[2]][keep]
    result[sub[1]:sub[3], sub[0]:sub[2]] = blended
    return result
