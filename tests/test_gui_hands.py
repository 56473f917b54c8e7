"""The editor as a hand uses it: sliders dragged with real pointer events, wheel and keys, zoom and
pan, the swipe compare, landmark drags at 200 %, the icon, the shortcuts and accessible names.

Every interaction here is a real Qt input event delivered to the widget (QTest mouse and key
events at widget coordinates; wheel events and Shift-held moves as QWheelEvent/QMouseEvent through
QApplication.sendEvent), never ``setValue``.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget  # noqa: E402

from hyperinverter_gui._qt.sliders import SliderPanel  # noqa: E402
from hyperinverter_gui._qt.zoom_view import ImageView, PhotoView  # noqa: E402
from hyperinverter_gui.editing.edits import Direction  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LONG = 120_000


# ---------------------------------------------------------------------- pointer helpers


def _move(widget: QWidget, pos: QPoint, modifiers=Qt.NoModifier) -> None:
    """A pointer move with the left button held (QTest's own move cannot carry Shift)."""
    if modifiers == Qt.NoModifier:
        QTest.mouseMove(widget, pos)
        return
    p = QPointF(pos)
    ev = QMouseEvent(QEvent.MouseMove, p, QPointF(widget.mapToGlobal(pos)), Qt.NoButton, Qt.LeftButton, modifiers)
    QApplication.sendEvent(widget, ev)


def drag(widget: QWidget, start: QPoint, delta: QPoint, steps: int = 10, modifiers=Qt.NoModifier) -> None:
    QTest.mousePress(widget, Qt.LeftButton, modifiers, start)
    for i in range(1, steps + 1):
        _move(widget, start + QPoint(delta.x() * i // steps, delta.y() * i // steps), modifiers)
    QTest.mouseRelease(widget, Qt.LeftButton, modifiers, start + delta)


def wheel(widget: QWidget, pos: QPoint | QPointF, notches: float = 1, modifiers=Qt.NoModifier) -> None:
    p = QPointF(pos)
    ev = QWheelEvent(p, QPointF(widget.mapToGlobal(p.toPoint())), QPoint(), QPoint(0, int(120 * notches)),
                     Qt.NoButton, modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


# ---------------------------------------------------------------------- the slider panel alone


def _directions() -> dict[str, Direction]:
    return {
        "age": Direction("age", torch.ones(1, 512), label="Age", group="InterFaceGAN", value_range=(-5.0, 5.0),
                         step=0.1),
        "eyes": Direction("eyes", torch.ones(1, 512), "ganspace", label="Eye openness", group="GANSpace",
                          layer_start=7, layer_stop=9, value_range=(-20.0, 20.0), step=0.5,
                          meta={"component": 54}),
    }


@pytest.fixture()
def panel(qtbot):
    host = QWidget()
    lay = QVBoxLayout(host)
    p = SliderPanel()
    p.set_directions(_directions(), num_ws=18)
    lay.addWidget(p)
    qtbot.addWidget(host)
    p.host = host  # keeps the window alive as long as the panel
    host.resize(340, 420)  # about the width the panel gets in the default window
    host.show()
    qtbot.waitExposed(host)
    events: list[tuple] = []
    p.valueChanged.connect(lambda n, v: events.append(("value", n, v)))
    p.dragStarted.connect(lambda n: events.append(("start", n)))
    p.dragFinished.connect(lambda n, v: events.append(("finish", n, v)))
    p.resetRequested.connect(lambda n: events.append(("reset", n)))
    p.events = events
    return p


def _reset(p: SliderPanel, name: str = "age") -> None:
    p.show_value(name, 0.0)
    p.events.clear()


def test_a_100_px_drag_moves_age_by_less_than_half_its_range(panel):
    s = panel.sliders["age"]
    assert s.groove_rect().width() >= 200 and s.track_length() >= 200
    drag(s, s.handle_center(), QPoint(100, 0))
    moved = panel.value("age")
    assert 0 < moved < 5.0, moved  # half of -5..5; the old 25 px track went to +5 in 8 px
    assert moved == pytest.approx(100 * 10 / s.track_length(), abs=0.02)  # the handle follows the pointer
    kinds = [e[0] for e in panel.events]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("start") == 1
    assert panel.events[-1] == ("finish", "age", moved)
    assert panel.value_boxes["age"].value() == pytest.approx(moved)
    # Dragging back to the start returns to 0.
    drag(s, s.handle_center(), QPoint(-100, 0))
    assert abs(panel.value("age")) <= 0.01


def test_shift_drag_is_ten_times_finer_and_pressing_shift_mid_drag_does_not_jump(panel):
    s = panel.sliders["age"]
    drag(s, s.handle_center(), QPoint(100, 0))
    coarse = panel.value("age")
    _reset(panel)
    drag(s, s.handle_center(), QPoint(100, 0), modifiers=Qt.ShiftModifier)
    fine = panel.value("age")
    assert 0 < fine and fine == pytest.approx(coarse / 10, abs=0.011), (coarse, fine)
    # 50 px plain, then Shift held for 50 px more: 0.5 + 0.05 of the coarse move, no jump.
    _reset(panel)
    start = s.handle_center()
    QTest.mousePress(s, Qt.LeftButton, Qt.NoModifier, start)
    for i in range(1, 6):
        _move(s, start + QPoint(10 * i, 0))
    half = panel.value("age")
    for i in range(6, 11):
        _move(s, start + QPoint(10 * i, 0), Qt.ShiftModifier)
        assert panel.value("age") >= half - 0.011  # never jumps back or ahead
    QTest.mouseRelease(s, Qt.LeftButton, Qt.ShiftModifier, start + QPoint(100, 0))
    assert panel.value("age") == pytest.approx(coarse * 0.55, abs=0.03)


def test_a_click_that_does_not_move_keeps_the_value(panel):
    s = panel.sliders["age"]
    drag(s, s.handle_center(), QPoint(60, 0))
    value = panel.value("age")
    panel.events.clear()
    QTest.mouseClick(s, Qt.LeftButton, Qt.NoModifier, s.handle_center())  # on the handle
    QTest.mouseClick(s, Qt.LeftButton, Qt.NoModifier, QPoint(s.width() - 3, s.height() // 2))  # far right
    QTest.mouseClick(s, Qt.LeftButton, Qt.NoModifier, QPoint(4, s.height() // 2))  # far left
    drag(s, s.handle_center(), QPoint(1, 0), steps=1)  # a trembling hand
    assert panel.value("age") == value and panel.events == []


def test_wheel_arrow_keys_and_page_keys_step(panel):
    s = panel.sliders["age"]
    c = s.handle_center()
    wheel(s, c, 1)
    assert panel.value("age") == pytest.approx(0.1)
    wheel(s, c, -3)
    assert panel.value("age") == pytest.approx(-0.2)
    wheel(s, c, 1, Qt.ShiftModifier)  # a tenth of a step
    assert panel.value("age") == pytest.approx(-0.19)
    wheel(s, c, 1, Qt.ControlModifier)  # a big step
    assert panel.value("age") == pytest.approx(0.81)
    _reset(panel)
    s.setFocus()
    QTest.keyClick(s, Qt.Key_Right)
    QTest.keyClick(s, Qt.Key_Right)
    assert panel.value("age") == pytest.approx(0.2)
    QTest.keyClick(s, Qt.Key_Left)
    assert panel.value("age") == pytest.approx(0.1)
    QTest.keyClick(s, Qt.Key_PageUp)
    assert panel.value("age") == pytest.approx(1.1)
    QTest.keyClick(s, Qt.Key_PageDown)
    QTest.keyClick(s, Qt.Key_PageDown)
    assert panel.value("age") == pytest.approx(-0.9)
    QTest.keyClick(s, Qt.Key_Right, Qt.ShiftModifier)
    assert panel.value("age") == pytest.approx(-0.89)
    # Each was a plain value change (one undo step in the window), never a drag.
    assert all(e[0] == "value" for e in panel.events) and len(panel.events) == 7
    # The wheel steps a direction by its own step (0.5 here).
    e = panel.sliders["eyes"]
    wheel(e, e.handle_center(), 2)
    assert panel.value("eyes") == pytest.approx(1.0)


def test_a_number_typed_in_the_value_box_sets_the_slider(panel):
    box = panel.value_boxes["age"]
    QTest.mouseClick(box, Qt.LeftButton)
    box.selectAll()
    QTest.keyClicks(box, "1.25")
    assert panel.value("age") == 0  # nothing until Enter
    QTest.keyClick(box, Qt.Key_Return)
    assert panel.value("age") == pytest.approx(1.25) and panel.sliders["age"].value() == 125
    assert panel.events == [("value", "age", 1.25)]
    box.selectAll()
    QTest.keyClicks(box, "9")  # beyond +5: the box does not take it
    QTest.keyClick(box, Qt.Key_Return)
    assert panel.value("age") == pytest.approx(1.25)
    box.selectAll()
    QTest.keyClicks(box, "-4.5")
    QTest.keyClick(box, Qt.Key_Enter)
    assert panel.value("age") == pytest.approx(-4.5) and box.text() == "-4.50"
    assert panel.events == [("value", "age", 1.25), ("value", "age", -4.5)]


def test_double_click_reset_button_and_delete_reset(panel):
    s = panel.sliders["age"]
    drag(s, s.handle_center(), QPoint(40, 0))
    value = panel.value("age")
    panel.events.clear()
    QTest.mouseDClick(s, Qt.LeftButton, Qt.NoModifier, s.handle_center())
    assert panel.events == [("reset", "age")] and panel.value("age") == value  # the window sets 0
    QTest.mouseClick(panel.reset_buttons["age"], Qt.LeftButton)
    s.setFocus()
    QTest.keyClick(s, Qt.Key_Delete)
    assert panel.events == [("reset", "age")] * 3


def test_tooltips_say_what_a_direction_does_and_which_ws_it_touches(panel):
    age, eyes = panel.sliders["age"].toolTip(), panel.sliders["eyes"].toolTip()
    assert "InterFaceGAN" in age and "ws 0–17 (all 18)" in age
    assert "GANSpace" in eyes and "component 54" in eyes and "ws 7–8" in eyes
    for tip in (age, eyes):
        assert "Shift+drag" in tip and "Page Up/Down" in tip and "double-click" in tip
    assert panel.sliders["age"].accessibleName() == "Age slider"
    assert panel.value_boxes["age"].accessibleName() == "Age value"
    assert panel.reset_buttons["age"].accessibleName() == "Reset Age"


def test_the_track_grows_with_the_panel(panel):
    s = panel.sliders["age"]
    host = panel.host
    narrow = s.width()
    host.resize(700, 420)
    QTest.qWait(20)
    assert s.width() >= narrow + 300
    assert panel.minimumWidth() >= 250  # a 200 px track at the narrowest


# ---------------------------------------------------------------------- zoom, pan, swipe


def _gradient(channel: int, w: int = 200, h: int = 160) -> np.ndarray:
    """Channel ``channel`` = x, green (or blue, when x is green) = y: each pixel says where it is."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., channel] = np.arange(w)[None, :] % 256
    a[..., 1 if channel != 1 else 2] = np.arange(h)[:, None] % 256
    return a


@pytest.fixture()
def view(qtbot):
    v = ImageView("nothing")
    qtbot.addWidget(v)
    v.resize(420, 338)  # a 420 x 320 image area above the caption
    v.show()
    qtbot.waitExposed(v)
    v.set_image(_gradient(2), "edited")
    return v


def test_the_wheel_zooms_around_the_pointer_and_back_to_fit(view):
    assert view.zoom() is None
    pos = QPointF(150, 120)
    under = view.to_image(pos)
    start = view.shown_zoom()
    wheel(view, pos, 1)
    assert view.shown_zoom() == pytest.approx(start * 1.25)
    after = view.to_image(pos)
    assert after[0] == pytest.approx(under[0], abs=0.01) and after[1] == pytest.approx(under[1], abs=0.01)
    wheel(view, pos, 3)
    assert view.to_image(pos)[0] == pytest.approx(under[0], abs=0.01)
    wheel(view, pos, -10)
    assert view.zoom() is None  # zoomed out past the fitted size: fitted


def test_a_drag_pans_a_zoomed_image(view):
    view.set_zoom(4.0)  # 800 x 640: larger than the view
    before = view.image_rect()
    drag(view, QPoint(200, 150), QPoint(-60, -40))
    after = view.image_rect()
    assert (after.x() - before.x(), after.y() - before.y()) == pytest.approx((-60, -40))
    drag(view, QPoint(200, 150), QPoint(5000, 5000), steps=4)  # cannot be dragged out of sight
    r = view.image_rect()
    assert r.left() == pytest.approx(0) and r.top() == pytest.approx(0)
    QTest.mouseDClick(view, Qt.LeftButton, Qt.NoModifier, QPoint(200, 150))
    assert view.zoom() is None
    QTest.mouseDClick(view, Qt.LeftButton, Qt.NoModifier, QPoint(200, 150))
    assert view.zoom() == pytest.approx(1.0)  # double-click: fit <-> 100 %


def test_swipe_compare_shows_the_photo_left_and_the_edit_right_at_the_same_spot(view):
    view.set_compare(_gradient(0), ("photo", "edited"))  # before: x in red; after: x in blue
    view.set_zoom(2.0, QPointF(210, 160))
    x_div = view.divider_x()
    assert x_div == pytest.approx(210)
    shot = view.grab().toImage()

    def pixel(x: int, y: int):
        c = shot.pixelColor(x, y)
        return c.red(), c.green(), c.blue()

    for x in (60, 150, 200):  # left of the divider: the photo, at this spot of the image
        r, g, b = pixel(x, 100)
        assert b == 0 and abs(r - int(view.to_image(QPointF(x + 0.5, 100.5))[0])) <= 1
    for x in (220, 300, 400):  # right: the edit, same zoom and pan
        r, g, b = pixel(x, 100)
        assert r == 0 and abs(b - int(view.to_image(QPointF(x + 0.5, 100.5))[0])) <= 1
    # Drag the divider by its knob to a quarter of the width; between there and the old spot: the edit.
    knob = QPoint(int(x_div), 160)
    drag(view, knob, QPoint(-105, 0))
    assert view.divider_x() == pytest.approx(105, abs=1)
    shot = view.grab().toImage()
    c = shot.pixelColor(150, 100)
    assert c.red() == 0 and c.blue() > 0
    # Arrow keys move it too, with the view focused.
    view.setFocus()
    QTest.keyClick(view, Qt.Key_Right)
    assert view.divider_x() > 105


def test_a_new_preview_size_keeps_the_zoomed_spot(view):
    view.set_zoom(2.0, QPointF(100, 100))
    rect = view.image_rect()
    view.set_image(_gradient(2, 100, 80), "preview")  # the same frame at half the resolution
    assert view.image_rect() == rect
    assert view.zoom() == pytest.approx(4.0)  # the same size on screen is 4 device px per preview pixel
    view.set_image(_gradient(2, 300, 100), "another shape")
    assert view.zoom() is None


FACE_POINTS = np.array([(80.0, 60.0), (120.0, 60.0), (100.0, 80.0), (85.0, 100.0), (115.0, 100.0)])


@pytest.fixture()
def photo(qtbot):
    v = PhotoView()
    qtbot.addWidget(v)
    v.resize(420, 338)
    v.show()
    qtbot.waitExposed(v)
    v.set_image(_gradient(1, 400, 320), "photo.jpg")  # fitted at 1:1, so 200 % is a real zoom-in
    v.set_overlay([(60, 40, 140, 120), (150, 20, 195, 70)], 0, FACE_POINTS, False)
    edits, faces = [], []
    v.pointsEdited.connect(edits.append)
    v.faceClicked.connect(faces.append)
    v.edits, v.faces = edits, faces
    return v


def test_a_landmark_dragged_at_200_percent_moves_by_half_the_pointer_distance(photo):
    photo.set_zoom(2.0, photo.to_widget(100, 80))
    assert photo.zoom() == pytest.approx(2.0) and photo.scale() == pytest.approx(2.0 / photo.device_ratio())
    nose = photo.to_widget(*FACE_POINTS[2])
    start = QPoint(round(nose.x()) + 2, round(nose.y()) - 1)  # grabbed a little off-centre: no jump
    rect = photo.image_rect()
    drag(photo, start, QPoint(40, 20))
    assert photo.image_rect() == rect  # the point moved, not the image
    assert len(photo.edits) == 1
    moved = photo.edits[0] - FACE_POINTS
    assert moved[2] == pytest.approx((20.0, 10.0))  # 40 x 20 screen px at 200 % = 20 x 10 image px
    assert np.abs(np.delete(moved, 2, axis=0)).max() == 0
    # A click on a point without moving it changes nothing (no needless re-alignment).
    eye = photo.to_widget(*FACE_POINTS[0]).toPoint()
    QTest.mouseClick(photo, Qt.LeftButton, Qt.NoModifier, eye)
    assert len(photo.edits) == 1
    # A drag on empty image pans; the points stay where they are in the image.
    drag(photo, QPoint(20, 300), QPoint(30, -30))
    assert len(photo.edits) == 1 and photo.image_rect() != rect
    assert photo.points[0] == pytest.approx(FACE_POINTS[0])


def test_a_face_box_click_chooses_the_face_and_a_drag_from_it_pans(photo):
    other = photo.to_widget(172, 45).toPoint()
    QTest.mouseClick(photo, Qt.LeftButton, Qt.NoModifier, other)
    assert photo.faces == [1]
    photo.set_zoom(3.0, QPointF(other))
    other = photo.to_widget(172, 45).toPoint()
    rect = photo.image_rect()
    drag(photo, other, QPoint(-30, 10))
    assert photo.faces == [1] and photo.image_rect() != rect  # panned, no second choice


def test_at_200_percent_display_scaling_100_percent_is_one_image_pixel_per_screen_pixel(tmp_path):
    """Sharp at QT_SCALE_FACTOR=2: the view's 100 % puts each image pixel on exactly one device pixel."""
    script = tmp_path / "hidpi.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication(sys.argv)\n"
        "from hyperinverter_gui._qt.zoom_view import ImageView\n"
        "from hyperinverter_gui._qt.appicon import app_icon\n"
        "v = ImageView('x'); v.resize(200, 218); v.show(); app.processEvents()\n"
        "a = np.zeros((64, 64, 3), np.uint8); a[(np.indices((64, 64)).sum(0) % 2) == 1] = 255\n"
        "v.set_image(a); v.set_zoom(1.0)\n"
        "img = v.grab().toImage()\n"
        "r = v.image_rect()\n"
        "x0, y0 = round(r.x() * 2), round(r.y() * 2)\n"
        "ok = all((img.pixelColor(x0 + i, y0 + j).red() > 127) == ((i + j) % 2 == 1)\n"
        "         for i in range(64) for j in range(64))\n"
        "print(v.devicePixelRatioF(), img.width(), ok, app_icon().pixmap(32, 32).devicePixelRatio())\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR="2", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    ratio, width, sharp, icon_ratio = out.stdout.split()
    assert float(ratio) == 2.0 and int(width) == 400  # drawn at twice the pixels
    assert sharp == "True"  # a 1-pixel checkerboard survives: no smoothing, no half pixels
    assert float(icon_ratio) == 2.0  # the 64 px icon is used for a 32 px icon at 200 %


# ---------------------------------------------------------------------- the window


@pytest.fixture()
def window(qtbot, open_editor, directions_dir, offline):
    """The editor at its default size (no saved geometry), models loaded."""
    win = open_editor(directions_dir)
    qtbot.waitExposed(win)
    return win


def _idle(qtbot, win):
    qtbot.waitUntil(lambda: not win.scheduler.busy, timeout=LONG)


def test_in_the_window_a_real_drag_is_one_undo_step_and_zoom_keys_work(qtbot, window, tmp_path, astronaut):
    win = window
    assert (win.width(), win.height()) == (1360, 860)  # the default size
    s = win.slider_panel.sliders["age"]
    assert s.groove_rect().width() >= 200 and s.track_length() >= 200
    win.resize(1280, 720)
    QTest.qWait(50)
    assert s.track_length() >= 200

    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    with qtbot.waitSignal(win.inverted, timeout=LONG):
        win.open_photo(path)
    qtbot.waitUntil(lambda: win.session.inversion is not None and s.isEnabled(), timeout=LONG)
    _idle(qtbot, win)
    QTest.mouseClick(s, Qt.LeftButton, Qt.NoModifier, QPoint(s.width() - 5, s.height() // 2))
    assert win.session.value("age") == 0 and win.undo_stack.count() == 0  # a click is no edit
    drag(s, s.handle_center(), QPoint(100, 0))
    _idle(qtbot, win)
    value = win.session.value("age")
    assert 0 < value < 5.0 and value == s.value() / 100
    assert win.undo_stack.count() == 1  # the whole drag
    wheel(s, s.handle_center(), 1)
    _idle(qtbot, win)
    assert win.session.value("age") == pytest.approx(value + 0.1) and win.undo_stack.count() == 2
    win.undo_stack.undo()
    assert s.value() == round(value * 100)

    # The swipe compare: photo left, edited right, in the result view.
    win.view_mode.setCurrentIndex(3)
    assert win.view_mode.currentText().startswith("Swipe") and win.result_view.comparing
    assert win.result_view.compare_with.width() == win.session.aligned_rgb.shape[1]
    # Zoom keys act on the view last pointed at: the result view.
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    QTest.mouseClick(win.result_view, Qt.LeftButton, Qt.NoModifier, QPoint(3, 3))
    QTest.keyClick(win, Qt.Key_1, Qt.ControlModifier)
    assert win.result_view.zoom() == pytest.approx(1.0)
    QTest.keyClick(win, Qt.Key_2, Qt.ControlModifier)
    assert win.result_view.zoom() == pytest.approx(2.0) and win.result_view.comparing
    QTest.keyClick(win, Qt.Key_0, Qt.ControlModifier)
    assert win.result_view.zoom() is None
    # Holding Space shows the photo at the same zoom.
    QTest.keyClick(win, Qt.Key_2, Qt.ControlModifier)
    rect = win.result_view.image_rect()
    QTest.keyPress(win, Qt.Key_Space)
    assert win.result_view.caption.startswith("aligned photo") and win.result_view.image_rect() == rect
    QTest.keyRelease(win, Qt.Key_Space)
    assert win.result_view.comparing and win.result_view.image_rect() == rect
    # The photo view takes the keys once clicked (or pointed at).
    QTest.mouseClick(win.photo_view, Qt.LeftButton, Qt.NoModifier, QPoint(3, 3))
    QTest.keyClick(win, Qt.Key_1, Qt.ControlModifier)
    assert win.photo_view.zoom() == pytest.approx(1.0) and win.result_view.zoom() == pytest.approx(2.0)


def test_icon_desktop_entry_and_launcher(qtbot):
    from hyperinverter_gui._qt.appicon import ICON_NAME, SIZES, app_icon, icon_files

    files = icon_files()
    assert set(SIZES) | {"svg"} == set(files)
    for n in SIZES:
        with Image.open(files[n]) as im:
            assert im.size == (n, n) and im.mode == "RGBA"
    assert not app_icon().isNull()
    assert (ROOT / "assets" / f"{ICON_NAME}.svg").read_bytes() == files["svg"].read_bytes()  # one source
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(ROOT / "assets" / f"{ICON_NAME}.desktop", encoding="utf-8")
    entry = desktop["Desktop Entry"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    launcher = entry["Exec"].split()[0]
    assert project["gui-scripts"][launcher] == "hyperinverter_gui.launcher:gui"
    assert entry["Type"] == "Application" and entry["Icon"] == ICON_NAME and entry["Terminal"] == "false"
    assert "image/heic" in entry["MimeType"] and entry["Categories"].endswith(";")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "icons/*.png" in package_data["hyperinverter_gui._qt"]
    validator = shutil.which("desktop-file-validate")
    if validator:  # the freedesktop.org checker, where installed
        check = subprocess.run([validator, str(ROOT / "assets" / f"{ICON_NAME}.desktop")], capture_output=True,
                               text=True)
        assert check.returncode == 0 and "error" not in check.stdout + check.stderr, check.stdout + check.stderr


def test_help_lists_every_shortcut_tooltips_name_them_and_every_control_has_a_name(qtbot, window):
    from hyperinverter_gui._qt.shortcuts import (
        ShortcutsDialog,
        menu_actions,
        shortcut_text,
        unnamed_widgets,
    )

    win = window
    assert not win.windowIcon().isNull()
    titles = [a.text().replace("&", "") for a in win.menuBar().actions()]
    assert "Help" in titles and "View" in titles
    dialog = ShortcutsDialog(win)
    qtbot.addWidget(dialog)
    table = dialog.table
    listed = {table.item(r, 1).text() for r in range(table.rowCount())}
    with_keys = [a for _, a in menu_actions(win) if shortcut_text(a)]
    assert len(with_keys) >= 15
    for a in with_keys:
        assert shortcut_text(a) in listed, a.text()
        assert shortcut_text(a) in a.toolTip(), a.toolTip()
    for keys in ("Ctrl+O", "Ctrl+Z", "Ctrl+0", "Ctrl+1", "Ctrl+2", "F1", "Shift+drag", "Page Up / Page Down"):
        assert any(keys in k for k in listed), keys
    assert win.reset_all_button.toolTip().endswith("(Ctrl+R)")
    assert unnamed_widgets(win) == [], [(type(w).__name__, w.objectName()) for w in unnamed_widgets(win)]
