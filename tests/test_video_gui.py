"""The Video tab, offscreen: open a clip, scrub with the mouse, preview, sliders and presets, export, cancel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytest.importorskip("av")

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionSlider  # noqa: E402
from test_video_clips import audio_packets, decoded_frames, frame, write_clip  # noqa: E402

from hyperinverter_gui.app.presets import PresetStore  # noqa: E402

LONG = 300_000  # ms: inversions take seconds each on a loaded 2-core machine
FACES = (3, 4)  # the frames of the clip that show the face


@pytest.fixture()
def window(qtbot, open_editor, directions_dir, offline):
    win = open_editor(directions_dir, size=(1360, 860))
    win.tabs.setCurrentWidget(win.video)
    return win


@pytest.fixture()
def clip(tmp_path, astronaut):
    return write_clip(tmp_path / "clip.mkv", [frame(astronaut, t, 8, blur=t not in FACES) for t in range(8)])


def _drag(widget, start: QPointF, end: QPointF, steps: int = 6) -> None:
    """A real left-button drag: press, moves with the button held, release."""
    def send(kind, pos, buttons):
        ev = QMouseEvent(kind, pos, widget.mapToGlobal(pos), Qt.LeftButton, buttons, Qt.NoModifier)
        QApplication.sendEvent(widget, ev)

    send(QEvent.MouseButtonPress, start, Qt.LeftButton)
    for k in range(1, steps + 1):
        send(QEvent.MouseMove, start + (end - start) * (k / steps), Qt.LeftButton)
        QApplication.processEvents()
    send(QEvent.MouseButtonRelease, end, Qt.NoButton)


def _handle_and_x(slider, value: int) -> tuple[QPointF, float]:
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    handle = slider.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderHandle, slider)
    groove = slider.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderGroove, slider)
    span = groove.width() - handle.width()
    x = groove.x() + handle.width() / 2 + QStyle.sliderPositionFromValue(slider.minimum(), slider.maximum(),
                                                                         value, span)
    return QPointF(handle.center()), x


def test_open_scrub_preview_edit_and_export(qtbot, window, clip, tmp_path):
    win, panel = window, window.video
    assert win.tabs.tabText(win.tabs.indexOf(panel)) == "Video"
    with qtbot.waitSignal(panel.clipOpened, timeout=LONG):
        panel.open(clip)
    assert "256×256" in panel.info_label.text() and panel.timeline.maximum() == 7
    qtbot.waitUntil(lambda: panel.preview is not None, timeout=LONG)  # frame 0: no face there
    assert panel.preview.result is None and "no face" in panel.status.text()

    # Scrub with the mouse to frame 3: the frame follows while dragging, the edit comes on release.
    handle, x = _handle_and_x(panel.timeline, 3)
    with qtbot.waitSignal(panel.frameShown, timeout=LONG, check_params_cb=lambda kind: kind == "after"):
        _drag(panel.timeline, handle, QPointF(x, handle.y()))
    assert panel.timeline.value() == 3
    qtbot.waitUntil(lambda: panel.preview is not None and panel.preview.result is not None, timeout=LONG)
    before = panel.preview.rgb
    assert np.array_equal(before, decoded_frames(clip)[3])

    # The Edit tab's sliders, here: a value changes the frame after the playhead without a new inversion.
    assert list(panel.sliders.sliders) == ["age"]
    inverted = panel.preview.result
    with qtbot.waitSignal(panel.frameShown, timeout=LONG, check_params_cb=lambda kind: kind == "after"):
        panel.sliders.sliders["age"].setValue(250)
    assert panel.values == {"age": 2.5} and panel.preview.result is inverted
    # a preset applies to the video sliders too
    panel.store = PresetStore(tmp_path / "presets.json")
    panel.store.save("older", {"age": 1.5})
    panel.reload_presets()
    with qtbot.waitSignal(panel.frameShown, timeout=LONG, check_params_cb=lambda kind: kind == "after"):
        assert panel.apply_preset("older")
    assert panel.values == {"age": 1.5} and panel.sliders.value("age") == 1.5

    shots = Path(os.environ.get("HYPERINVERTER_SHOTS", tmp_path))  # e.g. HYPERINVERTER_SHOTS=/tmp/shots
    shots.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(shots / "video_tab.png"))

    # Export in the background: progress with the time left, then the report.
    out = tmp_path / "edited.mkv"
    seen = []
    panel.exportProgress.connect(seen.append)

    exporting = shots / "video_tab_exporting.png"
    exporting.unlink(missing_ok=True)

    def shot(p) -> None:  # the tab while it exports: progress, time left, Cancel
        if p.stage == "invert" and not exporting.exists():
            win.grab().save(str(exporting))

    panel.exportProgress.connect(shot)
    with qtbot.waitSignal(panel.exportFinished, timeout=LONG) as finished:
        assert panel.export(out, codec="ffv1", batch_size=2)
        assert not panel.export_button.isEnabled() and panel.cancel_button.isEnabled()
    report = finished.args[0]
    assert out.exists() and report.frames == 8 and report.edited == 2 and report.no_face == 6
    assert {"detect", "invert"} <= {p.stage for p in seen}  # (a short encode ends within one slice)
    assert any(p.eta is not None for p in seen) and "exported edited.mkv" in panel.status.text()
    assert audio_packets(out) == audio_packets(clip)
    after = decoded_frames(out)
    assert len(after) == 8 and all(np.array_equal(a, b) for i, (a, b) in enumerate(zip(decoded_frames(clip), after))
                                   if i not in FACES)
    assert panel.export_button.isEnabled() and not panel.cancel_button.isEnabled()
    win.grab().save(str(shots / "video_tab_exported.png"))
    assert exporting.exists()


def test_cancel_an_export(qtbot, window, clip, tmp_path):
    panel = window.video
    with qtbot.waitSignal(panel.clipOpened, timeout=LONG):
        panel.open(clip)
    out = tmp_path / "cancelled.mp4"
    panel.exportProgress.connect(lambda p: panel.cancel_button.click())
    with qtbot.waitSignal(panel.exportStopped, timeout=LONG) as stopped:
        assert panel.export(out)
    assert stopped.args == ["cancelled"] and "cancelled" in panel.status.text()
    assert not out.exists() and not Path(tmp_path / ".cancelled.partial.mp4").exists()
    assert panel.export_button.isEnabled()
