"""Face alignment (FFHQ recipe), detection with its offline fallback, and paste-back.

No test touches the network or needs face-alignment's weights: an autouse fixture
points torch hub at an empty folder and makes every socket connection fail, so
face-alignment really tries to fetch its weights, really gets a URLError, and the
code under test really falls back. With dlib installed (the ``landmarks`` extra) "auto"
goes to dlib first; the tests of the Haar fallback hide dlib as if it were not installed
(tests/test_alignment_dlib.py tests dlib itself).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from alignment_helpers import ASTRONAUT_POINTS  # noqa: E402
from alignment_helpers import identical_outside as _identical_outside  # noqa: E402

from hyperinverter_gui.alignment import (  # noqa: E402
    AlignTransform,
    DetectorUnavailableError,
    FaceIndexError,
    LandmarkError,
    NoFaceError,
    TransformFileError,
    align_face,
    as_points5,
    detect_faces,
    ffhq_quad,
    paste_back,
    paste_mask,
    points5_from_68,
)
from hyperinverter_gui.alignment.detect import faces_from_fan_output  # noqa: E402

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture()
def no_dlib(monkeypatch):
    """As if the landmarks extra (dlib, face-recognition-models) were not installed."""
    from hyperinverter_gui.alignment import clear_detector_cache

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    clear_detector_cache()
    yield
    clear_detector_cache()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Plain bilinear sampling at index coordinates (edge pixels repeated) - independent of the code under test."""
    h, w = img.shape[:2]
    xs = np.clip(xs, 0, w - 1)
    ys = np.clip(ys, 0, h - 1)
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (xs - x0)[..., None]
    fy = (ys - y0)[..., None]
    f = img.astype(np.float64)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _square_frame(quad: np.ndarray, size: int):
    """Origin and the two per-output-pixel steps of the crop, from the quad corners (TL, BL, BR, TR)."""
    tl, bl, _, tr = quad
    return tl, (tr - tl) / size, (bl - tl) / size


def _expected_ffhq(points5: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye and mouth midpoints in the crop, worked out from the FFHQ recipe by hand.

    With e = eye->eye, v = eye_mid->mouth_mid, the square's x axis is the unit vector
    along e + (v_y, -v_x), its y axis that turned by 90 degrees, its half side
    h = max(2 |e|, 1.8 |v|) and its centre eye_mid + 0.1 v. So the eye midpoint sits
    at -0.1 v and the mouth midpoint at +0.9 v from the centre; in fractions of the
    side that is 0.5 + (offset . axis) / 2h. Pixel i covers [i, i+1) of the side, so
    fraction f lands at index f * size - 0.5. For a face with v perpendicular to e
    both lie on the vertical centre line, at 0.5 - 0.05 |v|/h and 0.5 + 0.45 |v|/h.
    """
    e = points5[1] - points5[0]
    v = (points5[3] + points5[4]) / 2 - (points5[0] + points5[1]) / 2
    axis_x = e + np.array([v[1], -v[0]])
    axis_x /= np.hypot(*axis_x)
    axis_y = np.array([-axis_x[1], axis_x[0]])
    h = max(2 * np.hypot(*e), 1.8 * np.hypot(*v))

    def place(offset):
        return (0.5 + np.array([offset @ axis_x, offset @ axis_y]) / (2 * h)) * size - 0.5

    return place(-0.1 * v), place(0.9 * v)


def _find_in_crop(crop: np.ndarray, photo: np.ndarray, quad: np.ndarray, source_point, guess, half=40, search=30):
    """Locate, in the aligned crop, the photo content around ``source_point`` (template matching).

    The template is rendered straight from the photo with the crop's orientation and
    scale; returns the crop position where it matches best.
    """
    size = crop.shape[0]
    _, ax, ay = _square_frame(quad, size)
    offs = np.arange(-half, half + 1, dtype=np.float64)
    gx, gy = np.meshgrid(offs, offs)
    src = np.asarray(source_point) + gx[..., None] * ax + gy[..., None] * ay
    tmpl = _bilinear(photo, src[..., 0], src[..., 1]).astype(np.float32)
    gx0, gy0 = int(round(guess[0])), int(round(guess[1]))
    win = crop[gy0 - half - search: gy0 + half + search + 1, gx0 - half - search: gx0 + half + search + 1].astype(np.float32)
    res = cv2.matchTemplate(win, tmpl, cv2.TM_CCOEFF_NORMED)
    _, score, _, loc = cv2.minMaxLoc(res)
    return np.array([gx0 - search + loc[0], gy0 - search + loc[1]], dtype=np.float64), score


def _synthetic_68(eye_l, eye_r, mouth_l, mouth_r, nose) -> np.ndarray:
    """68 landmarks whose eye rings average to the given eye centres."""
    lm = np.zeros((68, 2))
    ring = np.array([(-10, 0), (-5, -4), (5, -4), (10, 0), (5, 4), (-5, 4)], dtype=np.float64)
    lm[36:42] = np.asarray(eye_l) + ring
    lm[42:48] = np.asarray(eye_r) + ring
    lm[48] = mouth_l
    lm[54] = mouth_r
    lm[30] = nose
    lm[:17] = np.linspace(np.asarray(eye_l) - [30, 0], np.asarray(eye_r) + [30, 0], 17)
    return lm


# --- geometry ---------------------------------------------------------------------------------


def test_quad_upright_face_hand_computed():
    # eyes (400,300), (600,300); mouth corners (430,500), (570,500):
    # eye->eye = (200,0), eye->mouth = (0,200); direction = (200,0) + (200,0) -> (1,0);
    # half = max(2*200, 1.8*200) = 400; centre = (500,300) + 0.1*(0,200) = (500,320).
    lm68 = _synthetic_68((400, 300), (600, 300), (430, 500), (570, 500), (500, 400))
    p5 = points5_from_68(lm68)
    np.testing.assert_allclose(p5, [[400, 300], [600, 300], [500, 400], [430, 500], [570, 500]])
    quad = ffhq_quad(as_points5(lm68))
    np.testing.assert_allclose(quad, [[100, -80], [100, 720], [900, 720], [900, -80]], atol=1e-9)
    t = align_face(np.zeros((900, 1000, 3), np.uint8), lm68, output_size=1024, supersample=1).transform
    # eyes at fractions 0.375 / 0.625 across and (300+80)/800 = 0.475 down; mouth 580/800 = 0.725 down
    np.testing.assert_allclose(
        t.to_aligned(p5[[0, 1, 3, 4]]),
        [[383.5, 485.9], [639.5, 485.9], [0.4125 * 1024 - 0.5, 741.9], [0.5875 * 1024 - 0.5, 741.9]],
        atol=1e-6,
    )


def test_quad_wide_and_skewed_faces_hand_computed():
    # Wide face: eyes (400,300),(600,300), mouth (430,380),(570,380): m = 80 < d = 200, so half = 2d = 400,
    # direction = (200,0) + (80,0), centre = (500, 308).
    quad = ffhq_quad(as_points5([(400, 300), (600, 300), (430, 380), (570, 380)]))
    np.testing.assert_allclose(quad, [[100, -92], [100, 708], [900, 708], [900, -92]], atol=1e-9)
    # Skewed: eyes (0,0),(100,0), mouth corners (40,120),(100,120) -> eye->mouth = (20,120),
    # direction = (100,0) + (120,-20) = (220,-20), half = 1.8*|(20,120)| = 218.979 > 200,
    # hx = (220,-20)/220.907*218.979 = (218.080,-19.825), hy = (19.825, 218.080), centre = (52, 12).
    quad = ffhq_quad(as_points5([(0, 0), (100, 0), (np.nan, np.nan), (40, 120), (100, 120)]))
    np.testing.assert_allclose(
        quad,
        [[-185.906, -186.255], [-146.255, 249.906], [289.906, 210.255], [250.255, -225.906]],
        atol=2e-3,
    )


@pytest.mark.parametrize("angle_deg, scale, shift", [(30.0, 0.37, (1500.0, -40.0)), (-90.0, 2.5, (10.0, 3000.0))])
def test_quad_follows_rotation_scale_and_offset(angle_deg, scale, shift):
    base = np.array([(400, 300), (600, 300), (500, 400), (430, 500), (570, 500)], dtype=np.float64)
    base_quad = np.array([[100, -80], [100, 720], [900, 720], [900, -80]], dtype=np.float64)  # from the test above
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def move(p):
        return p @ rot.T * scale + shift

    lm68 = _synthetic_68(*move(base[[0, 1, 3, 4, 2]]))
    quad = ffhq_quad(as_points5(lm68))
    np.testing.assert_allclose(quad, move(base_quad), atol=1e-6)
    t = AlignTransform(quad=quad, source_size=(4000, 4000), output_size=256)
    # the features land exactly where they do for the upright face
    np.testing.assert_allclose(t.to_aligned(move(base))[[0, 1]], [[0.375 * 256 - 0.5, 0.475 * 256 - 0.5],
                                                                  [0.625 * 256 - 0.5, 0.475 * 256 - 0.5]], atol=1e-6)
    np.testing.assert_allclose(t.to_source(t.to_aligned(move(base))), move(base), atol=1e-6)


def test_mirror_labelled_points_are_swapped():
    p = as_points5([(600, 300), (400, 300), (500, 400), (570, 500), (430, 500)])
    np.testing.assert_allclose(p[[0, 1, 3, 4]], [[400, 300], [600, 300], [430, 500], [570, 500]])
    # an upside-down face (photo rotated 180 degrees) gets an upright crop
    up = as_points5([(600, 700), (400, 700), (500, 600), (570, 500), (430, 500)])
    quad = ffhq_quad(up)
    assert quad[0][1] > quad[1][1]  # the crop's top edge lies below its bottom edge in the photo


def test_face_near_border_crop_matches_direct_sampling():
    # A textured photo with the face at the left edge: part of the square lies outside (padding path).
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    photo = cv2.resize(small, (800, 600), interpolation=cv2.INTER_CUBIC)
    pts = np.array([(40, 250), (140, 250), (90, 300), (55, 350), (125, 350)], dtype=np.float64)
    al = align_face(photo, pts, output_size=256)
    quad = al.transform.quad
    # hand-computed: d = 100, m = 100, half = max(200, 180) = 200, centre (90, 260)
    np.testing.assert_allclose(quad, [[-110, 60], [-110, 460], [290, 460], [290, 60]], atol=1e-9)
    img = al.image.astype(np.float64)
    assert img.shape == (256, 256, 3) and np.isfinite(img).all()
    origin, ax, ay = _square_frame(quad, 256)
    jj, ii = np.mgrid[0:256, 0:256].astype(np.float64)
    src = origin + (ii[..., None] + 0.5) * ax + (jj[..., None] + 0.5) * ay
    direct = _bilinear(photo, src[..., 0], src[..., 1])
    # Well inside the photo (beyond the blur fringe of the padding) the crop is the photo itself.
    inside = src[..., 0] > 0.15 * 400 + 2
    assert _psnr(img[inside], direct[inside]) > 30
    # The padded part (left of x = 0) is a smooth, blurred continuation - no hard copy of texture.
    outside = src[..., 0] < -0.15 * 400
    grad_out = np.abs(np.diff(img, axis=1))[outside[:, 1:]].mean()
    grad_in = np.abs(np.diff(img, axis=1))[inside[:, 1:]].mean()
    assert grad_out < 0.5 * grad_in
    box = (slice(64, 192), slice(112, 240))  # columns 112+ map to x > 0.15 * 400 + 2
    assert inside[box].all()
    assert np.abs(_shift(img[box], direct[box])).max() < 0.1


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sub-pixel translation between two images (phase correlation on the central square, gray)."""
    n = min(a.shape[:2])
    y0, x0 = (a.shape[0] - n) // 2, (a.shape[1] - n) // 2
    a, b = a[y0:y0 + n, x0:x0 + n], b[y0:y0 + n, x0:x0 + n]
    ga = a.astype(np.float64).mean(2)
    gb = b.astype(np.float64).mean(2)
    win = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, win)
    return np.array([dx, dy])


def test_large_face_uses_the_shrink_step_exactly():
    rng = np.random.default_rng(1)
    photo = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    pts = np.array([(1000, 1200), (2000, 1200), (1500, 1600), (1150, 2100), (1850, 2100)], dtype=np.float64)
    al = align_face(photo, pts, output_size=128)  # side 4000 px -> shrink = floor(4000/128/2) = 15
    origin, ax, ay = _square_frame(al.transform.quad, 128)
    jj, ii = np.mgrid[0:128, 0:128].astype(np.float64)
    src = origin + (ii[..., None] + 0.5) * ax + (jj[..., None] + 0.5) * ay
    direct = _bilinear(photo, src[..., 0], src[..., 1])
    inside = (src[..., 0] > 200) & (src[..., 0] < 2800) & (src[..., 1] > 200) & (src[..., 1] < 2800)
    assert _psnr(al.image[inside], direct[inside]) > 30
    # no offset sneaks in through the shrink: the two agree to a small fraction of a pixel
    y, x = np.nonzero(inside)
    box = (slice(y.min() + 2, y.max() - 2), slice(x.min() + 2, x.max() - 2))
    assert np.abs(_shift(al.image[box], direct[box])).max() < 0.1


def test_bad_landmarks_are_clear_errors():
    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(LandmarkError, match="got 3"):
        align_face(img, [(1, 2), (3, 4), (5, 6)])
    with pytest.raises(LandmarkError, match="even count"):
        align_face(img, [1, 2, 3])
    with pytest.raises(LandmarkError, match="degenerate"):
        align_face(img, [(5, 5)] * 5)
    with pytest.raises(LandmarkError, match="outside"):
        align_face(img, [(1000, 1000), (1040, 1000), (1020, 1020), (1005, 1045), (1035, 1045)])
    with pytest.raises(LandmarkError, match="finite"):
        align_face(img, [(np.nan, 5), (40, 5), (20, 20), (5, 45), (35, 45)])


def test_fan_output_becomes_faces_largest_first():
    big = _synthetic_68((400, 300), (600, 300), (430, 500), (570, 500), (500, 400))
    small = big * 0.25 + 10
    faces = faces_from_fan_output([small, big], [np.array([10, 10, 200, 200, 0.99]), np.array([0, 0, 1000, 1000, 0.9])],
                                  scale=0.5)
    assert [f.detector for f in faces] == ["fan", "fan"]
    np.testing.assert_allclose(faces[0].box, (0, 0, 2000, 2000))
    np.testing.assert_allclose(faces[0].points5, points5_from_68(big) * 2)
    assert faces[0].landmarks68.shape == (68, 2) and faces[0].score == pytest.approx(0.9)


# --- detection and the offline fallback -----------------------------------------------------------


def test_offline_falls_back_to_haar_quickly(astronaut, no_dlib):
    pytest.importorskip("face_alignment")
    import face_alignment  # noqa: F401  (import time is not part of the failure time)

    t0 = time.perf_counter()
    res = detect_faces(astronaut)
    elapsed = time.perf_counter() - t0
    assert res.detector == "haar" and res.approximate
    assert "download" in res.message and "offline" in res.message and "Haar" in res.message
    assert elapsed < 5.0
    # the failure is remembered: the next photo does not try again
    t0 = time.perf_counter()
    assert detect_faces(astronaut).detector == "haar"
    assert time.perf_counter() - t0 < elapsed + 0.5
    with pytest.raises(DetectorUnavailableError, match="offline"):
        detect_faces(astronaut, detector="fan")


def test_fallback_when_face_alignment_is_not_installed(astronaut, monkeypatch, no_dlib):
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    res = detect_faces(astronaut)
    assert res.detector == "haar" and "face-alignment package is not installed" in res.message
    assert "dlib is not installed" in res.message
    assert len(res.faces) == 1


def test_no_download_allowed_uses_cache_only(astronaut, no_dlib):
    pytest.importorskip("face_alignment")
    res = detect_faces(astronaut, allow_download=False)
    assert res.detector == "haar" and "not in" in res.message


def test_fan_path_runs_from_cached_weights_without_network(astronaut, tmp_path, monkeypatch):
    """face-alignment itself, loaded from the torch hub cache: here with all-zero weights of the right shapes.

    S3FD then scores every place 0.5, below its threshold, so it finds no face: the
    result must say so as a FAN result (not fall back, not crash).
    """
    import os

    torch = pytest.importorskip("torch")
    pytest.importorskip("face_alignment")
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from hyperinverter_gui.alignment import fan_weights_present
    from hyperinverter_gui.alignment.detect import _FAN_FILES

    ckpt = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    files = [ckpt / os.path.basename(_FAN_FILES[k]) for k in ("s3fd", "2DFAN-4")]
    try:
        for net, path in zip((s3fd(), FAN(4)), files):
            torch.save({k: torch.zeros_like(v) for k, v in net.state_dict().items()}, path)
        assert fan_weights_present()
        res = detect_faces(cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA), device="cpu")
        assert res.detector == "fan" and not res.approximate and res.message is None
        assert res.faces == []
        with pytest.raises(NoFaceError, match="face-alignment"):
            res.face(0)
    finally:
        for path in files:  # ~180 MB; do not leave them in pytest's kept temp folders
            path.unlink(missing_ok=True)


def test_haar_finds_the_astronaut_face(astronaut):
    res = detect_faces(astronaut, detector="haar")
    assert len(res.faces) == 1
    face = res.face(0)
    x0, y0, x1, y1 = face.box
    assert x0 < 200 and y0 < 95 and x1 > 250 and y1 > 145  # box holds eyes and mouth
    assert face.approximate and face.landmarks68 is None
    # the eyes really come from the eye cascade: within 3 px of the hand-placed points
    assert np.abs(face.points5[:2] - ASTRONAUT_POINTS[:2]).max() <= 3.0
    # the mouth is only estimated from the face's proportions
    assert np.abs(face.points5[3:] - ASTRONAUT_POINTS[3:]).max() <= 8.0


@pytest.mark.parametrize("source", ["manual", "haar"])
def test_astronaut_crop_puts_eyes_and_mouth_where_ffhq_expects(astronaut, source):
    pts = ASTRONAUT_POINTS if source == "manual" else detect_faces(astronaut, detector="haar").face(0).points5
    al = align_face(astronaut, pts, output_size=1024)
    assert al.image.shape == (1024, 1024, 3) and al.image.dtype == np.uint8
    eye_exp, mouth_exp = _expected_ffhq(as_points5(pts), 1024)
    used = al.transform.points5
    np.testing.assert_allclose(al.transform.to_aligned((used[0] + used[1]) / 2)[0], eye_exp, atol=1e-6)
    np.testing.assert_allclose(al.transform.to_aligned((used[3] + used[4]) / 2)[0], mouth_exp, atol=1e-6)
    # ... and the pixels agree: the photo's content at each landmark is found at its expected place.
    for k, p in enumerate(used[[0, 1, 3, 4]]):
        expected = al.transform.to_aligned(p)[0]
        found, score = _find_in_crop(al.image, astronaut, al.transform.quad, p, expected)
        assert score > 0.95, (k, score)
        assert np.abs(found - expected).max() <= 2.0, (k, found, expected)
    if source == "haar":
        # how approximate the fallback is: the true eyes land within ~8 px, the true mouth within ~40 px
        true = al.transform.to_aligned(ASTRONAUT_POINTS)
        assert np.abs((true[0] + true[1]) / 2 - eye_exp).max() < 8
        assert np.abs((true[3] + true[4]) / 2 - mouth_exp).max() < 40


def test_astronaut_manual_crop_has_ffhq_layout(astronaut):
    al = align_face(astronaut, ASTRONAUT_POINTS, output_size=1024)
    eyes = al.transform.to_aligned(ASTRONAUT_POINTS[:2])
    # eye distance 42.5 px, eye->mouth 39 px: half side = 2 * 42.6, eye line near 0.477 of the side
    assert 485 < eyes[:, 1].mean() < 491
    assert abs(eyes[1, 0] - eyes[0, 0] - 256) < 1  # eyes a quarter of the side apart, as in FFHQ


def test_no_face_in_flat_gray_or_landscapes():
    for img in (np.full((480, 640, 3), 128, np.uint8), skdata.coffee(), skdata.rocket(), skdata.moon(), skdata.coins()):
        res = detect_faces(img, turns=False)  # (the turned tries: test_alignment_dlib.py, the cat)
        assert res.faces == []
        with pytest.raises(NoFaceError, match="no face") as e:
            res.face(0)
        assert "--landmarks" in str(e.value)


def test_several_faces_largest_first(astronaut):
    canvas = np.full((700, 1300, 3), 200, np.uint8)
    face = astronaut[40:240, 140:320]
    canvas[100:300, 50:230] = face
    canvas[50:50 + 400, 700:700 + 360] = cv2.resize(face, (360, 400), interpolation=cv2.INTER_CUBIC)
    res = detect_faces(canvas, detector="haar")
    assert len(res.faces) == 2
    assert res.faces[0].box[0] > 650 and res.faces[1].box[0] < 240
    assert res.faces[0].area > res.faces[1].area
    with pytest.raises(FaceIndexError, match="only 2 faces"):
        res.face(2)


# --- paste-back ---------------------------------------------------------------------------------


def test_paste_back_round_trip(astronaut):
    al = align_face(astronaut, ASTRONAUT_POINTS)
    back = paste_back(astronaut, al.image, al.transform)
    alpha = paste_mask(al.transform)
    face = alpha >= 0.999
    assert face.sum() > 5000  # the whole face, forehead to chin
    assert _psnr(back[face], astronaut[face]) >= 35.0
    assert _identical_outside(back, astronaut, alpha)
    assert (alpha == 0).sum() > 0.9 * 512 * 512 - 30000


def test_paste_back_edit_is_local_and_feathered(astronaut):
    al = align_face(astronaut, ASTRONAUT_POINTS)
    edited = 255 - al.image  # a drastic edit
    out = paste_back(astronaut, edited, al.transform)
    alpha = paste_mask(al.transform)
    assert _identical_outside(out, astronaut, alpha)
    centre = np.round(al.transform.to_source([[511.5, 560]])[0]).astype(int)
    assert np.abs(out[centre[1], centre[0]].astype(int) - (255 - astronaut[centre[1], centre[0]].astype(int))).max() < 40
    # soft edge: along the row through the face centre the weight ramps over several pixels on each side
    row = alpha[centre[1]]
    ramp = np.nonzero((row > 0.02) & (row < 0.98))[0]
    left, right = ramp[ramp < centre[0]], ramp[ramp > centre[0]]
    assert len(left) >= 4 and len(right) >= 4
    # and the blend between neighbours never jumps more than the edit allows over a feather step
    steps = np.abs(np.diff(row))
    assert steps.max() < 0.35


def test_paste_back_of_any_crop_size_and_full_mask(astronaut):
    al = align_face(astronaut, ASTRONAUT_POINTS, output_size=256)
    big_edit = cv2.resize(al.image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    out = paste_back(astronaut, big_edit, al.transform, mask="full")
    alpha = paste_mask(al.transform, mask="full")
    inner = alpha >= 0.999
    assert _psnr(out[inner], astronaut[inner]) > 30
    assert _identical_outside(out, astronaut, alpha)


def test_paste_back_face_partly_outside_the_photo(astronaut):
    photo = np.ascontiguousarray(astronaut[60:, 170:])  # face close to the top-left corner
    pts = ASTRONAUT_POINTS - [170, 60]
    al = align_face(photo, pts, output_size=512)
    assert al.transform.quad.min() < 0
    out = paste_back(photo, al.image, al.transform)
    alpha = paste_mask(al.transform)
    assert _identical_outside(out, photo, alpha)
    assert _psnr(out[alpha >= 0.999], photo[alpha >= 0.999]) > 33


def test_transform_json_round_trip_and_errors(tmp_path, astronaut):
    al = align_face(astronaut, ASTRONAUT_POINTS[[0, 1, 3, 4]], output_size=256, source_name="astronaut.png")
    t = AlignTransform.from_json(al.transform.to_json())
    np.testing.assert_array_equal(t.quad, al.transform.quad)
    assert t.source_size == (512, 512) and t.output_size == 256 and t.source_name == "astronaut.png"
    assert np.isnan(t.points5[2]).all()
    path = al.transform.save(tmp_path / "t.json")
    assert AlignTransform.load(path).to_dict() == al.transform.to_dict()
    for bad in ("{", "[]", '{"format": "something else"}', al.transform.to_json().replace('"quad"', '"qaud"')):
        with pytest.raises(TransformFileError):
            AlignTransform.from_json(bad)
    with pytest.raises(TransformFileError, match="512x512"):
        paste_back(np.zeros((300, 400, 3), np.uint8), al.image, al.transform)
