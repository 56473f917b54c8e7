"""Issue 19, the editor: bad files dropped on the window, a corrupt session, a direction file that
turns bad, a full disk while exporting, memory running out in a job, each ending in the error
banner (one line, no traceback) while the window keeps working and the session open in it is kept.

One window serves the whole catalogue (loading the models once); each case is a person's action:
a QDropEvent on the window, a key press on a slider, the export and save menus (their file dialogs
answered by a patched ``QFileDialog``). Disk faults are made at the OS level (``os.open``,
``os.replace``/``os.link``, ``builtins.open``), never by patching this project's code.
"""

from __future__ import annotations

import builtins
import errno
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog

from hyperinverter_gui.media.images import tensor_to_uint8

LONG = 120.0  # s: jobs on a loaded 2-core machine


def _wait(cond, timeout: float = LONG) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the editor did not answer in time")
        QApplication.processEvents()
        time.sleep(0.005)


def _write_directions(d: Path) -> None:
    d.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(11)
    torch.save(torch.randn(1, 512, generator=g) * 0.5, d / "age.pt")
    (d / "manifest.toml").write_text('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\n'
                                     'kind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n')


@pytest.fixture(scope="module")
def editor(qapp, model_dir, tmp_path_factory, inverted, photos):
    """The editor with the tiny models and a saved session opened (by dropping it on the window)."""
    from hyperinverter_gui._qt.main_window import MainWindow
    from hyperinverter_gui.app.session import EditSession

    base = tmp_path_factory.mktemp("hardening_gui")
    _write_directions(base / "directions")
    settings = QSettings(str(base / "settings.ini"), QSettings.IniFormat)
    settings.setValue("precision", "float32")
    win = MainWindow(settings, directions_dir=base / "directions")
    loaded = []
    win.modelsLoaded.connect(loaded.append)
    win.models_panel.refresh(model_paths={"generator": model_dir / "G.pkl", "inverter": model_dir / "HI.pt"})
    _wait(lambda: loaded)
    win.resize(1100, 720)
    win.show()
    photo = base / "face.png"
    Image.fromarray(tensor_to_uint8(photos[0])).save(photo)
    s = EditSession()
    s.reset_photo(photo, None)
    s.inversion = inverted[0]
    s.save(base / "good.hisession")
    opened = []
    win.sessionOpened.connect(opened.append)
    _drop(win, [base / "good.hisession"])
    _wait(lambda: opened)
    assert win.session.inversion is not None and "age" in win.directions
    yield SimpleNamespace(win=win, base=base, inverted=inverted)
    win.shutdown()
    win.close()


def _drop(win, paths, urls=None) -> None:
    """Drop files on the window as a file manager does: drag-enter, then drop."""
    mime = QMimeData()
    mime.setUrls(urls if urls is not None else [QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(win, enter)
    drop = QDropEvent(QPointF(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(win, drop)


def _bomb_png(path: Path, side: int = 30_000) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


# --- the faults: each makes its files under ``d`` (a fresh folder) and acts on the window


def drop_text_as_photo(ed, d, mp):
    (d / "holiday.jpg").write_text("not really a photo")
    _drop(ed.win, [d / "holiday.jpg"])


def drop_empty_file(ed, d, mp):
    (d / "empty.png").write_bytes(b"")
    _drop(ed.win, [d / "empty.png"])


def drop_folder(ed, d, mp):
    (d / "album").mkdir()
    _drop(ed.win, [d / "album"])


def drop_bomb(ed, d, mp):
    _bomb_png(d / "huge.png")
    _drop(ed.win, [d / "huge.png"])


def drop_pipe(ed, d, mp):
    os.mkfifo(d / "pipe.png")
    _drop(ed.win, [d / "pipe.png"])


def drop_missing(ed, d, mp):
    _drop(ed.win, [d / "gone.png"])


def drop_truncated_photo(ed, d, mp):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "cut.png")
    data = (d / "cut.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    _drop(ed.win, [d / "cut.png"])


def drop_remote_url(ed, d, mp):
    _drop(ed.win, [], urls=[QUrl("https://example.com/face.png")])


def drop_corrupt_session(ed, d, mp):
    (d / "broken.hisession").write_bytes(os.urandom(4096))
    _drop(ed.win, [d / "broken.hisession"])


def drop_empty_session(ed, d, mp):
    (d / "empty.hisession").write_bytes(b"")
    _drop(ed.win, [d / "empty.hisession"])


def drop_truncated_session(ed, d, mp):
    data = (ed.base / "good.hisession").read_bytes()
    (d / "cut.hisession").write_bytes(data[: len(data) // 2])
    _drop(ed.win, [d / "cut.hisession"])


def drop_session_folder(ed, d, mp):
    (d / "dir.hisession").mkdir()
    _drop(ed.win, [d / "dir.hisession"])


def _directions_arrive(ed) -> None:
    """What the editor does when direction files arrive (a download finished): reload the sliders."""
    ed.win.models_panel.directionsArrived.emit(ed.base / "directions")


def direction_file_turns_bad(ed, d, mp):
    (ed.base / "directions" / "age.pt").write_bytes(b"garbage, no longer a tensor file")
    _directions_arrive(ed)


def manifest_turns_bad(ed, d, mp):
    (ed.base / "directions" / "manifest.toml").write_text("[[slider]\nname = = broken")
    _directions_arrive(ed)


def direction_turns_nan(ed, d, mp):
    torch.save(torch.full((1, 512), float("nan")), ed.base / "directions" / "age.pt")
    _directions_arrive(ed)


def _save_dialog_answers(mp, path: Path) -> None:
    mp.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))


def _full_disk_for(mp, folder: Path) -> None:
    """builtins.open for writing in ``folder`` gives a file whose writes fail with ENOSPC."""
    real_open = builtins.open

    class FullFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def opening(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and \
                Path(file).parent.resolve() == folder.resolve():
            return FullFile(f)
        return f

    mp.setattr(builtins, "open", opening)


def export_disk_full(ed, d, mp):
    _save_dialog_answers(mp, d / "edited.png")
    _full_disk_for(mp, d)
    ed.win.export_dialog("aligned")


def export_read_only_folder(ed, d, mp):
    _save_dialog_answers(mp, d / "edited.png")
    real_open = os.open

    def refusing(path, flags, *a, **k):
        if (flags & os.O_CREAT) and Path(os.fsdecode(path)).parent.resolve() == d.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *a, **k)

    mp.setattr(os, "open", refusing)
    ed.win.export_dialog("aligned")


def export_under_a_file(ed, d, mp):
    (d / "afile").write_text("x")
    _save_dialog_answers(mp, d / "afile" / "edited.png")
    ed.win.export_dialog("aligned")


def save_session_disk_full(ed, d, mp):
    _save_dialog_answers(mp, d / "mine.hisession")

    def full(real):
        def call(src, dst, *a, **k):
            if Path(dst).parent.resolve() == d.resolve():
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real(src, dst, *a, **k)
        return call

    mp.setattr(os, "replace", full(os.replace))
    mp.setattr(os, "link", full(os.link))
    ed.win.save_session_dialog()


def _press_slider(ed) -> None:
    slider = ed.win.slider_panel.sliders["age"]
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key_PageUp)


def out_of_memory_in_render(ed, d, mp):
    import torch.nn.functional as F

    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    mp.setattr(F, "conv2d", no_memory)
    _press_slider(ed)


def host_memory_error_in_render(ed, d, mp):
    import torch.nn.functional as F

    def no_memory(*a, **k):
        raise MemoryError()

    mp.setattr(F, "conv2d", no_memory)
    _press_slider(ed)


def unexpected_error_in_render(ed, d, mp):
    import torch.nn.functional as F

    def broken(*a, **k):
        raise ValueError("an op the renderer did not expect to fail")

    mp.setattr(F, "conv2d", broken)
    _press_slider(ed)


# case, action, words expected in the banner
CASES = [
    ("drop-text-as-photo", drop_text_as_photo, "holiday.jpg is not an image file"),
    ("drop-empty-file", drop_empty_file, "empty.png"),
    ("drop-folder", drop_folder, "is a folder"),
    ("drop-bomb", drop_bomb, "too large to open safely"),
    ("drop-pipe", drop_pipe, "not a regular file"),
    ("drop-missing", drop_missing, "not found"),
    ("drop-truncated-photo", drop_truncated_photo, "cut.png"),
    ("drop-remote-url", drop_remote_url, "only files on this computer"),
    ("drop-corrupt-session", drop_corrupt_session, "broken.hisession"),
    ("drop-empty-session", drop_empty_session, "empty.hisession"),
    ("drop-truncated-session", drop_truncated_session, "cut.hisession"),
    ("drop-session-folder", drop_session_folder, "dir.hisession"),
    ("direction-file-turns-bad", direction_file_turns_bad, "sliders loaded before are kept"),
    ("manifest-turns-bad", manifest_turns_bad, "sliders loaded before are kept"),
    ("direction-turns-nan", direction_turns_nan, "sliders loaded before are kept"),
    ("export-disk-full", export_disk_full, "not enough disk space to write"),
    ("export-read-only-folder", export_read_only_folder, "no permission to write"),
    ("export-under-a-file", export_under_a_file, "is a file, not a folder"),
    ("save-session-disk-full", save_session_disk_full, "not enough disk space to write"),
    ("out-of-memory-in-render", out_of_memory_in_render, "out of memory"),
    ("host-memory-error-in-render", host_memory_error_in_render, "out of memory while rendering"),
    ("unexpected-error-in-render", unexpected_error_in_render, "details are in the log file"),
]


@pytest.mark.parametrize("case, action, words", CASES, ids=[c[0] for c in CASES])
def test_fault_shows_the_banner_and_keeps_the_session(editor, tmp_path, monkeypatch, case, action, words):
    win = editor.win
    QTest.mouseClick(win.error_banner, Qt.LeftButton)  # the person dismisses the previous banner
    assert not win.error_banner.isVisible()
    kept_w = win.session.inversion.w.clone()
    kept_sliders = set(win.directions)
    d = tmp_path / "case"
    d.mkdir()
    before = sorted(p.name for p in d.iterdir())
    try:
        action(editor, d, monkeypatch)
        _wait(lambda: win.error_banner.isVisible())
        text = win.error_banner.text()
        _wait(lambda: not win.jobs.running)
        if case == "export-disk-full" and os.environ.get("HYPERINVERTER_BANNER_SHOT"):
            QApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # widgets the sliders replaced
            QApplication.processEvents()
            win.grab().save(os.environ["HYPERINVERTER_BANNER_SHOT"])
    finally:
        monkeypatch.undo()
        if "direction" in case or "manifest" in case:  # heal what the case broke, as a download would
            _write_directions(editor.base / "directions")
            _directions_arrive(editor)
    assert words.lower() in text.lower(), text
    assert "Traceback" not in text and "\n" not in text
    if "log file" in words:
        log = Path(text.split("log file ")[1].split()[0])
        assert "Traceback" in log.read_text(encoding="utf-8")
    # Nothing lost: the session being edited, its inversion and its sliders are all still there.
    assert win.isVisible() and win.session.inversion is not None
    assert torch.equal(win.session.inversion.w, kept_w)
    assert set(win.directions) == kept_sliders
    made = sorted(p.name for p in d.iterdir())
    assert [n for n in made if n not in before and n not in ("afile", "album", "dir.hisession", "pipe.png")
            and not n.startswith(("holiday", "empty", "huge", "cut", "broken"))] == [], made


def test_the_window_still_works_after_the_faults(editor, tmp_path):
    """After the whole catalogue: the sliders render, and an export writes the file."""
    win = editor.win
    _write_directions(editor.base / "directions")
    _directions_arrive(editor)
    before = win.render_count
    _press_slider(editor)
    _wait(lambda: win.render_count > before and not win.scheduler.busy)
    done = []
    win.exported.connect(done.append)
    win.export_to(tmp_path / "ok.png")
    _wait(lambda: done)
    assert Image.open(tmp_path / "ok.png").size == (32, 32)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]


def test_a_job_whose_answer_breaks_a_view_becomes_a_banner(editor):
    """A view failing while it takes a job's answer (on the GUI thread) is a banner, not a crash."""
    win = editor.win
    QTest.mouseClick(win.error_banner, Qt.LeftButton)

    def view_breaks(result):
        raise KeyError("a view that does not know this answer")

    win.submit("compare", lambda engine, ctx: 42, on_done=view_breaks)
    _wait(lambda: win.error_banner.isVisible())
    text = win.error_banner.text()
    assert "KeyError" in text and "log file" in text and "\n" not in text
