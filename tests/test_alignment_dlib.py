"""dlib's 68 landmarks (the FFHQ recipe's own), turned and small faces, and keeping the same face.

Like the other alignment tests these run offline with an empty torch hub, so face-alignment
has no weights and the "auto" order goes to dlib (installed by the ``test`` extra). The photos
are the ones scikit-image ships: the astronaut, its LFW face crops, the cat.

The reference crop is the FFHQ recipe applied to fixed points of the astronaut
(``alignment_helpers.ASTRONAUT_FFHQ_POINTS``, determined once, see there), rendered by our own
warp; what detection and alignment produce is compared with it in mean 8-bit levels over the
1024 px crop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")
pytest.importorskip("dlib", reason="the landmarks extra (dlib-bin, face-recognition-models) is not installed")

from alignment_helpers import ASTRONAUT_FFHQ_POINTS, ASTRONAUT_POINTS  # noqa: E402

from hyperinverter_gui.alignment import (  # noqa: E402
    DetectorUnavailableError,
    Face,
    FaceTracker,
    NoFaceError,
    align_face,
    box_iou,
    clear_detector_cache,
    detect_faces,
    landmark_source_lines,
    match_face,
)
from hyperinverter_gui.alignment import dlib_landmarks  # noqa: E402
from hyperinverter_gui.alignment.detect import unturn_points  # noqa: E402
from hyperinverter_gui.app.photos import align_photo, landmark_caption  # noqa: E402

pytestmark = pytest.mark.usefixtures("offline")

if dlib_landmarks.predictor_path() is None:
    pytest.skip("dlib's 68-point predictor file (face-recognition-models) is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


def _levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 8-bit levels."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.fixture(scope="module")
def reference_crop():
    from skimage import data

    return align_face(data.astronaut(), ASTRONAUT_FFHQ_POINTS, output_size=1024).image


def _rotated(img: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned by ``degrees`` (counter-clockwise) on a canvas that holds all of it, and the 2x3 map."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * s + w * c)), int(round(h * c + w * s))
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    out = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out, m


def _move(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def _hide_dlib(monkeypatch) -> None:
    """As if the landmarks extra were not installed (import and find_spec both fail)."""
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    clear_detector_cache()


# --- the FFHQ crop of a real photo ----------------------------------------------------------------


def test_auto_uses_dlib_offline_and_its_crop_matches_the_ffhq_reference(astronaut, reference_crop, record_property):
    res = detect_faces(astronaut)
    assert res.detector == "dlib" and not res.approximate
    assert "dlib" in res.message and "not downloaded" in res.message  # says which source ran, and why
    assert len(res.faces) == 1  # the badge on the suit is not a face (see the threshold test)
    face = res.face(0)
    assert face.landmarks68.shape == (68, 2) and face.detector == "dlib" and face.score > 0.5
    crop = align_face(astronaut, face, output_size=1024)
    assert crop.transform.detector == "dlib" and not crop.transform.approximate
    diff = _levels(crop.image, reference_crop)
    record_property("dlib_crop_levels", round(diff, 2))
    assert diff < 5.0, diff
    # in points: where the reference points land in the crop, against where the FFHQ recipe puts them
    ref_al = align_face(astronaut, ASTRONAUT_FFHQ_POINTS, output_size=1024).transform
    moved = np.hypot(*(crop.transform.to_aligned(ASTRONAUT_FFHQ_POINTS) - ref_al.to_aligned(ASTRONAUT_FFHQ_POINTS)).T)
    record_property("dlib_points_px_at_1024", (round(moved.mean(), 1), round(moved.max(), 1)))
    assert moved.mean() < 6.0 and moved.max() < 10.0, moved


def test_crop_difference_per_source(astronaut, reference_crop, record_property, capsys):
    """How far each landmark source's crop is from the FFHQ reference (the README's table)."""
    sources = {
        "dlib": detect_faces(astronaut, detector="dlib").face(0),
        "haar": detect_faces(astronaut, detector="haar").face(0),
        "hand-placed (tests' ASTRONAUT_POINTS)": ASTRONAUT_POINTS,
    }
    ref_t = align_face(astronaut, ASTRONAUT_FFHQ_POINTS, output_size=1024).transform
    table = {}
    for name, face in sources.items():
        al = align_face(astronaut, face, output_size=1024)
        moved = np.hypot(*(al.transform.to_aligned(ASTRONAUT_FFHQ_POINTS) - ref_t.to_aligned(ASTRONAUT_FFHQ_POINTS)).T)
        table[name] = (round(_levels(al.image, reference_crop), 1), round(moved.mean(), 1), round(moved.max(), 1))
    record_property("crop_levels_points_mean_max", json.dumps(table))
    with capsys.disabled():
        print("\ncrop vs FFHQ reference (levels, points px mean, max at 1024):", table)
    assert table["dlib"][0] < 5.0
    assert table["dlib"][0] < table["haar"][0] and table["dlib"][1] < table["haar"][1]


def test_score_threshold_keeps_the_badge_out(astronaut):
    """At upsample 1 the HOG detector fires weakly on the suit's badge; the score threshold drops it."""
    face_box = detect_faces(astronaut).face(0).box
    weak = dlib_landmarks.detect_boxes(astronaut, min_score=-0.5, upsamples=(1,))
    others = [(b, s) for b, s, _ in weak if box_iou(b, face_box) < 0.3]
    assert others, "the weak detections this threshold is for are no longer there"
    assert all(s < dlib_landmarks.MIN_SCORE for _, s in others)
    assert max(s for _, s in others) > -0.5
    assert [b for b, _, _ in dlib_landmarks.detect_boxes(astronaut, upsamples=(1,))] == [
        b for b, s, _ in weak if s >= dlib_landmarks.MIN_SCORE]


def test_predictor_is_loaded_once():
    first = dlib_landmarks._models()
    assert dlib_landmarks._models()[1] is first[1]


# --- rotated, small, turned ----------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [25.0, -25.0])
def test_rotated_face_is_found_and_aligned(astronaut, degrees, record_property):
    photo, m = _rotated(astronaut, degrees)
    res = detect_faces(photo)
    assert res.detector == "dlib" and len(res.faces) == 1 and "turn" not in res.details
    face = res.face(0)
    expected = _move(ASTRONAUT_FFHQ_POINTS, m)
    err = np.hypot(*(face.points5[[0, 1, 3, 4]] - expected).T)
    record_property("points_px_off", (round(err.mean(), 2), round(err.max(), 2)))
    assert err.mean() < 1.5 and err.max() < 2.5, err  # measured: 0.3-0.8 px
    # the crop is upright and close to the reference's crop of this photo (measured: 6.0 and 6.6 levels;
    # a tilted face costs dlib a little precision, and the canvas' black corners turn it into levels)
    got = align_face(photo, face, output_size=1024).image
    ref = align_face(photo, expected, output_size=1024).image
    diff = _levels(got, ref)
    record_property("crop_levels", round(diff, 2))
    assert diff < 8.0


def test_small_copy_is_found(astronaut, record_property):
    small = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    res = detect_faces(small)
    assert res.detector == "dlib" and len(res.faces) == 1
    s = 200 / 512
    expected = (ASTRONAUT_FFHQ_POINTS + 0.5) * s - 0.5
    err = np.hypot(*(res.face(0).points5[[0, 1, 3, 4]] - expected).T)
    record_property("points_px_off_at_200px", (round(err.mean(), 2), round(err.max(), 2)))
    assert err.mean() < 1.5 and err.max() < 2.5, err  # a 40 px face: about 1 px


@pytest.fixture(scope="module")
def upright_face():
    from skimage import data

    return detect_faces(data.astronaut()).face(0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_turned_photo_is_found_and_the_crop_is_upright(astronaut, upright_face, k):
    upright = upright_face
    turned = np.ascontiguousarray(np.rot90(astronaut, k))
    res = detect_faces(turned)
    assert res.details["turn"] == 90 * ((4 - k) % 4)
    assert "turned" in res.message
    face = res.face(0)
    # The photo turned back is the upright photo exactly, so the points are the upright ones, moved.
    back = unturn_points(face.points5, k, (astronaut.shape[1], astronaut.shape[0]))
    np.testing.assert_allclose(back, upright.points5, atol=1e-6)
    a = align_face(turned, face, output_size=256).image
    b = align_face(astronaut, upright, output_size=256).image
    assert _levels(a, b) < 0.5
    if k == 1:  # the editor's banner shows it: the outcome says so
        out = align_photo(256, rgb=turned)
        assert out.notice is not None and "turned" in out.notice


def test_unturn_points_inverts_rot90():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (7, 11), dtype=np.uint8)
    for k in range(4):
        t = np.rot90(img, k)
        ys, xs = np.mgrid[0:t.shape[0], 0:t.shape[1]]
        pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
        orig = unturn_points(pts, k, (img.shape[1], img.shape[0])).round().astype(int)
        assert np.array_equal(img[orig[:, 1], orig[:, 0]], t.ravel()), k


def test_no_face_on_the_cat():
    res = detect_faces(skdata.chelsea())  # upright, at upsample 1 and 2, then turned three ways
    assert res.detector == "dlib" and res.faces == [] and "turn" not in res.details
    with pytest.raises(NoFaceError, match=r"dlib detector"):
        res.face(0)


def test_detection_rate_on_the_lfw_face_crops(record_property, capsys):
    """skimage's LFW subset: 100 tight 25x25 face crops and 100 patches without a face."""
    crops = (skdata.lfw_subset() * 255).round().astype(np.uint8)
    found = [bool(detect_faces(np.dstack([c] * 3), turns=False).faces) for c in crops]
    faces, others = sum(found[:100]), sum(found[100:])
    record_property("lfw_faces_found_of_100", faces)
    record_property("lfw_non_faces_found_of_100", others)
    with capsys.disabled():
        print(f"\nLFW subset: {faces}/100 faces found, {others}/100 non-faces taken for faces")
    assert faces >= 85 and others <= 2


# --- keeping the same face --------------------------------------------------------------------------


def _face(x0, y0, side, points=None):
    if points is None:
        c = np.array([x0 + side / 2, y0 + side / 2])
        points = c + side * np.array([(-0.2, -0.1), (0.2, -0.1), (0, 0.05), (-0.15, 0.25), (0.15, 0.25)])
    return Face(box=(x0, y0, x0 + side, y0 + side), points5=np.asarray(points, np.float64), detector="dlib")


def test_box_iou_and_match_face():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    chosen = _face(400, 100, 100)
    big, moved = _face(0, 0, 300), _face(420, 110, 100)
    assert match_face(chosen, [big, moved]) == 1  # overlap, not size
    assert match_face(chosen.box, [big, moved]) == 1  # a bare box works too
    # boxes of another convention (another source: a box far tighter) overlap little: the landmarks decide
    tight = Face(box=(428, 128, 472, 182), points5=chosen.points5 + [1.0, -1.0], detector="fan")
    assert box_iou(chosen.box, tight.box) < 0.3
    assert match_face(chosen, [big, tight]) == 1
    assert match_face(chosen, [big, _face(470, 100, 100)]) is None  # moved too far: lost
    assert match_face(chosen, [big, _face(700, 100, 100)]) is None
    assert match_face(chosen, []) is None
    # two faces overlapping the old box about equally: the landmarks decide
    twin_a = _face(380, 100, 100)
    twin_b = _face(420, 100, 100, points=chosen.points5 + [2, 1])
    assert match_face(chosen, [twin_a, twin_b]) == 1


def test_face_tracker_follows_the_chosen_face_not_the_largest():
    frames = [
        [_face(0, 0, 300), _face(400, 100, 100)],  # the user picks the small face (index 1)
        [_face(10, 0, 300), _face(430, 110, 110)],
        [_face(440, 110, 140), _face(20, 0, 120)],  # it comes closer, the other one goes: now the largest
        [_face(30, 0, 130)],  # it left the frame
        [_face(40, 0, 300), _face(445, 112, 150)],  # and came back
    ]
    tracker = FaceTracker(first_index=1)
    picks = [tracker.pick(f) for f in frames]
    assert picks == [1, 1, 0, None, 1]
    assert tracker.lost == 0


def _two_faces(astronaut, a_scale: float, b_scale: float) -> np.ndarray:
    canvas = np.full((600, 1200, 3), 200, np.uint8)
    face = astronaut[40:240, 140:320]
    for x0, s in ((60, a_scale), (640, b_scale)):
        f = cv2.resize(face, (round(180 * s), round(200 * s)), interpolation=cv2.INTER_CUBIC)
        canvas[40:40 + f.shape[0], x0:x0 + f.shape[1]] = f
    return canvas


def test_the_chosen_face_is_kept_when_detecting_again(astronaut):
    before = align_photo(256, rgb=_two_faces(astronaut, 1.2, 1.0))
    assert len(before.faces) == 2 and before.faces[0].box[0] < 300  # the left face is the larger
    chosen = before.faces[0]
    # detected again after the right face grew: size order flips, the choice does not
    photo = _two_faces(astronaut, 1.2, 1.4)
    again = align_photo(256, rgb=photo, follow=chosen)
    assert again.faces[0].box[0] > 600 and again.face_index == 1
    assert again.transform.quad[:, 0].mean() < 400
    assert align_photo(256, rgb=photo).face_index == 0  # without follow: the largest
    # a sequence: the tracker keeps the face it was given
    tracker = FaceTracker(first_index=1)
    for scale in (1.0, 1.4, 1.1):
        out = align_photo(256, rgb=_two_faces(astronaut, 1.2, scale), tracker=tracker)
        assert out.faces[out.face_index].box[0] > 600


def test_caption_says_where_the_points_come_from(astronaut):
    out = align_photo(256, rgb=astronaut)
    assert landmark_caption(out.detector, out.faces, out.face_index, out.points5) == (
        "landmarks: dlib (68 points, as FFHQ was aligned)")
    moved = out.points5 + 3.0
    assert landmark_caption(out.detector, out.faces, out.face_index, moved) == "landmarks: set by hand"
    assert landmark_caption("", [], 0, None) == ""
    assert out.notice is None  # dlib is not approximate: no banner


# --- without dlib, the order before it ---------------------------------------------------------------


def test_without_dlib_the_previous_order_still_works(astronaut, monkeypatch):
    _hide_dlib(monkeypatch)
    res = detect_faces(astronaut)
    assert res.detector == "haar" and res.approximate
    assert "dlib is not available either" in res.message and "landmarks" in res.message
    assert len(res.faces) == 1
    with pytest.raises(DetectorUnavailableError, match="not installed"):
        detect_faces(astronaut, detector="dlib")
    assert any("dlib landmarks: dlib is not installed" in line for line in landmark_source_lines())


def test_without_dlib_in_a_fresh_process(tmp_path):
    """A process where the landmarks extra is missing: import blocked before anything of ours loads."""
    script = textwrap.dedent("""
        import socket, sys
        sys.modules["dlib"] = None
        sys.modules["face_recognition_models"] = None
        def no_network(*a, **k):
            raise OSError("network disabled in tests")
        socket.getaddrinfo = no_network
        socket.socket.connect = no_network
        from skimage import data
        from hyperinverter_gui.alignment import detect_faces, landmark_source_lines
        res = detect_faces(data.astronaut())
        print("RESULT", res.detector, len(res.faces))
        print("MESSAGE", res.message)
        for line in landmark_source_lines():
            print("LIST", line)
        print("DLIB-LOADED", "dlib" in sys.modules and sys.modules["dlib"] is not None)
    """)
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "empty_torch_home"), PYTHONPATH=str(ROOT))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(var, None)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    said = {}
    for line in r.stdout.splitlines():  # torch hub also prints its attempt to download
        key, _, rest = line.partition(" ")
        said.setdefault(key, []).append(rest)
    assert said["RESULT"] == ["haar 1"]
    assert "offline" in said["MESSAGE"][0] and "dlib is not available either" in said["MESSAGE"][0]
    assert said["LIST"][0].startswith("[approx]  landmark source: OpenCV Haar")
    assert "dlib is not installed" in said["LIST"][1] and "non-commercial" in said["LIST"][1]
    assert said["DLIB-LOADED"] == ["False"]


# --- the command line ---------------------------------------------------------------------------------


def test_align_command_names_the_source(tmp_path, astronaut, capsys):
    from PIL import Image

    from hyperinverter_gui.cli.alignment import main

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    assert main(["align", str(tmp_path / "a.png"), "-o", str(tmp_path / "d.png"), "--size", "256"]) == 0
    err = capsys.readouterr().err
    assert "landmarks from dlib (68 points, as FFHQ was aligned)" in err and "approximate" not in err
    assert main(["align", str(tmp_path / "a.png"), "-o", str(tmp_path / "h.png"), "--size", "256",
                 "--detector", "haar"]) == 0
    err = capsys.readouterr().err
    assert "landmarks from OpenCV Haar cascades (approximate" in err


def test_weights_list_names_the_landmark_source_and_licence(tmp_path, monkeypatch, capsys):
    from hyperinverter_gui.cli.main import main

    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "uw"))
    main(["weights", "list"])
    out = capsys.readouterr().out
    assert "landmark source: dlib (68 points, as FFHQ was aligned), since face-alignment's weights are not" in out
    assert "shape_predictor_68_face_landmarks.dat (non-commercial use only" in out
