"""Real photo files through ``load_photo``/``save_photo`` and the ``align``/``paste-back`` commands.

Every awkward input (not an image, truncated, no face, 16-bit, gray, alpha, CMYK,
EXIF-rotated, 48 megapixels, wrong options) must give a correct result or a
one-line error, never a traceback. Offline and without face-alignment weights,
like the other alignment tests.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from alignment_helpers import ASTRONAUT_POINTS  # noqa: E402
from alignment_helpers import identical_outside as _identical_outside  # noqa: E402

from hyperinverter_gui.alignment import (  # noqa: E402
    AlignTransform,
    align_face,
    detect_faces,
    load_photo,
    paste_back,
    paste_mask,
    save_photo,
)
from hyperinverter_gui.cli.alignment import main  # noqa: E402
from hyperinverter_gui.errors import ImageFileError  # noqa: E402

pytestmark = pytest.mark.usefixtures("offline")


def _psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _detector_args():
    return ["--detector", "haar"]


# --- reading -----------------------------------------------------------------------------------


def test_not_an_image_truncated_missing_and_folder(tmp_path, astronaut, capsys):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not an image")
    with pytest.raises(ImageFileError, match="not an image"):
        load_photo(fake)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageFileError, match="truncated or corrupt"):
        load_photo(cut)
    with pytest.raises(ImageFileError, match="not found"):
        load_photo(tmp_path / "missing.png")
    with pytest.raises(ImageFileError, match="folder"):
        load_photo(tmp_path)
    for bad in (fake, cut, tmp_path / "missing.png"):
        rc, err = _cli(capsys, "align", bad, "-o", tmp_path / "out.png")
        assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_16bit_gray_rgba_and_other_formats(tmp_path, astronaut):
    a16 = astronaut.astype(np.uint16) * 256 + 100  # 16-bit values whose high byte is the 8-bit one
    cv2.imwrite(str(tmp_path / "rgb16.png"), a16[:, :, ::-1])
    p = load_photo(tmp_path / "rgb16.png")
    assert p.rgb.dtype == np.uint8 and np.abs(p.rgb.astype(int) - astronaut).max() <= 1
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    g = load_photo(tmp_path / "gray16.png")
    assert g.rgb.shape == (512, 512, 3) and np.abs(g.rgb[:, :, 1].astype(int) - gray).max() <= 1
    Image.fromarray(gray).save(tmp_path / "gray.jpg", quality=95)
    g8 = load_photo(tmp_path / "gray.jpg")
    assert g8.mode == "L" and (g8.rgb[:, :, 0] == g8.rgb[:, :, 2]).all()
    assert len(detect_faces(g8.rgb).faces) == 1
    for suffix in (".webp", ".bmp", ".tif"):
        Image.fromarray(astronaut).save(tmp_path / f"a{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
        assert np.array_equal(load_photo(tmp_path / f"a{suffix}").rgb, astronaut)
    # RGBA: alpha set aside, transparent pixels shown on white
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(tmp_path / "rgba.png")
    r = load_photo(tmp_path / "rgba.png")
    assert np.array_equal(r.alpha, alpha)
    assert (r.rgb[:, 0] == 255).all()  # fully transparent column -> white


def test_cmyk_jpeg(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    p = load_photo(tmp_path / "cmyk.jpg")
    assert p.rgb.shape == (512, 512, 3) and np.abs(p.rgb.astype(float) - astronaut).mean() < 6
    assert any("CMYK" in n for n in p.notes)
    rc, err = _cli(capsys, "align", tmp_path / "cmyk.jpg", "-o", tmp_path / "al.png", "--size", "256")
    assert rc == 0 and "CMYK" in err
    assert Image.open(tmp_path / "al.png").size == (256, 256)


def test_exif_rotated_jpeg_round_trip(tmp_path, astronaut, capsys):
    upright = np.ascontiguousarray(astronaut[:, 40:440])  # 400 wide, 512 tall
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a phone stores it: sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "TestCam"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif.tobytes())
    p = load_photo(tmp_path / "phone.jpg")
    assert p.orientation == 6 and p.size == (400, 512)
    assert np.abs(p.rgb.astype(float) - upright).mean() < 3
    rc, err = _cli(capsys, "align", tmp_path / "phone.jpg", "-o", tmp_path / "al.png",
                   "--save-transform", tmp_path / "t.json", *_detector_args())
    assert rc == 0, err
    t = AlignTransform.load(tmp_path / "t.json")
    assert t.source_size == (400, 512)
    assert np.abs(t.points5[0] - (ASTRONAUT_POINTS[0] - [40, 0])).max() < 4  # found in upright coordinates
    rc, err = _cli(capsys, "paste-back", tmp_path / "phone.jpg", tmp_path / "al.png", "-t", tmp_path / "t.json",
                   "-o", tmp_path / "edited.jpg")
    assert rc == 0, err
    with Image.open(tmp_path / "edited.jpg") as out:
        assert out.size == (400, 512)  # upright pixels ...
        ex = out.getexif()
        assert ex.get(0x0112, 1) == 1  # ... so no rotation is asked for
        assert ex.get(0x010F) == "TestCam"  # other EXIF kept
        assert np.abs(np.asarray(out, float) - upright).mean() < 3


def test_icc_profile_and_alpha_survive_paste_back(tmp_path, astronaut, capsys):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(astronaut).save(tmp_path / "icc.jpg", quality=95, icc_profile=icc)
    coords = ",".join(str(v) for v in ASTRONAUT_POINTS.ravel())
    assert _cli(capsys, "align", tmp_path / "icc.jpg", "-o", tmp_path / "al.png", "--landmarks", coords,
                "--save-transform", tmp_path / "t.json")[0] == 0
    assert Image.open(tmp_path / "al.png").info.get("icc_profile") == icc
    assert _cli(capsys, "paste-back", tmp_path / "icc.jpg", tmp_path / "al.png", "-t", tmp_path / "t.json",
                "-o", tmp_path / "out.jpg")[0] == 0
    assert Image.open(tmp_path / "out.jpg").info.get("icc_profile") == icc
    # alpha: a PNG with transparency keeps exactly the same alpha channel after paste-back
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :60] = 0
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(tmp_path / "rgba.png")
    assert _cli(capsys, "paste-back", tmp_path / "rgba.png", tmp_path / "al.png", "-t", tmp_path / "t.json",
                "-o", tmp_path / "out.png")[0] == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (512, 512, 4) and np.array_equal(out[:, :, 3], alpha)


# --- the commands -------------------------------------------------------------------------------


def test_align_and_paste_back_commands_round_trip(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    rc, err = _cli(capsys, "align", tmp_path / "astronaut.png", "-o", tmp_path / "al.png",
                   "--save-transform", tmp_path / "t.json")
    assert rc == 0, err
    assert "landmarks from dlib (68 points, as FFHQ was aligned)" in err  # the user is told the source
    aligned = np.asarray(Image.open(tmp_path / "al.png"))
    assert aligned.shape == (1024, 1024, 3)
    rc, err = _cli(capsys, "paste-back", tmp_path / "astronaut.png", tmp_path / "al.png",
                   "-t", tmp_path / "t.json", "-o", tmp_path / "back.png")
    assert rc == 0, err
    back = np.asarray(Image.open(tmp_path / "back.png"))
    alpha = paste_mask(AlignTransform.load(tmp_path / "t.json"))
    assert _identical_outside(back, astronaut, alpha)
    assert _psnr(back[alpha >= 0.999], astronaut[alpha >= 0.999]) >= 35
    # existing outputs are not replaced silently
    rc, err = _cli(capsys, "align", tmp_path / "astronaut.png", "-o", tmp_path / "al.png")
    assert rc == 2 and "--overwrite" in err
    assert _cli(capsys, "align", tmp_path / "astronaut.png", "-o", tmp_path / "al.png", "--overwrite",
                "--size", "512")[0] == 0
    assert Image.open(tmp_path / "al.png").size == (512, 512)


def test_manual_landmarks_and_face_choice(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    coords = ",".join(f"{v}" for v in ASTRONAUT_POINTS.ravel())
    assert _cli(capsys, "align", tmp_path / "a.png", "-o", tmp_path / "m.png", "--landmarks", coords,
                "--size", "256")[0] == 0
    expected = align_face(astronaut, ASTRONAUT_POINTS, output_size=256).image
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), expected)
    four = ",".join(f"{v}" for v in ASTRONAUT_POINTS[[0, 1, 3, 4]].ravel())
    assert _cli(capsys, "align", tmp_path / "a.png", "-o", tmp_path / "m4.png", "--landmarks", four,
                "--size", "256")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m4.png")), expected)  # the nose is not used
    # two faces: --face 2 is the smaller one
    canvas = np.full((600, 1100, 3), 200, np.uint8)
    face = astronaut[40:240, 140:320]
    canvas[100:300, 40:220] = face
    canvas[40:440, 600:960] = cv2.resize(face, (360, 400), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(canvas).save(tmp_path / "two.png")
    rc, err = _cli(capsys, "align", tmp_path / "two.png", "-o", tmp_path / "f2.png", "--face", "2",
                   "--save-transform", tmp_path / "f2.json", "--size", "256")
    assert rc == 0 and "2 faces found" in err
    assert AlignTransform.load(tmp_path / "f2.json").quad[:, 0].mean() < 300
    rc, err = _cli(capsys, "align", tmp_path / "two.png", "-o", tmp_path / "f3.png", "--face", "3")
    assert rc == 2 and "only 2 faces" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--landmarks", "1,2,3,4,5,6"], "needs 10 numbers"),
        (["--landmarks", "1,2,a,4,5,6,7,8"], "must be numbers"),
        (["--landmarks", "203,101,246,102,204,140,243,141", "--face", "2"], "cannot be used with --landmarks"),
        (["--face", "0"], "counts from 1"),
        (["--face", "5"], "only 1 face"),
        (["--detector", "fan"], "offline"),
    ],
)
def test_align_option_errors(tmp_path, astronaut, capsys, extra, message):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    rc, err = _cli(capsys, "align", tmp_path / "a.png", "-o", tmp_path / "out.png", *extra)
    assert rc == 2 and message in err and err.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out.png").exists()


def test_no_face_is_a_clear_error(tmp_path, capsys):
    Image.fromarray(np.full((400, 600, 3), 127, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.jpg")
    for photo in ("gray.png", "coffee.jpg"):
        rc, err = _cli(capsys, "align", tmp_path / photo, "-o", tmp_path / "out.png")
        assert rc == 2
        assert "error: no face was found" in err and "--landmarks" in err


def test_paste_back_errors(tmp_path, astronaut, capsys):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    al = align_face(astronaut, ASTRONAUT_POINTS, output_size=256)
    al.transform.save(tmp_path / "t.json")
    Image.fromarray(al.image).save(tmp_path / "al.png")
    Image.fromarray(astronaut[:300]).save(tmp_path / "other.png")
    Image.fromarray(al.image[:, :200]).save(tmp_path / "narrow.png")
    (tmp_path / "bad.json").write_text('{"format": "hyperinverter-alignment-transform", "quad": [1, 2]}')
    (tmp_path / "junk.json").write_text("not json")
    cases = [
        (["other.png", "al.png", "-t", "t.json"], "made for a 512x512 photo"),
        (["a.png", "narrow.png", "-t", "t.json"], "square"),
        (["a.png", "al.png", "-t", "bad.json"], "incomplete or corrupt"),
        (["a.png", "al.png", "-t", "junk.json"], "not valid JSON"),
        (["a.png", "al.png", "-t", "missing.json"], "not found"),
        (["a.png", "al.png", "-t", "t.json", "--feather", "0"], "--feather"),
    ]
    for args, message in cases:
        paths = [tmp_path / a if a.endswith((".png", ".json")) else a for a in args]
        rc, err = _cli(capsys, "paste-back", *paths, "-o", tmp_path / "out.png")
        assert rc == 2 and message in err, (args, err)
    rc, err = _cli(capsys, "paste-back", tmp_path / "a.png", tmp_path / "al.png", "-t", tmp_path / "t.json",
                   "-o", tmp_path / "out.gif")
    assert rc == 2 and "suffix" in err
    with pytest.raises(SystemExit) as e:  # argparse: usage message, exit status 2
        main(["align", str(tmp_path / "a.png"), "-o", str(tmp_path / "x.png"), "--size", "0"])
    assert e.value.code == 2


def test_48_megapixel_photo(tmp_path, astronaut, capsys):
    canvas = np.full((6000, 8000, 3), 90, np.uint8)
    big_face = cv2.resize(astronaut, (3072, 3072), interpolation=cv2.INTER_LINEAR)  # x6
    canvas[1500:4572, 2500:5572] = big_face
    res = detect_faces(canvas)
    assert len(res.faces) == 1
    truth = ASTRONAUT_POINTS * 6 + [2500 + 2.5, 1500 + 2.5]
    assert np.abs(res.faces[0].points5[:2] - truth[:2]).max() < 25  # eyes within ~4 px of the 512 original
    al = align_face(canvas, truth, output_size=256)  # side ~1030 px -> the shrink step (x2) is used
    out = paste_back(canvas, al.image, al.transform)
    alpha = paste_mask(al.transform)
    assert _identical_outside(out, canvas, alpha)
    # through the commands, as a JPEG
    Image.fromarray(canvas).save(tmp_path / "big.jpg", quality=90)
    rc, err = _cli(capsys, "align", tmp_path / "big.jpg", "-o", tmp_path / "al.png", "--save-transform",
                   tmp_path / "t.json", "--size", "256")
    assert rc == 0, err
    rc, err = _cli(capsys, "paste-back", tmp_path / "big.jpg", tmp_path / "al.png", "-t", tmp_path / "t.json",
                   "-o", tmp_path / "out.jpg")
    assert rc == 0, err
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (8000, 6000)


def test_save_photo_rejects_unknown_suffix_and_writes_atomically(tmp_path, astronaut):
    from hyperinverter_gui.errors import HyperInverterError

    with pytest.raises(HyperInverterError, match="cannot write"):
        save_photo(tmp_path / "x.gif", astronaut)
    with pytest.raises(HyperInverterError, match="folder does not exist"):
        save_photo(tmp_path / "nope" / "x.png", astronaut)
    save_photo(tmp_path / "x.png", astronaut)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), astronaut)
