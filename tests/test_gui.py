"""The desktop editor, offscreen, with tiny seeded models (pytest-qt)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from hyperinverter_gui.editing.edits import Direction, apply_edits  # noqa: E402
from hyperinverter_gui.errors import HyperInverterError  # noqa: E402
from hyperinverter_gui.media.images import tensor_to_uint8  # noqa: E402

LONG = 120_000  # ms; inversions take a few seconds on a loaded 2-core machine


@pytest.fixture()
def window(qtbot, open_editor, directions_dir, offline):
    win = open_editor(directions_dir, size=(1200, 800))
    return win


@pytest.fixture()
def photos_on_disk(tmp_path, astronaut):
    a = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(a, quality=95)
    b = tmp_path / "astronaut_mirrored.png"
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(b)
    return a, b


def _open_and_invert(qtbot, win, path):
    with qtbot.waitSignal(win.inverted, timeout=LONG):
        win.open_photo(path)
    qtbot.waitUntil(lambda: win.session.inversion is not None, timeout=LONG)


def _idle(qtbot, win):
    qtbot.waitUntil(lambda: not win.scheduler.busy, timeout=LONG)


def _set_precision(qtbot, win, setting):
    job = win.set_precision(setting)
    qtbot.waitUntil(lambda: job.id not in win.jobs.running, timeout=LONG)


def test_open_invert_and_drag_a_slider_200_times(qtbot, window, photos_on_disk, generator):
    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    assert win.session.detector == "dlib" and not win.notice_banner.isVisible()  # FFHQ's own landmarks: no warning
    assert "landmarks: dlib" in win.photo_view.caption  # the source is named under the photo
    assert np.array_equal(win._displayed_edit, tensor_to_uint8(win.session.inversion.image))
    slider = win.slider_panel.sliders["age"]
    assert slider.isEnabled()
    renders_before = win.render_count
    slider.sliderPressed.emit()
    slider.setSliderDown(True)
    for i in range(1, 201):
        slider.setValue(i)  # 200 quick moves, no event processing in between
        if i % 50 == 0:
            qtbot.wait(1)
    slider.setSliderDown(False)
    slider.sliderReleased.emit()
    _idle(qtbot, win)
    assert win.session.value("age") == 2.0
    made = win.render_count - renders_before
    assert 1 <= made <= 10, made  # coalesced: a handful of renders, not 200
    # The final value is what is shown, at full resolution, with the photo's own weights.
    inv = win.session.inversion
    w = apply_edits(inv.w, [(win.directions["age"], 2.0)])
    with torch.no_grad():
        expected = generator.synthesis(w[None], inv.deltas.batched())[0]  # the reference forward
    # The fast renderer equals the exact synthesis up to float rounding: at most one 8-bit level.
    diff = np.abs(win._displayed_edit.astype(int) - tensor_to_uint8(expected).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert "render" in win.render_label.text()
    assert win.undo_stack.count() == 1  # the whole drag is one undo step


def test_undo_redo(qtbot, window, photos_on_disk):
    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    slider = win.slider_panel.sliders["age"]
    slider.sliderPressed.emit()
    slider.setSliderDown(True)
    slider.setValue(150)
    slider.setSliderDown(False)
    slider.sliderReleased.emit()
    _idle(qtbot, win)
    win.slider_panel.sliders["age"].setValue(-100)  # a click/keyboard change: its own step
    _idle(qtbot, win)
    assert win.undo_stack.count() == 2 and win.session.value("age") == -1.0
    win.undo_stack.undo()
    assert win.session.value("age") == 1.5 and slider.value() == 150
    win.undo_stack.undo()
    assert win.session.value("age") == 0.0 and slider.value() == 0
    _idle(qtbot, win)
    assert np.array_equal(win._displayed_edit, tensor_to_uint8(win.session.inversion.image))
    win.undo_stack.redo()
    assert win.session.value("age") == 1.5
    win.reset_all()
    assert win.session.values == {}
    win.undo_stack.undo()
    assert win.session.value("age") == 1.5


def test_cancel_mid_inversion(qtbot, window, photos_on_disk):
    win = window
    with qtbot.waitSignal(win.stageImage, timeout=LONG, check_params_cb=lambda kind: kind == "phase1"):
        win.open_photo(photos_on_disk[0])
    job = win.jobs.current["photo"]
    win.cancel()
    assert job.token.cancelled
    qtbot.waitUntil(lambda: job.id not in win.jobs.running, timeout=LONG)  # it stopped between stages
    qtbot.wait(100)
    assert win.session.inversion is None
    assert win.stage_label.text() == "Cancelled" and not win.cancel_button.isEnabled()


def test_open_a_second_photo_mid_inversion(qtbot, window, photos_on_disk):
    win = window
    results = []
    win.inverted.connect(results.append)
    win.open_photo(photos_on_disk[0])
    qtbot.waitUntil(lambda: win.session.aligned_rgb is not None, timeout=LONG)
    first = win.jobs.current["photo"]  # the first photo's inversion, queued or running
    win.open_photo(photos_on_disk[1])
    assert first.token.cancelled
    qtbot.waitUntil(lambda: len(results) == 1 and win.session.inversion is not None, timeout=LONG)
    qtbot.waitUntil(lambda: not win.jobs.running, timeout=LONG)
    qtbot.wait(200)
    # Whatever the first run produced (it is cancelled between stages), only the second is shown.
    assert len(results) == 1 and win.session.inversion is results[0]
    assert win.session.photo_path == photos_on_disk[1]
    # What is shown is the second photo's inversion: aligned crop of the mirrored photo.
    from hyperinverter_gui.alignment import align_face, detect_faces, load_photo

    rgb = load_photo(photos_on_disk[1]).rgb
    aligned = align_face(rgb, detect_faces(rgb).face(0), output_size=32).image
    assert np.array_equal(win.session.aligned_rgb, aligned)


def test_export_writes_metadata_and_never_overwrites(qtbot, window, photos_on_disk, tmp_path):
    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    win.apply_value("age", 1.0)
    _idle(qtbot, win)
    out = tmp_path / "edited.png"
    with qtbot.waitSignal(win.exported, timeout=LONG):
        win.export_to(out)
    im = Image.open(out)
    assert im.size == (32, 32) and im.text["edits"] == "age=+1" and im.text["checkpoint"] == "HI.pt"
    assert np.abs(np.asarray(im).astype(int) - win._displayed_edit.astype(int)).max() <= 1
    before = out.read_bytes()
    with pytest.raises(HyperInverterError, match="exists"):
        win.export_to(out)
    assert out.read_bytes() == before
    photo_out = tmp_path / "photo_edited.png"
    with qtbot.waitSignal(win.exported, timeout=LONG):
        win.export_to(photo_out, mode="photo")
    assert Image.open(photo_out).size == (512, 512)
    # Sessions: save, reopen, same sliders without re-inverting.
    sess = tmp_path / "a.hisession"
    win.session.save(sess)
    with qtbot.waitSignal(win.sessionOpened, timeout=LONG):
        win.open_session(sess)
    assert win.session.value("age") == 1.0 and win.slider_panel.sliders["age"].value() == 100


def test_interpolation_endpoints(qtbot, window, inverted):
    win = window
    panel = win.interp
    panel.set_result("A", inverted[0])
    panel.set_result("B", inverted[1])
    assert np.array_equal(panel.frame, tensor_to_uint8(inverted[0].image))
    panel.alpha.setValue(100)
    qtbot.waitUntil(lambda: not panel.scheduler.busy, timeout=LONG)
    assert np.array_equal(panel.frame, tensor_to_uint8(inverted[1].image))
    panel.alpha.setValue(50)
    qtbot.waitUntil(lambda: panel.frame is not None and "0.50" in panel.frame_view.caption, timeout=LONG)
    assert not np.array_equal(panel.frame, tensor_to_uint8(inverted[0].image))


def test_missing_model_panel(qtbot, tmp_path, offline):
    from hyperinverter_gui._qt.main_window import MainWindow

    empty = tmp_path / "no_models"
    empty.mkdir()
    win = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), weights_dirs=[empty])
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.models_panel.isVisible()
        text = win.models_panel.title.text()
        assert "missing" in text and "stylegan2-ffhq-config-f.pkl" in text and "drive.google.com" in text
        assert win.open_action.isEnabled()  # the window stays usable
    finally:
        win.shutdown()


def test_unreadable_file_shows_a_message_and_the_app_stays_usable(qtbot, window, photos_on_disk, tmp_path):
    win = window
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not really a photo")
    win.open_photo(bad)
    qtbot.waitUntil(lambda: win.error_banner.isVisible(), timeout=LONG)
    assert "holiday.jpg" in win.error_banner.text() and "Traceback" not in win.error_banner.text()
    _open_and_invert(qtbot, win, photos_on_disk[0])
    assert win.session.inversion is not None


def test_session_object_without_widgets(inverted, tmp_path):
    from hyperinverter_gui.app.scheduler import RenderScheduler
    from hyperinverter_gui.app.session import EditSession

    s = EditSession()
    s.reset_photo(tmp_path / "x.png", None)
    s.inversion = inverted[0]
    s.set_value("age", 2.0)
    s.set_value("smile", 0.0)
    assert s.values == {"age": 2.0}
    d = {"age": Direction("age", torch.ones(1, 512))}
    assert [(x.name, v) for x, v in s.edits(d)] == [("age", 2.0)]
    s.save(tmp_path / "s.hisession")
    back = EditSession.load(tmp_path / "s.hisession")
    assert back.values == {"age": 2.0} and torch.equal(back.inversion.w, inverted[0].w)
    sched = RenderScheduler()
    assert sched.request(1) == 1 and sched.request(2) is None and sched.request(3) is None
    assert sched.finished(1) == 3  # 2 was superseded: only the newest is rendered
    assert sched.finished(3) is None and not sched.busy


def test_no_face_lets_the_user_place_the_points(qtbot, window, tmp_path, photos_on_disk):
    from skimage import data

    win = window
    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    win.open_photo(path)
    qtbot.waitUntil(lambda: win.error_banner.isVisible(), timeout=LONG)
    assert "no face" in win.error_banner.text().lower()
    assert win.photo_view.points is not None and win.session.inversion is None
    # Dragging the points (here: onto the astronaut's face in a new photo) aligns and inverts.
    from alignment_helpers import ASTRONAUT_POINTS

    win.session.reset_photo(photos_on_disk[0], None)
    from hyperinverter_gui.alignment import load_photo

    win.session.photo_rgb = load_photo(photos_on_disk[0]).rgb
    with qtbot.waitSignal(win.inverted, timeout=LONG):
        win._points_edited(ASTRONAUT_POINTS.copy())
    qtbot.waitUntil(lambda: win.session.inversion is not None, timeout=LONG)
    assert win.session.aligned_rgb.shape == (32, 32, 3)


def test_hyperstyle_backend_shows_each_step_and_compares(qtbot, tmp_path, offline, monkeypatch, photos_on_disk):
    import hyperstyle_formats as hf
    import official_formats as of

    from hyperinverter_gui._qt.main_window import MainWindow

    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    hs = hf.write_hyperstyle_checkpoint(tmp_path / "hyperstyle_ffhq.pt")
    wenc = hf.write_faces_w_encoder(tmp_path / "faces_w_encoder.pt")
    # A HyperInverter checkpoint for the same 128 px generator (the one inside the HyperStyle file).
    hi = of.write_hyperinverter_checkpoint(tmp_path / "hi128.pt", img_resolution=128, channel_base=1024,
                                           channel_max=16, hidden_dim=4)
    win = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), directions_dir=tmp_path / "nodirs")
    qtbot.addWidget(win)
    try:
        with qtbot.waitSignal(win.modelsLoaded, timeout=LONG) as loaded:
            win.models_panel.refresh(model_paths={"generator": hs, "inverter": hi, "hyperstyle": hs,
                                                  "hyperstyle_w_encoder": wenc})
        assert loaded.args[0].hyperstyle is True
        win.backend_box.setCurrentIndex(1)
        win.iterations_box.setValue(2)
        steps = []
        win.stageImage.connect(steps.append)
        _open_and_invert(qtbot, win, photos_on_disk[0])
        assert steps == ["step 1/2", "step 2/2"]
        assert win.session.inversion.metadata["backend"] == "hyperstyle"
        win.view_mode.setCurrentIndex(4)  # side by side: computes the HyperInverter reconstruction too
        qtbot.waitUntil(lambda: len(win.results_by_backend) == 2, timeout=LONG)
        win._refresh_result_view()
        assert win.result_view._image_size == (256, 128)
    finally:
        win.shutdown()


def test_bfloat16_frames_stay_close_to_float32(qtbot, window, photos_on_disk):
    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    win.apply_value("age", 1.5)
    _idle(qtbot, win)
    exact = win._displayed_edit.astype(np.float64)
    _set_precision(qtbot, win, "bfloat16")
    win.apply_value("age", 1.5001)  # a new state, rendered in bf16
    win.apply_value("age", 1.5)
    _idle(qtbot, win)
    mse = np.mean((win._displayed_edit.astype(np.float64) - exact) ** 2)
    psnr = 10 * np.log10(255.0**2 / max(mse, 1e-12))
    assert psnr >= 30, psnr  # tiny random models have wide images; the FFHQ-size figure is in the benchmark


def test_auto_plan_previews_in_bfloat16_and_released_frames_exact(qtbot, window, photos_on_disk, generator):
    """The editor's *auto* where bf16 is native: drag previews in bfloat16, the released frame in float32."""
    from hyperinverter_gui.engine.renderer import EditRenderer, PrecisionPlan

    win = window
    win.settings.setValue("preview_resolution", 16)  # the tiny generator draws 32 px
    _set_precision(qtbot, win, PrecisionPlan(inversion="float32", frames="float32", previews="bfloat16"))
    _open_and_invert(qtbot, win, photos_on_disk[0])
    inv = win.session.inversion
    assert "precision" not in inv.metadata  # the inversion itself is exact
    w = apply_edits(inv.w, [(win.directions["age"], 1.5)])
    f32 = EditRenderer(generator, inv.deltas)
    bf16 = EditRenderer(generator, inv.deltas, precision="bfloat16")

    slider = win.slider_panel.sliders["age"]
    slider.sliderPressed.emit()
    slider.setSliderDown(True)
    slider.setValue(150)
    _idle(qtbot, win)
    preview = win._displayed_edit
    assert np.array_equal(preview, tensor_to_uint8(bf16.render(w, max_resolution=16)))
    assert not np.array_equal(preview, tensor_to_uint8(f32.render(w, max_resolution=16)))

    slider.setSliderDown(False)
    slider.sliderReleased.emit()
    _idle(qtbot, win)
    assert np.array_equal(win._displayed_edit, tensor_to_uint8(f32.render(w)))


def test_export_runs_off_the_gui_thread_while_a_render_is_running(qtbot, window, photos_on_disk, tmp_path,
                                                                   monkeypatch):
    """Export is an engine job: the event loop keeps turning (a QTimer keeps firing) while it runs."""
    import threading

    from PySide6.QtCore import QTimer

    import hyperinverter_gui.media.animation as animation

    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    gui_thread = threading.get_ident()
    writer_threads: list[int] = []
    real_write_png = animation.write_png

    def slow_write_png(*args, **kwargs):  # the real writer, observed and slowed down
        writer_threads.append(threading.get_ident())
        time.sleep(0.6)
        return real_write_png(*args, **kwargs)

    monkeypatch.setattr(animation, "write_png", slow_write_png)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    try:
        win.apply_value("age", 1.0)  # a render is queued or running on the engine thread
        assert win.scheduler.busy
        out = tmp_path / "during_render.png"
        started = time.monotonic()
        with qtbot.waitSignal(win.exported, timeout=LONG):
            job = win.export_to(out)
            assert time.monotonic() - started < 0.3  # export_to returned at once: the work is queued
        ticks_during = [t for t in ticks if t >= started]
    finally:
        timer.stop()
    assert job.purpose == "export" and out.is_file()
    assert writer_threads and all(t != gui_thread for t in writer_threads)
    assert len(ticks_during) >= 10, len(ticks_during)  # ~30 expected in 0.6 s; none if the GUI thread blocked
    _idle(qtbot, win)


def test_the_command_line_and_the_editor_write_the_same_pixels(qtbot, window, photos_on_disk, tmp_path,
                                                               model_dir, directions_dir):
    from hyperinverter_gui.cli.main import main as cli_main
    from hyperinverter_gui.inversion.result import save_inversion

    win = window
    _open_and_invert(qtbot, win, photos_on_disk[0])
    win.apply_value("age", 1.25)
    _idle(qtbot, win)
    editor_png = tmp_path / "editor.png"
    with qtbot.waitSignal(win.exported, timeout=LONG):
        win.export_to(editor_png)
    saved = save_inversion(win.session.inversion, tmp_path / "face.safetensors")
    cli_png = tmp_path / "cli.png"
    assert cli_main(["edit", str(saved), "-g", str(model_dir / "G.pkl"), "--directions", str(directions_dir),
                     "-e", "age=1.25", "-o", str(cli_png), "--device", "cpu"]) == 0
    a, b = np.asarray(Image.open(editor_png)), np.asarray(Image.open(cli_png))
    assert a.shape == b.shape and np.array_equal(a, b)
    assert not np.array_equal(a, tensor_to_uint8(win.session.inversion.image))  # the edit is in both
