"""The main window: open a photo, invert it in the background, edit with sliders, compare, export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QSettings, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QSpinBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..directions import load_library
from ..editing import apply_edits
from ..errors import HyperInverterError
from ..imageio import IMAGE_SUFFIXES, tensor_to_uint8
from ..session import SESSION_SUFFIX, EditSession, RenderScheduler
from .interpolation import InterpolationPanel
from .models_panel import ModelsPanel
from .widgets import ImageView, PhotoView, SliderPanel
from .worker import AlignRequest, EngineWorker, InvertRequest, ModelRequest, RenderRequest

log = logging.getLogger(__name__)
VIEW_MODES = ("Edited", "Phase I", "Aligned photo", "Split: photo | edited", "Side by side: HyperInverter | HyperStyle")
BACKENDS = ("hyperinverter", "hyperstyle")


class SliderCommand(QUndoCommand):
    """One slider change (a whole drag is one command)."""

    def __init__(self, window: "MainWindow", name: str, old: float, new: float):
        super().__init__(f"{name} {old:+.2f} → {new:+.2f}")
        self.window, self.name, self.old, self.new = window, name, old, new

    def redo(self) -> None:
        self.window.apply_value(self.name, self.new)

    def undo(self) -> None:
        self.window.apply_value(self.name, self.old)


class ResetCommand(QUndoCommand):
    def __init__(self, window: "MainWindow", old_values: dict[str, float]):
        super().__init__("reset all sliders")
        self.window, self.old = window, dict(old_values)

    def redo(self) -> None:
        for n in list(self.old):
            self.window.apply_value(n, 0.0, render=False)
        self.window.request_render()

    def undo(self) -> None:
        for n, v in self.old.items():
            self.window.apply_value(n, v, render=False)
        self.window.request_render()


class MainWindow(QMainWindow):
    loadModelsRequested = Signal(object)
    alignRequested = Signal(int, object)
    invertRequested = Signal(int, object)
    renderRequested = Signal(object)

    def __init__(
        self,
        settings: QSettings | None = None,
        model_paths: dict[str, Path] | None = None,
        directions_dir: Path | None = None,
        weights_dirs: list[Path] | None = None,
    ):
        super().__init__()
        self.settings = settings or QSettings("HyperInverterStudio", "HyperInverterStudio")
        self.setWindowTitle(f"HyperInverter Studio {__version__}")
        self.setAcceptDrops(True)
        self.session = EditSession()
        self.scheduler = RenderScheduler()
        self.undo_stack = QUndoStack(self)
        self.directions: dict = {}
        self.directions_dir = directions_dir
        self.models_info: dict[str, Any] | None = None
        self.job = 0
        self.jobs: dict[int, str] = {}  # job id -> purpose ("main", "A", "B")
        self.current: dict[str, int] = {}  # purpose -> newest job id
        self.render_count = 0
        self._drag_old: dict[str, float] = {}
        self._dragging: str | None = None
        self._space_held = False
        self._displayed_edit: np.ndarray | None = None
        self._last_render_ms: float | None = None
        self._last_full: tuple | None = None
        self.backend = "hyperinverter"
        self.results_by_backend: dict[str, Any] = {}  # backend -> inversion of the current photo

        self._build_ui()
        self._start_worker()
        self.models_panel.refresh(model_paths=model_paths, search_dirs=weights_dirs)
        geo = self.settings.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1360, 860)

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)

        self.error_banner = QLabel()
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setWordWrap(True)
        self.error_banner.setStyleSheet("QLabel#errorBanner { background: #7a2323; color: white; padding: 6px; "
                                        "border-radius: 4px; }")
        self.error_banner.hide()
        self.error_banner.mousePressEvent = lambda ev: self.error_banner.hide()  # click to dismiss
        self.notice_banner = QLabel()
        self.notice_banner.setObjectName("noticeBanner")
        self.notice_banner.setWordWrap(True)
        self.notice_banner.setStyleSheet("QLabel#noticeBanner { background: #6b5416; color: white; padding: 6px; "
                                         "border-radius: 4px; }")
        self.notice_banner.hide()
        self.notice_banner.mousePressEvent = lambda ev: self.notice_banner.hide()
        self.models_panel = ModelsPanel(self)
        self.models_panel.modelsChosen.connect(self._load_models)
        outer.addWidget(self.models_panel)
        outer.addWidget(self.error_banner)
        outer.addWidget(self.notice_banner)

        self.tabs = QTabWidget()
        outer.addWidget(self.tabs, 1)

        # --- Edit tab
        edit = QWidget()
        lay = QHBoxLayout(edit)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.photo_view = PhotoView()
        self.photo_view.pointsEdited.connect(self._points_edited)
        self.photo_view.faceClicked.connect(self._face_clicked)
        ll.addWidget(QLabel("Photo"))
        ll.addWidget(self.photo_view, 1)
        split.addWidget(left)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        self.view_mode = QComboBox()
        self.view_mode.addItems(VIEW_MODES)
        self.view_mode.currentIndexChanged.connect(lambda _: self._refresh_result_view())
        top.addWidget(self.view_mode)
        top.addWidget(QLabel("(hold Space: before)"))
        top.addStretch(1)
        top.addWidget(QLabel("Backend"))
        self.backend_box = QComboBox()
        self.backend_box.addItems(["HyperInverter", "HyperStyle"])
        self.backend_box.setToolTip("Inversion method. HyperStyle needs its own model files (see `weights list`).")
        self.backend_box.model().item(1).setEnabled(False)
        self.backend_box.currentIndexChanged.connect(self._backend_changed)
        top.addWidget(self.backend_box)
        self.iterations_box = QSpinBox()
        self.iterations_box.setRange(1, 5)
        self.iterations_box.setValue(5)
        self.iterations_box.setPrefix("steps ")
        self.iterations_box.setToolTip("HyperStyle refinement steps")
        self.iterations_box.setEnabled(False)
        top.addWidget(self.iterations_box)
        ml.addLayout(top)
        self.result_view = ImageView("The inverted and edited face appears here")
        ml.addWidget(self.result_view, 1)
        prog = QHBoxLayout()
        self.stage_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        prog.addWidget(self.stage_label)
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.cancel_button)
        ml.addLayout(prog)
        split.addWidget(mid)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("Edits"))
        head.addStretch(1)
        self.reset_all_button = QPushButton("Reset all")
        self.reset_all_button.clicked.connect(self.reset_all)
        head.addWidget(self.reset_all_button)
        rl.addLayout(head)
        self.slider_panel = SliderPanel()
        self.slider_panel.valueChanged.connect(self._slider_moved)
        self.slider_panel.dragStarted.connect(self._drag_started)
        self.slider_panel.dragFinished.connect(self._drag_finished)
        self.slider_panel.resetRequested.connect(self._reset_one)
        self.slider_panel.set_enabled(False)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_panel)
        scroll.setFrameShape(QFrame.NoFrame)
        rl.addWidget(scroll, 1)
        split.addWidget(right)
        split.setSizes([420, 560, 360])
        self.tabs.addTab(edit, "Edit")

        # --- Interpolation tab
        self.interp = InterpolationPanel(self)
        self.tabs.addTab(self.interp, "Interpolate")
        self.setCentralWidget(central)

        # --- menus and actions
        fm = self.menuBar().addMenu("&File")
        self.open_action = self._action(fm, "&Open photo…", QKeySequence.Open, self.open_dialog)
        self.recent_menu = fm.addMenu("Open &recent")
        self._rebuild_recent()
        self._action(fm, "Open &session…", "Ctrl+Shift+O", self.open_session_dialog)
        self._action(fm, "&Save session…", QKeySequence.Save, self.save_session_dialog)
        fm.addSeparator()
        self._action(fm, "&Export edited face…", "Ctrl+E", lambda: self.export_dialog("aligned"))
        self._action(fm, "Export edited &photo (pasted back)…", "Ctrl+Shift+E", lambda: self.export_dialog("photo"))
        fm.addSeparator()
        self._action(fm, "&Preferences…", QKeySequence.Preferences, self.preferences)
        self._action(fm, "&Quit", QKeySequence.Quit, self.close)
        em = self.menuBar().addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence("Ctrl+Z"))
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        em.addAction(undo)
        em.addAction(redo)
        self._action(em, "Reset all sliders", "Ctrl+R", self.reset_all)
        self._action(em, "Re-run inversion", "Ctrl+I", self.reinvert)
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.addAction(self.open_action)
        tb.addAction(undo)
        tb.addAction(redo)

        self.device_label = QLabel("device: –")
        self.render_label = QLabel("")
        self.statusBar().addPermanentWidget(self.render_label)
        self.statusBar().addPermanentWidget(self.device_label)

    def _action(self, menu, text: str, shortcut, slot: Callable) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    # ------------------------------------------------------------------ worker

    def _start_worker(self) -> None:
        self.thread = QThread(self)
        self.thread.setObjectName("engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.thread)
        self.loadModelsRequested.connect(self.worker.load_models)
        self.alignRequested.connect(self.worker.align)
        self.invertRequested.connect(self.worker.invert)
        self.renderRequested.connect(self.worker.render)
        w = self.worker
        w.modelsLoaded.connect(self._models_loaded)
        w.modelsFailed.connect(self._models_failed)
        w.progress.connect(self._progress)
        w.aligned.connect(self._aligned)
        w.phase1Ready.connect(self._phase1)
        w.stepReady.connect(self._step)
        w.inverted.connect(self._inverted)
        w.rendered.connect(self._rendered)
        w.failed.connect(self._failed)
        w.cancelled.connect(self._cancelled)
        w.notice.connect(self.show_notice)
        self.thread.start()

    def shutdown(self) -> None:
        """Stop the worker thread (waits for the running computation to finish)."""
        if self.thread.isRunning():
            self.worker.request_cancel(self.job)
            self.thread.quit()
            self.thread.wait()

    def closeEvent(self, ev) -> None:  # noqa: N802
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.shutdown()
        super().closeEvent(ev)

    def _load_models(self, paths: dict) -> None:
        device = str(self.settings.value("device", "auto"))
        precision = str(self.settings.value("precision", "auto"))
        self.device_label.setText("device: loading models…")
        self.loadModelsRequested.emit(ModelRequest(paths["generator"], paths.get("inverter"), device,
                                                   paths.get("hyperstyle"), paths.get("hyperstyle_w_encoder"),
                                                   precision))

    def _models_loaded(self, info: dict) -> None:
        self.models_info = info
        self.session.model_names = {"generator": info["generator"], "checkpoint": info["checkpoint"] or ""}
        short = {"bfloat16": "bf16", "float32": "fp32"}
        frames, previews = short.get(info.get("precision"), "fp32"), short.get(info.get("preview_precision"), "fp32")
        mode = f"{frames} frames" if frames == previews else f"{frames} frames, {previews} previews"
        self.device_label.setText(f"device: {info['device']}  ·  {info['resolution']} px  ·  {mode}")
        self.backend_box.model().item(1).setEnabled(bool(info.get("hyperstyle")))
        self.statusBar().showMessage(f"models loaded in {info['seconds']:.1f} s", 5000)
        try:
            lib = load_library(self.directions_dir, num_ws=info["num_ws"], img_resolution=info["resolution"])
        except HyperInverterError as e:
            self.show_error(str(e))
            lib = None
        self.directions = lib.directions if lib else {}
        self.slider_panel.set_directions(self.directions)
        self.slider_panel.set_enabled(self.session.inversion is not None)
        if lib and lib.missing:
            missing = sorted({s.file for s in lib.missing})
            self.statusBar().showMessage(
                f"direction files missing: {', '.join(missing)} (see `hyperinverter directions list`)", 8000)
        if self.session.photo_rgb is not None and self.session.inversion is None:
            self._start_align(AlignRequest(None, rgb=self.session.photo_rgb, points5=self.session.points5))

    def _models_failed(self, message: str) -> None:
        self.device_label.setText("device: no models")
        self.show_error(message)
        self.models_panel.show_problem(message)

    # ------------------------------------------------------------------ opening photos

    def open_dialog(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        pattern = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ")"
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start, pattern + ";;All files (*)")
        if path:
            self.open_photo(Path(path))

    def open_photo(self, path: Path) -> int:
        """Open a photo (cancelling whatever runs for the previous one). Returns the job id."""
        path = Path(path)
        if path.suffix == SESSION_SUFFIX:
            self.open_session(path)
            return self.job
        self.settings.setValue("last_folder", str(path.parent))
        self._remember_recent(path)
        self.error_banner.hide()
        self.notice_banner.hide()
        self.undo_stack.clear()
        self.scheduler.reset()
        self.session.reset_photo(path, None)
        self.results_by_backend = {}
        self.photo_view.set_image(None)
        self.photo_view.set_overlay([], 0, None, False)
        self.result_view.set_image(None)
        self.slider_panel.set_enabled(False)
        for name in self.slider_panel.sliders:
            self.slider_panel.show_value(name, 0.0)
        self.setWindowTitle(f"{path.name} — HyperInverter Studio")
        return self._start_align(AlignRequest(path))

    def _start_align(self, req: AlignRequest, purpose: str = "main") -> int:
        old = self.current.get(purpose)
        if old is not None:
            self.worker.request_cancel(old)
        self.job += 1
        self.jobs[self.job] = purpose
        self.current[purpose] = self.job
        if purpose == "main":
            self.cancel_button.setEnabled(True)
            self._progress(self.job, "Aligning", 1)
        self.alignRequested.emit(self.job, req)
        return self.job

    def _is_current(self, job: int) -> str | None:
        purpose = self.jobs.get(job)
        if purpose is not None and self.current.get(purpose) == job:
            return purpose
        return None

    def _aligned(self, job: int, out: dict) -> None:
        purpose = self._is_current(job)
        if purpose is None:
            return
        if purpose != "main":
            self.interp.aligned(purpose, out)
            self.invertRequested.emit(job, self._invert_request(out["aligned"], self.backend))
            return
        s = self.session
        if "rgb" in out:
            s.photo_rgb = out["rgb"]
            self.photo_view.set_image(out["rgb"], f"{s.photo_path.name if s.photo_path else ''}")
        if "faces" in out:
            s.faces, s.face_index = out["faces"], out.get("face_index", 0)
            s.detector, s.detector_message = out.get("detector", ""), out.get("message")
            if s.detector_message:
                self.show_notice(s.detector_message)
        if "no_face" in out:
            from .worker import default_points

            h, w = s.photo_rgb.shape[:2]
            s.points5 = default_points(w, h)
            self.photo_view.set_overlay([], 0, s.points5, True)
            self.show_error(out["no_face"] + " Drag the five points onto the eyes, nose tip and mouth corners.")
            self._finish_job("No face found: place the points by hand")
            self.progress.setValue(0)
            return
        s.points5 = out["points5"]
        s.aligned_rgb, s.transform = out["aligned"], out["transform"]
        self.photo_view.set_overlay([f.box for f in s.faces], s.face_index, s.points5, s.detector == "haar")
        if self.session.model_names.get("checkpoint") and self.models_info is not None:
            self.results_by_backend = {}
            self.invertRequested.emit(job, self._invert_request(out["aligned"], self.backend))
        else:
            self._finish_job("Aligned (no inverter loaded)")
        self._refresh_result_view()

    def _invert_request(self, aligned: np.ndarray, backend: str) -> InvertRequest:
        return InvertRequest(aligned, backend, self.iterations_box.value())

    def _backend_changed(self, index: int) -> None:
        self.backend = BACKENDS[index]
        self.iterations_box.setEnabled(self.backend == "hyperstyle")
        self.settings.setValue("backend", self.backend)
        if self.session.aligned_rgb is not None:
            done = self.results_by_backend.get(self.backend)
            if done is not None:
                self._use_result(done)
            else:
                self.reinvert()

    def _step(self, job: int, step: int, total: int, image: np.ndarray) -> None:
        if self._is_current(job) == "main":
            self.result_view.set_image(image, f"HyperStyle refinement step {step}/{total}")
        elif self._is_current(job) == "compare":
            self.stage_label.setText(f"comparison: HyperStyle step {step}/{total}")

    def _phase1(self, job: int, image: np.ndarray) -> None:
        purpose = self._is_current(job)
        if purpose == "main":
            self._phase1_image = image
            self.result_view.set_image(image, "Phase I (Phase II running…)")

    def _inverted(self, job: int, result) -> None:
        purpose = self._is_current(job)
        if purpose is None:
            return
        if purpose == "compare":
            self.results_by_backend[result.metadata.get("backend", "hyperinverter")] = result
            self.stage_label.setText("comparison ready")
            self._refresh_result_view()
            return
        if purpose != "main":
            self.interp.inverted(purpose, result)
            return
        self.results_by_backend[self.backend] = result
        self._finish_job("Inverted" + (" (HyperStyle)" if self.backend == "hyperstyle" else ""))
        self._use_result(result)

    def _use_result(self, result) -> None:
        self.session.inversion = result
        self.session.generation += 1
        self.scheduler.reset()
        self._last_full = None
        self.slider_panel.set_enabled(True)
        self.request_render()

    def _finish_job(self, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.stage_label.setText(text)
        self.progress.setValue(100)

    def _progress(self, job: int, stage: str, pct: int) -> None:
        if self._is_current(job) != "main":
            self.interp.progress(self.jobs.get(job), stage, pct)
            return
        self.stage_label.setText(stage)
        self.progress.setValue(pct)

    def cancel(self) -> None:
        job = self.current.get("main")
        if job is not None:
            self.worker.request_cancel(job)
            self.current["main"] = -1  # nothing of that job may be shown any more
        self.cancel_button.setEnabled(False)
        self.stage_label.setText("Cancelled")
        self.progress.setValue(0)

    def _cancelled(self, job: int) -> None:
        pass  # the GUI already moved on when it asked to cancel

    def _failed(self, job: int, message: str) -> None:
        purpose = self._is_current(job) if job >= 0 else "render"
        if purpose is None:
            return
        if purpose in ("A", "B"):
            self.interp.failed(purpose, message)
        elif purpose == "main":
            self.cancel_button.setEnabled(False)
            self.stage_label.setText("Failed")
            self.progress.setValue(0)
        self.show_error(message)

    def reinvert(self) -> None:
        if self.session.aligned_rgb is not None:
            self.session.inversion = None
            self.slider_panel.set_enabled(False)
            self.job += 1
            self.jobs[self.job] = "main"
            self.current["main"] = self.job
            self.cancel_button.setEnabled(True)
            self.invertRequested.emit(self.job, self._invert_request(self.session.aligned_rgb, self.backend))

    def _points_edited(self, points: np.ndarray) -> None:
        if self.session.photo_rgb is None:
            return
        self.session.set_points(points)
        self.slider_panel.set_enabled(False)
        self._start_align(AlignRequest(None, rgb=self.session.photo_rgb, points5=points))

    def _face_clicked(self, index: int) -> None:
        s = self.session
        if 0 <= index < len(s.faces):
            s.face_index = index
            s.set_points(np.asarray(s.faces[index].points5))
            self.photo_view.set_overlay([f.box for f in s.faces], index, s.points5, s.detector == "haar")
            self._start_align(AlignRequest(None, rgb=s.photo_rgb, points5=s.points5))

    # ------------------------------------------------------------------ sliders and rendering

    def _slider_moved(self, name: str, value: float) -> None:
        if self._dragging == name:
            self.session.set_value(name, value)
            self.request_render(preview=True)
        else:  # keyboard / click on the groove: one undo step each
            old = self.session.value(name)
            if old != value:
                self.undo_stack.push(SliderCommand(self, name, old, value))

    def _drag_started(self, name: str) -> None:
        self._dragging = name
        self._drag_old[name] = self.session.value(name)

    def _drag_finished(self, name: str, value: float) -> None:
        self._dragging = None
        old = self._drag_old.pop(name, self.session.value(name))
        if old != value:
            self.undo_stack.push(SliderCommand(self, name, old, value))  # redo() renders full resolution
        else:
            self.request_render()

    def _reset_one(self, name: str) -> None:
        old = self.session.value(name)
        if old != 0:
            self.undo_stack.push(SliderCommand(self, name, old, 0.0))

    def reset_all(self) -> None:
        if self.session.values:
            self.undo_stack.push(ResetCommand(self, self.session.values))

    def apply_value(self, name: str, value: float, render: bool = True) -> None:
        """Model -> view: set a slider value (from undo/redo or code) and render."""
        self.session.set_value(name, value)
        self.slider_panel.show_value(name, value)
        if render:
            self.request_render()

    def _render_state(self, preview: bool) -> tuple:
        res = int(self.settings.value("preview_resolution", 256)) if preview else None
        if res is not None and self.models_info and res >= self.models_info["resolution"]:
            res = None
        return ("main", self.session.generation, tuple(sorted(self.session.values.items())), res)

    def request_render(self, preview: bool = False) -> None:
        inv = self.session.inversion
        if inv is None:
            return
        state = self._render_state(preview)
        if not state[2] and state[3] is None and not self.scheduler.busy:
            # No edit: the exact inversion, nothing to compute.
            self._show_edit(tensor_to_uint8(inv.image), "inversion (no edits)")
            return
        start = self.scheduler.request(state)
        if start is not None:
            self._send_render(start)

    def _send_render(self, state: tuple) -> None:
        inv = self.session.inversion
        values = dict(state[2])
        w = apply_edits(inv.w, [(self.directions[n], v) for n, v in values.items() if n in self.directions])
        self.render_count += 1
        backend = inv.metadata.get("backend", "hyperinverter")
        self.renderRequested.emit(RenderRequest(state, w, inv.deltas, preview=state[3], backend=backend))

    def _rendered(self, token: tuple, image, ms: float) -> None:
        if token[0] != "main":
            self.interp.rendered(token, image, ms)
            return
        if image is not None and token[1] == self.session.generation:
            if token[3] is None:
                self._last_full = ((token[1], token[2]), image)
            label = f"preview {token[3]} px" if token[3] else "edited"
            self._show_edit(image, f"{label}: {self.session.edit_summary()}")
            self._last_render_ms = ms
            self.render_label.setText(f"render {ms:.0f} ms" + (f" (preview {token[3]} px)" if token[3] else ""))
        nxt = self.scheduler.finished(token)
        if nxt is not None:
            if nxt[1] != self.session.generation:
                self.scheduler.reset()
                return
            self._send_render(nxt)
        elif not token[2] and token[3] is None and self.session.inversion is not None and not self.session.values:
            self._show_edit(tensor_to_uint8(self.session.inversion.image), "inversion (no edits)")

    def _show_edit(self, image: np.ndarray, caption: str) -> None:
        self._displayed_edit = image
        self._edit_caption = caption
        self._refresh_result_view()

    def _refresh_result_view(self) -> None:
        s = self.session
        mode = VIEW_MODES[self.view_mode.currentIndex()]
        self.result_view.set_split(None)
        if self._space_held or mode == "Aligned photo":
            self.result_view.set_image(s.aligned_rgb, "aligned photo (before)")
        elif mode.startswith("Side by side"):
            self._show_comparison()
        elif mode == "Phase I":
            img = tensor_to_uint8(s.inversion.phase1) if s.inversion is not None else None
            self.result_view.set_image(img, "Phase I: G(w; θ)")
        elif self._displayed_edit is not None and s.inversion is not None:
            self.result_view.set_image(self._displayed_edit, getattr(self, "_edit_caption", ""))
            if mode.startswith("Split"):
                self.result_view.set_split(s.aligned_rgb)
        elif s.aligned_rgb is not None and s.inversion is None:
            self.result_view.set_image(s.aligned_rgb, "aligned photo")

    def _show_comparison(self) -> None:
        hi, hs = self.results_by_backend.get("hyperinverter"), self.results_by_backend.get("hyperstyle")
        if hi is not None and hs is not None:
            both = np.concatenate([tensor_to_uint8(hi.image), tensor_to_uint8(hs.image)], axis=1)
            self.result_view.set_image(both, "reconstructions: HyperInverter (left) | HyperStyle (right)")
            return
        if not (self.models_info or {}).get("hyperstyle"):
            self.result_view.set_image(None)
            self.result_view.placeholder = "HyperStyle is not loaded: see `hyperinverter weights list`"
            self.result_view.update()
            return
        if self.session.aligned_rgb is None:
            return
        missing = "hyperstyle" if hi is not None else "hyperinverter"
        if self.current.get("compare") is None or self._is_current(self.current["compare"]) is None:
            self.job += 1
            self.jobs[self.job] = "compare"
            self.current["compare"] = self.job
            self.invertRequested.emit(self.job, self._invert_request(self.session.aligned_rgb, missing))
        self.result_view.set_image(self.session.aligned_rgb, f"computing the {missing} reconstruction…")

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space_held = True
            self._refresh_result_view()
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:  # noqa: N802
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space_held = False
            self._refresh_result_view()
            return
        super().keyReleaseEvent(ev)

    # ------------------------------------------------------------------ export and sessions

    def edited_image(self) -> np.ndarray:
        """The full-resolution edited face (computed now if the display shows a preview)."""
        import torch

        inv = self.session.inversion
        if inv is None:
            raise HyperInverterError("nothing to export yet: open and invert a photo first")
        if not self.session.values:
            return tensor_to_uint8(inv.image)
        key = (self.session.generation, tuple(sorted(self.session.values.items())))
        if self._last_full is not None and self._last_full[0] == key and self.worker.frame_precision == "float32":
            return self._last_full[1]  # already rendered at full resolution (exports are always float32)
        w = apply_edits(inv.w, self.session.edits(self.directions))
        with torch.no_grad():
            g = self.worker.generator
            if inv.metadata.get("backend") == "hyperstyle" and self.worker.hs_model is not None:
                g = self.worker.hs_model.generator
            img = g.synthesis(w.unsqueeze(0).to(self.worker.device),
                              {k: v.unsqueeze(0).to(self.worker.device) for k, v in inv.deltas.items()})[0]
        return tensor_to_uint8(img)

    def export_metadata(self) -> dict[str, str]:
        return {
            "Software": f"HyperInverter Studio {__version__}",
            "edits": self.session.edit_summary(),
            "generator": self.session.model_names.get("generator", ""),
            "checkpoint": self.session.model_names.get("checkpoint", ""),
            "source": self.session.photo_path.name if self.session.photo_path else "",
            "backend": (self.session.inversion.metadata.get("backend", "hyperinverter")
                        if self.session.inversion is not None else ""),
        }

    def export_to(self, path: Path, mode: str = "aligned", overwrite: bool = False) -> Path:
        """Write the edited face ("aligned") or the photo with the edited face pasted back ("photo")."""
        from ..media import write_png

        path = Path(path)
        if path.exists() and not overwrite:
            raise HyperInverterError(f"{path} exists; choose another name or confirm replacing it")
        edited = self.edited_image()
        if mode == "photo":
            from ..alignment import load_photo, paste_back, save_photo

            s = self.session
            if s.transform is None or s.photo_rgb is None:
                raise HyperInverterError("the original photo is not available for paste-back")
            pasted = paste_back(s.photo_rgb, edited, s.transform)
            like = load_photo(s.photo_path) if s.photo_path and s.photo_path.exists() else None
            if path.suffix.lower() == ".png":
                return write_png(path, pasted, self.export_metadata(), like.icc_profile if like else None,
                                 overwrite=True)
            return save_photo(path, pasted, like)
        return write_png(path, edited, self.export_metadata(), overwrite=True)

    def export_dialog(self, mode: str) -> None:
        if self.session.inversion is None:
            self.show_error("Nothing to export yet: open and invert a photo first.")
            return
        stem = self.session.photo_path.stem if self.session.photo_path else "edited"
        suggestion = Path(str(self.settings.value("last_folder", str(Path.home())))) / f"{stem}_edited.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export", str(suggestion), "PNG (*.png);;JPEG (*.jpg)")
        if not path:
            return
        try:
            # The save dialog has already asked before replacing an existing file.
            out = self.export_to(Path(path), mode, overwrite=True)
            self.statusBar().showMessage(f"exported {out}", 6000)
        except HyperInverterError as e:
            self.show_error(str(e))

    def save_session_dialog(self) -> None:
        if self.session.inversion is None:
            self.show_error("Nothing to save yet: open and invert a photo first.")
            return
        stem = self.session.photo_path.stem if self.session.photo_path else "session"
        path, _ = QFileDialog.getSaveFileName(self, "Save session", f"{stem}{SESSION_SUFFIX}",
                                              f"Editing session (*{SESSION_SUFFIX})")
        if path:
            try:
                self.session.save(Path(path))
                self.statusBar().showMessage(f"session saved to {path}", 6000)
            except HyperInverterError as e:
                self.show_error(str(e))

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", f"Editing session (*{SESSION_SUFFIX})")
        if path:
            self.open_session(Path(path))

    def open_session(self, path: Path) -> None:
        try:
            s = EditSession.load(path)
        except HyperInverterError as e:
            self.show_error(str(e))
            return
        for purpose, job in list(self.current.items()):
            if purpose == "main":
                self.worker.request_cancel(job)
                self.current["main"] = -1
        s.generation = self.session.generation + 1
        self.session = s
        self.undo_stack.clear()
        self.scheduler.reset()
        self.photo_view.set_image(s.photo_rgb)
        self.photo_view.set_overlay([], 0, s.points5, False)
        for name in self.slider_panel.sliders:
            self.slider_panel.show_value(name, s.value(name))
        self.slider_panel.set_enabled(True)
        self.stage_label.setText(f"session {path.name}")
        self.request_render()

    # ------------------------------------------------------------------ misc

    def show_error(self, message: str) -> None:
        log.warning("error shown to the user: %s", message)
        self.error_banner.setText(f"⚠ {message}   (click to dismiss)")
        self.error_banner.show()
        self.statusBar().showMessage(message.splitlines()[0][:160], 10000)

    def show_notice(self, message: str) -> None:
        self.notice_banner.setText(f"ℹ {message}   (click to dismiss)")
        self.notice_banner.show()

    def _remember_recent(self, path: Path) -> None:
        recent = [p for p in (self.settings.value("recent", []) or []) if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("recent", recent[:10])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("recent", []) or []
        if isinstance(recent, str):
            recent = [recent]
        for p in recent:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.open_photo(Path(p)))
        self.recent_menu.setEnabled(bool(recent))

    def preferences(self) -> None:
        from .preferences import PreferencesDialog

        dlg = PreferencesDialog(self.settings, self)
        if dlg.exec():
            from .app import apply_theme

            apply_theme(str(self.settings.value("theme", "dark")))
            if dlg.device_changed and self.models_panel.chosen:
                self._load_models(self.models_panel.chosen)

    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_photo(Path(urls[0]))


def confirm(parent: QWidget, title: str, text: str) -> bool:
    return QMessageBox.question(parent, title, text) == QMessageBox.Yes


__all__ = ["MainWindow", "QCheckBox", "QTimer"]
