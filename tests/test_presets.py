"""Presets: saved slider values, applied to the open photo (one undo step) or to a folder of photos."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter_gui.app.presets import PresetError, PresetStore, split_known
from hyperinverter_gui.app.session import EditSession
from hyperinverter_gui.app.undo import ApplyPreset
from hyperinverter_gui.editing.edits import Direction

LONG = 120_000

# --------------------------------------------------------------------------
# The store


def test_store_saves_reads_and_deletes_atomically(tmp_path):
    path = tmp_path / "data" / "presets.json"
    store = PresetStore(path)
    assert store.names() == []
    assert store.save(" Older ", {"age": 2.0, "smile": 0.0, "pose": -1}) == {"age": 2.0, "pose": -1.0}
    other = PresetStore(path)  # a second editor open at the same time
    other.save("smile", {"smile": 1.5})
    assert store.names() == ["Older", "smile"]  # each save re-reads the file: nothing is lost
    assert store.get("Older") == {"age": 2.0, "pose": -1.0}
    data = json.loads(path.read_text())
    assert data["format"] == "hyperinverter-gui/presets/1" and data["presets"]["smile"] == {"smile": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["presets.json"]  # no temporary file left
    store.save("Older", {"age": 3.0})  # replaced
    assert other.get("Older") == {"age": 3.0}
    store.delete("smile")
    assert other.names() == ["Older"]
    with pytest.raises(PresetError, match="no preset named 'smile'"):
        store.get("smile")


@pytest.mark.parametrize("name, values, message", [
    ("", {"age": 1.0}, "needs a name"),
    ("x", {"age": 0.0}, "nothing to save"),
    ("x", {"age": math.nan}, "not a number"),
    ("x", {"age": "a lot"}, "not a number"),
])
def test_store_refuses_bad_presets(tmp_path, name, values, message):
    with pytest.raises(PresetError, match=message):
        PresetStore(tmp_path / "p.json").save(name, values)
    assert not (tmp_path / "p.json").exists()


def test_a_damaged_presets_file_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "presets.json"
    path.write_text("{not json")
    store = PresetStore(path)
    with pytest.raises(PresetError, match=r"presets file .*presets.json is damaged"):
        store.names()
    with pytest.raises(PresetError, match="damaged"):
        store.save("x", {"age": 1.0})
    assert path.read_text() == "{not json"


def test_default_location_is_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    PresetStore().save("a", {"age": 1.0})
    assert (tmp_path / "xdg" / "hyperinverter-studio" / "presets.json").is_file()


def test_apply_preset_is_one_undo_step():
    s = EditSession()
    s.set_value("age", 1.0)
    s.set_value("pose", 2.0)
    events = []
    s.events.values.connect(lambda: events.append(dict(s.values)))
    available = {"age": Direction("age", torch.ones(1, 8)), "smile": Direction("smile", torch.ones(1, 8))}
    known, unknown = split_known({"age": -2.0, "smile": 1.0, "lipstick": 3.0}, available)
    assert known == {"age": -2.0, "smile": 1.0} and unknown == ["lipstick"]
    cmd = ApplyPreset(s, "p", known)
    cmd.redo()
    assert s.values == {"age": -2.0, "smile": 1.0}  # pose is not in the preset: back to 0
    cmd.undo()
    assert s.values == {"age": 1.0, "pose": 2.0}
    assert len(events) == 2 and cmd.text == "apply preset p"


# --------------------------------------------------------------------------
# A folder of photos, without Qt


@pytest.fixture()
def folder(tmp_path, astronaut):
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(astronaut).save(d / "a_astronaut.jpg", quality=95)
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(d / "b_mirrored.png")
    (d / "c_broken.jpg").write_text("this is not a photo")
    (d / "notes.txt").write_text("not a photo by name either")
    return d


@pytest.fixture()
def engine(model_dir, tmp_path, monkeypatch):
    from hyperinverter_gui.engine import Engine, ModelFiles

    e = Engine("cpu", "float32", cache=None)
    e.load(ModelFiles(model_dir / "G.pkl", model_dir / "HI.pt"))
    return e


@pytest.fixture()
def age():
    g = torch.Generator().manual_seed(11)
    return Direction("age", torch.randn(1, 512, generator=g) * 0.5)


def _run_inline(engine, items, settings, **kw):
    from hyperinverter_gui.app.batch_export import BatchExport
    from hyperinverter_gui.app.jobs import InlineExecutor, JobManager

    jobs = JobManager()
    jobs.executor = InlineExecutor(engine, jobs)
    finished = []
    batch = BatchExport(jobs.submit, items, settings, on_finished=finished.append, **kw).start()
    assert batch.finished and finished == [batch.report]
    return batch.report


def test_folder_of_three_photos_one_not_an_image(engine, folder, tmp_path, age, offline):
    from hyperinverter_gui.app.batch_export import BatchSettings, folder_photos, plan
    from hyperinverter_gui.app.export import edited_image
    from hyperinverter_gui.app.photos import align_photo

    photos, ignored = folder_photos(folder)
    assert [p.name for p in photos] == ["a_astronaut.jpg", "b_mirrored.png", "c_broken.jpg"]
    assert [p.name for p in ignored] == ["notes.txt"]
    out = tmp_path / "out"
    settings = BatchSettings({"age": 1.5, "unknown": 2.0}, {"age": age}, out, preset="Older",
                             text={"Software": "test"})
    items = plan(photos, out, "aligned")
    done = []
    report = _run_inline(engine, items, settings, ignored=ignored, on_item=done.append)
    assert [o.output.name for o in report.written] == ["a_astronaut_edited.png", "b_mirrored_edited.png"]
    assert [(o.source.name, "c_broken.jpg" in o.error) for o in report.failed] == [("c_broken.jpg", True)]
    assert "not an image" in report.failed[0].error and "Traceback" not in report.failed[0].error
    assert [o.source.name for o in done] == [p.name for p in photos]
    assert report.summary() == "2 exported, 1 failed, 1 other file ignored" and not report.cancelled
    assert sorted(p.name for p in out.iterdir()) == ["a_astronaut_edited.png", "b_mirrored_edited.png"]
    # Each export is the photo aligned, inverted and edited: the same pixels as doing it by hand.
    im = Image.open(out / "a_astronaut_edited.png")
    assert im.text["preset"] == "Older" and im.text["edits"] == "age=+1.5" and im.text["source"] == "a_astronaut.jpg"
    aligned = align_photo(engine.resolution, path=photos[0]).aligned
    by_hand = edited_image(engine, engine.invert(aligned)[0], [(age, 1.5)])
    assert np.array_equal(np.asarray(im), by_hand)
    # Nothing is replaced without asking: a second run reports the files that exist.
    before = (out / "a_astronaut_edited.png").read_bytes()
    report = _run_inline(engine, items[:1], settings)
    assert report.failed[0].error == "a_astronaut_edited.png exists already (not replaced)"
    assert (out / "a_astronaut_edited.png").read_bytes() == before


def test_pasted_back_photos_keep_their_size_and_format(engine, folder, tmp_path, age, offline):
    from hyperinverter_gui.app.batch_export import BatchSettings, folder_photos, plan

    photos, _ = folder_photos(folder)
    out = tmp_path / "out"
    items = plan(photos[:2], out, "photo")
    assert [i.output.name for i in items] == ["a_astronaut_edited.jpg", "b_mirrored_edited.png"]
    report = _run_inline(engine, items, BatchSettings({"age": 1.0}, {"age": age}, out, mode="photo"))
    assert len(report.written) == 2
    for item in items:
        assert Image.open(item.output).size == Image.open(item.source).size
    assert Image.open(items[0].output).format == "JPEG"


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("when", ["inverting", "writing"])
def test_cancel_in_the_middle_leaves_no_half_written_file(engine, folder, tmp_path, age, offline, when):
    from hyperinverter_gui.app.batch_export import BatchExport, BatchSettings, folder_photos, plan
    from hyperinverter_gui.app.jobs import InlineExecutor, JobManager

    photos, _ = folder_photos(folder)
    out = tmp_path / "out"
    jobs = JobManager()
    jobs.executor = InlineExecutor(engine, jobs)
    stages = []

    def progress(index, total, stage, fraction):
        stages.append((index, stage))
        # Cancel while the second photo is being inverted, or while its file is being written.
        if index == 1 and (("Phase" in stage) if when == "inverting" else ("Writing" in stage)):
            batch.cancel()

    batch = BatchExport(jobs.submit, plan(photos, out, "aligned"), BatchSettings({"age": 1.0}, {"age": age}, out),
                        on_progress=progress)
    batch.start()
    r = batch.report
    assert r.cancelled and batch.finished and any(i == 1 for i, _ in stages)
    if when == "inverting":
        # The second photo stopped between stages: nothing of it was written.
        assert [o.source.name for o in r.written] == ["a_astronaut.jpg"]
        assert [p.name for p in r.not_done] == ["b_mirrored.png", "c_broken.jpg"]
        assert _files(out) == ["a_astronaut_edited.png"]
    else:
        # Its file was being written: it is completed (atomically) and reported; the third is not started.
        assert [o.source.name for o in r.written] == ["a_astronaut.jpg", "b_mirrored.png"]
        assert [p.name for p in r.not_done] == ["c_broken.jpg"]
        assert _files(out) == ["a_astronaut_edited.png", "b_mirrored_edited.png"]
    for p in out.iterdir():
        Image.open(p).load()  # complete, readable files only (no temporary or partial file)
    assert not r.failed and all(i < 2 for i, _ in stages)


def test_folder_batch_on_a_worker_thread(engine, folder, tmp_path, age, offline):
    from hyperinverter_gui.app.batch_export import BatchExport, BatchSettings, folder_photos, plan
    from hyperinverter_gui.app.jobs import JobManager, ThreadExecutor

    photos, _ = folder_photos(folder)
    jobs = JobManager()
    ex = ThreadExecutor(engine, jobs)
    try:
        batch = BatchExport(jobs.submit, plan(photos, tmp_path / "out", "aligned"),
                            BatchSettings({"age": 1.0}, {"age": age}, tmp_path / "out")).start()
        assert not batch.finished  # the work is queued on the engine's thread
        import time

        deadline = time.monotonic() + LONG / 1000
        while not batch.finished and time.monotonic() < deadline:
            ex.pump(timeout=0.1)
        assert batch.report.summary() == "2 exported, 1 failed"
    finally:
        ex.shutdown()


# --------------------------------------------------------------------------
# In the editor


@pytest.fixture()
def window(open_editor, tmp_path, offline, monkeypatch):
    pytest.importorskip("pytestqt")
    d = tmp_path / "directions"
    d.mkdir()
    g = torch.Generator().manual_seed(11)
    torch.save(torch.randn(1, 512, generator=g) * 0.5, d / "age.pt")
    torch.save(torch.randn(1, 512, generator=g) * 0.5, d / "smile.pt")
    (d / "manifest.toml").write_text(
        '[[slider]]\nname = "age"\nkind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n\n'
        '[[slider]]\nname = "smile"\nkind = "interfacegan"\nfile = "smile.pt"\nrange = [-5.0, 5.0]\n')
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the presets file of this test
    return open_editor(d, size=(1200, 800))


def test_save_and_apply_a_preset_in_the_editor(qtbot, window, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    win, bar = window, window.presets_bar
    assert set(win.directions) == {"age", "smile"}
    assert not bar.apply_button.isEnabled()  # no presets yet
    win.apply_value("age", 2.0)
    win.apply_value("smile", -1.0)
    assert bar.save_as("Old and grumpy") == {"age": 2.0, "smile": -1.0}
    PresetStore().save("Young", {"age": -1.5, "lipstick": 4.0})  # saved elsewhere (another window)
    bar.reload()
    assert [bar.combo.itemText(i) for i in range(bar.combo.count())] == ["Old and grumpy", "Young"]
    menu_titles = [a.text() for a in bar.menu.actions()]
    assert "&Apply preset" in menu_titles and "Apply preset to &folder…" in menu_titles
    steps = win.undo_stack.count()
    bar.combo.setCurrentText("Young")
    QTest.mouseClick(bar.apply_button, Qt.LeftButton)
    assert win.session.values == {"age": -1.5}  # smile back to 0; lipstick is not available here
    assert "lipstick" in win.notice_banner.text() and win.undo_stack.count() == steps + 1
    assert win.slider_panel.value("age") == -1.5 and win.slider_panel.value("smile") == 0.0
    win.undo_stack.undo()
    assert win.session.values == {"age": 2.0, "smile": -1.0}


def test_apply_a_preset_to_a_folder_from_the_editor(qtbot, window, folder, tmp_path):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    win = window
    PresetStore().save("Older", {"age": 1.5})
    win.presets_bar.reload(select="Older")
    QTest.mouseClick(win.presets_bar.folder_button, Qt.LeftButton)
    dlg = win.presets_bar.batch_dialog
    assert dlg.isVisible() and dlg.preset_box.currentText() == "Older" and "age=+1.5" in dlg.values_label.text()
    dlg.folder_edit.setText(str(folder))
    assert dlg.out_edit.text() == str(folder / "edited")
    QTest.mouseClick(dlg.photo_radio, Qt.LeftButton)
    with qtbot.waitSignal(dlg.finished_batch, timeout=LONG) as got:
        QTest.mouseClick(dlg.start_button, Qt.LeftButton)
        assert dlg.cancel_button.isEnabled() and not dlg.start_button.isEnabled()
    report = got.args[0]
    assert report.summary() == "2 exported, 1 failed, 1 other file ignored"
    lines = [dlg.results.item(i).text() for i in range(dlg.results.count())]
    assert lines[0] == "✓ a_astronaut.jpg → a_astronaut_edited.jpg" and lines[2].startswith("✗ c_broken.jpg: ")
    assert sorted(p.name for p in (folder / "edited").iterdir()) == ["a_astronaut_edited.jpg",
                                                                     "b_mirrored_edited.png"]
    assert Image.open(folder / "edited" / "b_mirrored_edited.png").text["preset"] == "Older"
    assert "Done: 2 exported" in dlg.status.text() and dlg.start_button.isEnabled()
    # Again into another folder, cancelled after the first photo: nothing half-written, the rest not done.
    dlg.out_edit.setText(str(tmp_path / "second"))
    dlg.results.model().rowsInserted.connect(  # the moment the first photo is reported, the user clicks Cancel
        lambda *_: QTest.mouseClick(dlg.cancel_button, Qt.LeftButton) if dlg.results.count() == 1 else None)
    with qtbot.waitSignal(dlg.finished_batch, timeout=LONG) as got:
        QTest.mouseClick(dlg.start_button, Qt.LeftButton)
    report = got.args[0]
    assert report.cancelled and len(report.written) == 1 and not report.failed
    assert [p.name for p in report.not_done] == ["b_mirrored.png", "c_broken.jpg"]
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == ["a_astronaut_edited.jpg"]
    assert dlg.status.text().startswith("Cancelled: 1 exported")
