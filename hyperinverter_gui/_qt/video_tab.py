"""The Video tab: open a clip, scrub its timeline, see the edited frame at the playhead, export.

Everything that reads the clip or uses the models runs as jobs on the engine thread
(``MainWindow.submit``): decoding the frame at the playhead, the preview (the frame's face found,
aligned on its own, inverted, edited and pasted back), and the export, which is the same
``video.VideoJob`` as ``hyperinverter video``, run a slice at a time (about half a second of work,
or one batch, per job) so the editor's own jobs still get their turn. The export shows its progress
and the time left, and can be cancelled; what it finished stays in the work folder next to the
output, so exporting the same clip again continues where it stopped.

The sliders are the Edit tab's directions (the same sliders); presets apply, and the Edit tab's
values can be taken over.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from hyperinverter_gui._qt.widgets import ImageView, PhotoView, SliderPanel
from hyperinverter_gui.app.presets import (
    PresetError,
    PresetStore,
    describe,
)
from hyperinverter_gui.engine.cancel import CancelToken
from hyperinverter_gui.errors import HyperInverterError

if TYPE_CHECKING:
    from hyperinverter_gui._qt.main_window import MainWindow

CLIP_PATTERN = "Video clips (*.mp4 *.mov *.m4v *.mkv *.webm *.avi *.MP4 *.MOV);;All files (*)"
STEP_SECONDS = 0.4  # work per export job before the engine thread looks at other jobs


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "estimating the time left…"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"about {h}:{m:02d}:{s:02d} left" if h else f"about {m}:{s:02d} left"


class VideoPanel(QWidget):
    """The Video tab (see the module description)."""

    clipOpened = Signal(object)  # ClipInfo
    frameShown = Signal(str)  # "before" or "after": a view was updated
    exportProgress = Signal(object)  # video.Progress
    exportFinished = Signal(object)  # VideoReport
    exportStopped = Signal(str)  # "cancelled" or the error message

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.window = window
        self.store = PresetStore()
        self.info: Any = None  # ClipInfo of the open clip
        self.values: dict[str, float] = {}
        self.preview: Any = None  # FramePreview at the playhead (inverted), for renders of new values
        self.generation = 0  # bumped when the clip or the playhead changes: late answers are dropped
        self._export_job: Any = None
        self._export_token: CancelToken | None = None
        self._directions_shown: dict | None = None
        self.range: list = [0.0, None]  # [start, end) in seconds; end None: the clip's end
        self._build()
        self._enable()
        window.modelsLoaded.connect(lambda _info: self.refresh_directions())

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.open_button = QPushButton("Open clip…")
        self.open_button.clicked.connect(self.open_dialog)
        top.addWidget(self.open_button)
        self.info_label = QLabel("Open a clip (MP4, MOV, MKV, WebM) to edit a face through it.")
        self.info_label.setWordWrap(True)
        top.addWidget(self.info_label, 1)
        lay.addLayout(top)

        split = QSplitter(Qt.Horizontal)
        views = QWidget()
        vl = QGridLayout(views)
        vl.setContentsMargins(0, 0, 0, 0)
        self.before_view = PhotoView()
        self.before_view.placeholder = "Open a clip: its frame at the playhead appears here"
        self.before_view.base_tooltip = "The frame at the playhead, with the faces found in it"
        self.before_view.setToolTip(self.before_view.base_tooltip)
        self.before_view.setAccessibleName("Frame at the playhead")
        self.after_view = ImageView("The edited frame appears here")
        self.after_view.setAccessibleName("Edited frame")
        vl.addWidget(QLabel("Before"), 0, 0)
        vl.addWidget(QLabel("After (this frame aligned on its own; the export also smooths over time)"), 0, 1)
        vl.addWidget(self.before_view, 1, 0)
        vl.addWidget(self.after_view, 1, 1)
        vl.setRowStretch(1, 1)
        split.addWidget(views)

        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(QLabel("Edits (the Edit tab's sliders)"))
        self.sliders = SliderPanel()
        self.sliders.valueChanged.connect(self._slider_moved)
        self.sliders.dragFinished.connect(lambda name, value: self.request_render())
        self.sliders.resetRequested.connect(lambda name: self.set_values({**self.values, name: 0.0}))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sliders)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.sliders.minimumWidth() + scroll.verticalScrollBar().sizeHint().width())
        sl.addWidget(scroll, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Preset"))
        self.preset_box = QComboBox()
        self.preset_box.setAccessibleName("Preset")
        row.addWidget(self.preset_box, 1)
        self.preset_button = QPushButton("Apply")
        self.preset_button.clicked.connect(lambda: self.apply_preset(self.preset_box.currentText()))
        row.addWidget(self.preset_button)
        sl.addLayout(row)
        self.take_button = QPushButton("Use the Edit tab's values")
        self.take_button.clicked.connect(lambda: self.set_values(dict(self.window.session.values)))
        sl.addWidget(self.take_button)
        split.addWidget(side)
        split.setSizes([900, 340])
        lay.addWidget(split, 1)

        tl = QHBoxLayout()
        self.timeline = QSlider(Qt.Horizontal)
        self.timeline.setObjectName("videoTimeline")
        self.timeline.setAccessibleName("Timeline")
        self.timeline.setToolTip("Drag to scrub; release to see the edited frame")
        self.timeline.valueChanged.connect(self._playhead_moved)
        self.timeline.sliderReleased.connect(lambda: self.request_preview())
        tl.addWidget(self.timeline, 1)
        self.time_label = QLabel("00:00.0 / 00:00.0")
        tl.addWidget(self.time_label)
        lay.addLayout(tl)

        opts = QHBoxLayout()
        self.start_label, self.end_label = QLabel("start 00:00.0"), QLabel("end: clip end")
        self.start_button = QPushButton("Start here")
        self.start_button.clicked.connect(lambda: self._set_range("start"))
        self.end_button = QPushButton("End here")
        self.end_button.clicked.connect(lambda: self._set_range("end"))
        self.range_reset = QPushButton("Whole clip")
        self.range_reset.clicked.connect(lambda: self._set_range("reset"))
        for w in (self.start_label, self.start_button, self.end_label, self.end_button, self.range_reset):
            opts.addWidget(w)
        opts.addSpacing(12)
        opts.addWidget(QLabel("Face"))
        self.face_box = QSpinBox()
        self.face_box.setRange(1, 20)
        self.face_box.setToolTip("Which face, counted in the first frame that has faces (1 = largest); it is "
                                 "followed from there")
        self.face_box.valueChanged.connect(lambda _: self.request_preview())
        opts.addWidget(self.face_box)
        opts.addWidget(QLabel("Stabilize σ"))
        self.stabilize_box = QDoubleSpinBox()
        self.stabilize_box.setRange(0.0, 20.0)
        self.stabilize_box.setSingleStep(0.5)
        self.stabilize_box.setValue(3.0)
        self.stabilize_box.setToolTip("Smooth the face crop over time (frames); 0 = align each frame on its own")
        opts.addWidget(self.stabilize_box)
        opts.addWidget(QLabel("Smooth w/Δθ"))
        self.smooth_box = QSpinBox()
        self.smooth_box.setRange(0, 15)
        self.smooth_box.setToolTip("Also average the codes and weights over this many frames (0 = off)")
        opts.addWidget(self.smooth_box)
        opts.addWidget(QLabel("Batch"))
        self.batch_box = QSpinBox()
        self.batch_box.setRange(1, 32)
        self.batch_box.setValue(4)
        self.batch_box.setToolTip("Frames inverted together")
        opts.addWidget(self.batch_box)
        opts.addStretch(1)
        lay.addLayout(opts)

        ex = QHBoxLayout()
        self.export_button = QPushButton("Export clip…")
        self.export_button.clicked.connect(self.export_dialog)
        ex.addWidget(self.export_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMinimumWidth(240)
        ex.addWidget(self.progress, 1)
        self.status = QLabel("")
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long notes never squeeze the bar
        ex.addWidget(self.status, 2)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_export)
        ex.addWidget(self.cancel_button)
        lay.addLayout(ex)
        self.reload_presets()

    def _enable(self) -> None:
        have = self.info is not None
        exporting = self._export_job is not None
        for w in (self.timeline, self.start_button, self.end_button, self.range_reset):
            w.setEnabled(have)
        self.export_button.setEnabled(have and not exporting)
        self.open_button.setEnabled(not exporting)
        self.cancel_button.setEnabled(exporting)
        self.sliders.set_enabled(have)

    def showEvent(self, ev) -> None:  # noqa: N802
        self.refresh_directions()
        self.reload_presets()
        super().showEvent(ev)

    def refresh_directions(self) -> None:
        """The Edit tab's sliders (rebuilt when the window's directions changed)."""
        dirs = self.window.directions
        if dirs is self._directions_shown:
            return
        self._directions_shown = dirs
        info = self.window.models_info
        self.sliders.set_directions(dirs, num_ws=info.num_ws if info is not None else None)
        self.values = {n: v for n, v in self.values.items() if n in dirs}
        for name in self.sliders.sliders:
            self.sliders.show_value(name, self.values.get(name, 0.0))
        self._enable()

    def reload_presets(self) -> None:
        try:
            names = self.store.names()
        except PresetError:
            names = []
        current = self.preset_box.currentText()
        self.preset_box.clear()
        self.preset_box.addItems(names)
        if current in names:
            self.preset_box.setCurrentText(current)
        self.preset_button.setEnabled(bool(names))

    # ------------------------------------------------------------------ values

    def edits(self) -> list:
        dirs = self.window.directions
        return [(dirs[n], v) for n, v in sorted(self.values.items()) if n in dirs and v != 0]

    def set_values(self, values: dict[str, float]) -> None:
        self.refresh_directions()
        self.values = {n: float(v) for n, v in values.items() if v != 0 and n in self.window.directions}
        for name in self.sliders.sliders:
            self.sliders.show_value(name, self.values.get(name, 0.0))
        self.request_render()

    def apply_preset(self, name: str) -> bool:
        from hyperinverter_gui._qt.presets_panel import preset_values

        known = preset_values(self.window, self.store, name)
        if known is None:
            return False
        self.set_values(known)
        return True

    def _slider_moved(self, name: str, value: float) -> None:
        self.values[name] = value
        if value == 0:
            self.values.pop(name)
        if not self.sliders.sliders[name].isSliderDown():
            self.request_render()

    # ------------------------------------------------------------------ the clip and the playhead

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open clip", "", CLIP_PATTERN)
        if path:
            self.open(Path(path))

    def open(self, path: Path) -> None:
        """Read the clip's description and show its first frame (a job: the GUI thread never decodes)."""
        from hyperinverter_gui.video import probe
        from hyperinverter_gui.video.media import read_frame_at

        path = Path(path)
        self.generation += 1
        self.info_label.setText(f"opening {path.name}…")

        def run(engine, ctx):
            info = probe(path)
            return info, read_frame_at(path, 0.0)

        self.window.submit("video open", run, on_done=lambda out: self._opened(*out),
                           on_failed=lambda m: (self.info_label.setText("could not open the clip"),
                                                self.window.show_error(m)))

    def _opened(self, info, first) -> None:
        self.info = info
        self.preview = None
        self.range = [0.0, None]
        self.info_label.setText(f"{info.path.name} — {info.describe()}")
        self.timeline.blockSignals(True)
        self.timeline.setRange(0, max(0, info.frames - 1))
        self.timeline.setValue(0)
        self.timeline.blockSignals(False)
        self._set_range("reset")
        self._show_before(first.rgb, [], 0)
        self.after_view.set_image(None)
        self._enable()
        self._update_time()
        self.clipOpened.emit(info)
        self.request_preview()

    def playhead_time(self) -> float:
        if self.info is None:
            return 0.0
        return self.timeline.value() / float(self.info.fps)

    def _update_time(self) -> None:
        from hyperinverter_gui.video.media import format_time

        if self.info is not None:
            self.time_label.setText(f"{format_time(self.playhead_time())} / {format_time(self.info.duration)}  "
                                    f"frame {self.timeline.value() + 1}")

    def _playhead_moved(self, _value: int) -> None:
        self._update_time()
        self.preview = None
        if self.timeline.isSliderDown():
            self.window.jobs.cancel("video preview")  # an inversion for a frame left behind
            self.request_frame()  # while scrubbing: the decoded frame only
        else:
            self.request_preview()

    def _set_range(self, which: str) -> None:
        from hyperinverter_gui.video.media import format_time

        if which == "reset":
            self.range = [0.0, None]
        elif which == "start":
            self.range[0] = self.playhead_time()
        else:
            self.range[1] = self.playhead_time() + 0.5 / float(self.info.fps)  # this frame included
        if self.range[1] is not None and self.range[1] <= self.range[0]:
            self.range[1] = None
        self.start_label.setText(f"start {format_time(self.range[0])}")
        self.end_label.setText("end: clip end" if self.range[1] is None else f"end {format_time(self.range[1])}")

    def request_frame(self) -> None:
        """Decode the frame at the playhead into the Before view (superseding an older request)."""
        if self.info is None:
            return
        from hyperinverter_gui.video.media import read_frame_at

        gen, path, t = self.generation, self.info.path, self.playhead_time()
        self.window.submit("video frame", lambda engine, ctx: read_frame_at(path, t),
                           on_done=lambda f: gen == self.generation and self._show_before(f.rgb, [], 0),
                           on_failed=self.window.show_error)

    def request_preview(self) -> None:
        """Decode, find the face, align, invert and edit the frame at the playhead (superseding)."""
        if self.info is None:
            return
        from hyperinverter_gui.video import prepare_preview, render_preview
        from hyperinverter_gui.video.media import read_frame_at

        self.generation += 1
        gen, path, t = self.generation, self.info.path, self.playhead_time()
        face, edits = self.face_box.value() - 1, self.edits()
        backend, iterations = self.window.backend, self.window.iterations_box.value()
        if self._export_job is None:
            self.status.setText("preview: inverting the frame at the playhead…")

        def run(engine, ctx):
            frame = read_frame_at(path, t)
            ctx.partial("frame", frame)
            prev = prepare_preview(engine, frame.rgb, frame.time, face=face, backend=backend,
                                   iterations=iterations, cancel=ctx.token)
            return prev, render_preview(engine, prev, edits)

        def partial(kind, frame) -> None:
            if gen == self.generation:
                self._show_before(frame.rgb, [], 0)

        self.window.submit("video preview", run, on_partial=partial,
                           on_done=lambda out: self._previewed(gen, *out), on_failed=self._preview_failed)

    def request_render(self) -> None:
        """New slider values: render the inverted frame at the playhead again (no new inversion)."""
        prev = self.preview
        if prev is None:
            return
        from hyperinverter_gui.video import render_preview

        gen, edits = self.generation, self.edits()
        self.window.submit("video render", lambda engine, ctx: render_preview(engine, prev, edits),
                           on_done=lambda rgb: gen == self.generation and self._show_after(rgb),
                           on_failed=self.window.show_error)

    def _previewed(self, gen: int, prev, after: np.ndarray) -> None:
        if gen != self.generation:
            return
        self.preview = prev
        self._show_before(prev.rgb, [f.box for f in prev.faces], prev.face_index)
        self._show_after(after)
        self.before_view.setToolTip("\n".join(x for x in (self.before_view.base_tooltip, prev.note) if x))
        if self._export_job is None:
            self.status.setText(prev.message or f"preview: face {prev.face_index + 1} of {len(prev.faces)} "
                                                f"({prev.detector} landmarks)")

    def _preview_failed(self, message: str) -> None:
        if self._export_job is None:
            self.status.setText("preview failed")
        self.window.show_error(message)

    def _show_before(self, rgb: np.ndarray, boxes, active: int) -> None:
        self.before_view.set_image(rgb, f"{self.time_label.text().split('  ')[0]}")
        self.before_view.set_overlay(boxes, active, None, False)
        self.frameShown.emit("before")

    def _show_after(self, rgb: np.ndarray) -> None:
        self.after_view.set_image(rgb, describe(self.values))
        self.frameShown.emit("after")

    # ------------------------------------------------------------------ export

    def export_dialog(self) -> None:
        if self.info is None:
            return
        suggested = self.info.path.with_name(self.info.path.stem + "_edited.mp4")
        path, _ = QFileDialog.getSaveFileName(self, "Export clip", str(suggested),
                                              "MP4 (*.mp4);;Matroska (*.mkv);;QuickTime (*.mov);;WebM (*.webm)")
        if path:
            self.export(Path(path), overwrite=True)  # the dialog asked before replacing

    def settings(self, output: Path, overwrite: bool = False):
        from hyperinverter_gui.video import VideoSettings

        return VideoSettings(
            source=self.info.path, output=Path(output), edits=self.edits(), face=self.face_box.value() - 1,
            stabilize=self.stabilize_box.value(), smooth=self.smooth_box.value(), start=self.range[0],
            end=self.range[1], batch_size=self.batch_box.value(), backend=self.window.backend,
            iterations=self.window.iterations_box.value(), overwrite=overwrite)

    def export(self, output: Path, overwrite: bool = False, **changes) -> bool:
        """Start exporting the clip with the current edits (in slices of work on the engine thread)."""
        from hyperinverter_gui.video import VideoJob

        if self.info is None or self._export_job is not None:
            return False
        settings = self.settings(output, overwrite)
        for k, v in changes.items():
            setattr(settings, k, v)
        try:
            job = VideoJob(settings)
        except HyperInverterError as e:
            self.window.show_error(str(e))
            return False
        self._export_job, self._export_token = job, CancelToken()
        self._export_started = time.monotonic()
        self.progress.setValue(0)
        self.status.setText("export: starting…")
        self._enable()
        self._step({"gen": None})
        return True

    def _step(self, state: dict) -> None:
        job, token = self._export_job, self._export_token

        def run(engine, ctx):
            if state["gen"] is None:
                state["gen"] = job.run(engine, token)
            last, t = None, time.monotonic()
            while time.monotonic() - t < STEP_SECONDS:
                try:
                    last = next(state["gen"])
                except StopIteration as stop:
                    return "done", stop.value
            return "progress", last

        def done(out) -> None:
            kind, value = out
            if kind == "done":
                self._finished(value)
                return
            self._show_progress(value)
            self._step(state)

        self.window.submit("video export", run, supersede=False, on_done=done,
                           on_failed=lambda m: self._stopped(m), on_cancelled=lambda: self._stopped("cancelled"))

    def _show_progress(self, p) -> None:
        self.progress.setValue(int(round(1000 * p.fraction)))
        self.status.setText(f"{p.message} · {_clock(p.eta)}")
        self.exportProgress.emit(p)

    def cancel_export(self) -> None:
        if self._export_token is not None:
            self._export_token.cancel()
            self.status.setText("cancelling…")

    def _finished(self, report) -> None:
        self._export_job = self._export_token = None
        self.progress.setValue(1000)
        self.status.setText(f"exported {report.output.name}: {report.edited} frames edited, "
                            f"{report.no_face} without the face")
        self.window.statusBar().showMessage(" · ".join(report.lines()[:2]), 10000)
        self._enable()
        self.exportFinished.emit(report)

    def _stopped(self, message: str) -> None:
        job = self._export_job
        self._export_job = self._export_token = None
        self.progress.setValue(0)
        if message == "cancelled":
            kept = job.cached + job.rendered if job is not None else 0
            self.status.setText(f"export cancelled; {kept} edited frames are kept: export again to continue")
        else:
            self.status.setText("export failed")
            self.window.show_error(message)
        self._enable()
        self.exportStopped.emit(message)
