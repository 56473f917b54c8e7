"""HEIC/HEIF photos (what phones save), read through pillow-heif with their orientation honoured."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pillow_heif = pytest.importorskip("pillow_heif")

from alignment_helpers import ASTRONAUT_POINTS  # noqa: E402

from hyperinverter_gui.alignment import align_face, load_photo  # noqa: E402
from hyperinverter_gui.cli.main import main as cli_main  # noqa: E402
from hyperinverter_gui.errors import ImageFileError  # noqa: E402
from hyperinverter_gui.media.images import IMAGE_SUFFIXES, read_rgb  # noqa: E402

ORIENTATION = 0x0112
# How a camera stores an upright picture for each EXIF orientation (what a viewer undoes).
STORED = {3: Image.ROTATE_180, 6: Image.ROTATE_90, 8: Image.ROTATE_270}


def _upright() -> np.ndarray:
    """64 wide, 40 high: red left, blue right, a green band at the top: any turn or flip shows."""
    a = np.zeros((40, 64, 3), np.uint8)
    a[:, :32] = (220, 30, 30)
    a[:, 32:] = (30, 30, 220)
    a[:8] = (30, 200, 30)
    return a


def _write(path, upright: np.ndarray, orientation: int, **kwargs) -> None:
    """Save ``upright`` the way a phone does: the pixels as the sensor saw them plus the EXIF tag."""
    stored = Image.fromarray(upright)
    if orientation in STORED:
        stored = stored.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored.save(path, exif=exif.tobytes(), quality=95, **kwargs)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_heic_opens_upright_like_the_same_jpeg(tmp_path, orientation):
    upright = _upright()
    heic, jpeg = tmp_path / "IMG_0001.HEIC", tmp_path / "IMG_0001.jpg"
    _write(heic, upright, orientation)
    _write(jpeg, upright, orientation)
    with Image.open(heic) as raw:
        assert raw.format == "HEIF"  # a real HEIF file (pillow-heif wrote it), not a renamed JPEG
    photo = load_photo(heic)
    like_jpeg = load_photo(jpeg)
    assert photo.rgb.shape == upright.shape == like_jpeg.rgb.shape  # turned upright: 40 high, 64 wide
    assert np.abs(photo.rgb.astype(int) - upright.astype(int)).mean() < 6  # lossy, but the same picture
    assert np.abs(photo.rgb.astype(int) - like_jpeg.rgb.astype(int)).mean() < 8
    assert photo.format == "HEIF" and photo.orientation == orientation
    # The EXIF kept for saving says "upright" (the pixels are), so nothing turns it again.
    if photo.exif:
        kept = Image.Exif()
        kept.load(photo.exif)
        assert kept.get(ORIENTATION, 1) == 1
    # The command line's reader (media.images) agrees.
    assert np.asarray(read_rgb(heic)).shape == upright.shape
    assert np.abs(np.asarray(read_rgb(heic)).astype(int) - photo.rgb.astype(int)).max() <= 1


def test_heic_and_heif_are_photo_suffixes():
    assert {".heic", ".heif"} <= IMAGE_SUFFIXES


def test_the_command_line_aligns_a_turned_heic_phone_photo(tmp_path, astronaut, capsys):
    photo = tmp_path / "phone.heic"
    _write(photo, astronaut, 6)  # stored on its side, tagged "turn 90° clockwise"
    coords = ",".join(f"{v}" for v in ASTRONAUT_POINTS.ravel())
    out = tmp_path / "aligned.png"
    rc = cli_main(["align", str(photo), "-o", str(out), "--landmarks", coords, "--size", "128"])
    assert rc == 0, capsys.readouterr().err
    expected = align_face(astronaut, ASTRONAUT_POINTS, output_size=128).image
    got = np.asarray(Image.open(out).convert("RGB"))
    # The landmarks are the upright photo's: only an upright read puts the face in the crop.
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 6


def test_the_editor_opens_a_heic(tmp_path, astronaut):
    from hyperinverter_gui.app.photos import align_photo

    photo = tmp_path / "phone.HEIF"
    _write(photo, astronaut, 8)
    out = align_photo(64, path=photo, points5=ASTRONAUT_POINTS)
    assert out.rgb.shape == astronaut.shape and out.aligned.shape == (64, 64, 3)


def test_without_pillow_heif_the_message_says_what_to_install(tmp_path, monkeypatch):
    import hyperinverter_gui.alignment.photo as photo_module
    import hyperinverter_gui.media.images as images_module

    bad = tmp_path / "IMG_0002.HEIC"
    bad.write_bytes(b"\0\0\0\x18not really a heif file" * 4)
    monkeypatch.setattr(photo_module, "register_heif", lambda: False)
    monkeypatch.setattr(images_module, "register_heif", lambda: False)
    with pytest.raises(ImageFileError, match="pip install pillow-heif"):
        load_photo(bad)
    with pytest.raises(ImageFileError, match="pip install pillow-heif"):
        read_rgb(bad)
